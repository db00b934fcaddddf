"""Calico-side checks: is there a Calico to migrate from, and is it inside the guide's envelope?

The guide supports an existing CNI that uses the Linux routing stack: Calico in VXLAN or IPIP
mode, or routed without encapsulation (BGP via BIRD, or a node router with backend ``none``),
whose reachability ``routing.py`` checks. The eBPF dataplane is outside it. The
field pitfalls checked here: the VXLAN port clash with Cilium's tunnel, overlapping CIDRs,
Calico's first-found address autodetection picking ``cilium_host``, and natOutgoing SNAT
across the two overlays.
"""

from __future__ import annotations

import ipaddress

from migrator.preflight_checks.facts import Check, Finding, PreflightFacts, PreflightInputs, finding
from migrator.preflight_checks.facts import Severity as S

CALICO_VXLAN_DEFAULT = 4789
SAFE_AUTODETECTION = ("kubernetes-internal-ip", "interface=", "skip-interface=", "cidr=", "can-reach=")


def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def _subnet_of(inner: ipaddress.IPv4Network | ipaddress.IPv6Network,
               outer: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """``inner.subnet_of(outer)``, false across address families (where the stdlib raises)."""
    if isinstance(inner, ipaddress.IPv4Network) and isinstance(outer, ipaddress.IPv4Network):
        return inner.subnet_of(outer)
    if isinstance(inner, ipaddress.IPv6Network) and isinstance(outer, ipaddress.IPv6Network):
        return inner.subnet_of(outer)
    return False


def check_present(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    if facts.calico_node is None and not facts.ippools:
        return [finding("calico.present", S.BLOCKING,
                        "no calico-node DaemonSet and no Calico IPPool found: there is no Calico "
                        "to migrate from (is this the right cluster/context?)",
                        "kubectl config get-contexts")]
    where = f"{facts.calico_node.namespace}/{facts.calico_node.name}" if facts.calico_node else "?"
    return [finding("calico.present", S.INFO,
                    f"Calico found: DaemonSet {where}, {len(facts.ippools)} IPPool(s)")]


def check_mode(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    out: list[Finding] = []
    if facts.felix is not None and facts.felix.bpf_enabled:
        out.append(finding(
            "calico.mode", S.BLOCKING,
            "Calico runs the eBPF dataplane; the migration guide requires a CNI using the Linux "
            "routing stack", "kubectl patch felixconfiguration default --type=merge "
            "-p '{\"spec\":{\"bpfEnabled\":false}}'"))
    for pool in facts.ippools:
        if pool.disabled:
            continue
        if pool.vxlan_mode == "Never" and pool.ipip_mode == "Never":
            out.append(finding(
                "calico.mode", S.INFO,
                f"IPPool {pool.name} ({pool.cidr}) is routed without encapsulation; Calico keeps routing it "
                "during the migration while Cilium runs its own overlay (routing checks below)"))
        else:
            mode = f"VXLAN {pool.vxlan_mode}" if pool.vxlan_mode != "Never" else f"IPIP {pool.ipip_mode}"
            out.append(finding("calico.mode", S.INFO, f"IPPool {pool.name} ({pool.cidr}) uses {mode}"))
    return out


def check_nat_outgoing(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    cilium = _net(inputs.cilium_pod_cidr)
    shielded = any(p.disabled and (n := _net(p.cidr)) is not None and cilium is not None
                   and _subnet_of(cilium, n) for p in facts.ippools)
    nat = [p.name for p in facts.ippools if p.nat_outgoing and not p.disabled]
    if not nat or shielded:
        return []
    continuous = inputs.policy_mode == "continuous"
    return [finding(
        "calico.nat-outgoing", S.BLOCKING if continuous else S.WARNING,
        f"IPPool(s) {', '.join(nat)} masquerade traffic to non-pool destinations, so Calico pods "
        f"reaching Cilium pods ({inputs.cilium_pod_cidr}) would be SNATed to the node; add a "
        "disabled IPPool for the Cilium CIDR (projectcalico/calico#7446)"
        + ("; policy.mode continuous needs it: Cilium would see those pods as the node, and Calico's "
           "policies on migrated pods could not tell them apart" if continuous else ""),
        "kubectl apply -f - <<EOF\napiVersion: crd.projectcalico.org/v1\nkind: IPPool\n"
        "metadata: {name: cilium-migration-no-nat}\n"
        f"spec: {{cidr: {inputs.cilium_pod_cidr}, disabled: true, natOutgoing: false}}\nEOF")]


def check_vxlan_port(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    port = facts.felix.vxlan_port if facts.felix and facts.felix.vxlan_port else CALICO_VXLAN_DEFAULT
    cilium_ports = {("the plan's tunnel port", inputs.tunnel_port)}
    configured = (facts.cilium_config or {}).get("tunnel-port", "")
    if configured.isdigit():
        cilium_ports.add(("cilium-config tunnel-port", int(configured)))
    clashes = sorted(label for label, p in cilium_ports if p == port)
    if not clashes:
        return []
    uses_vxlan = any(p.vxlan_mode != "Never" and not p.disabled for p in facts.ippools)
    fix = ("kubectl patch felixconfiguration default --type=merge -p '{\"spec\":{\"vxlanPort\":4789}}'"
           if port != CALICO_VXLAN_DEFAULT else
           "helm upgrade cilium cilium/cilium -n kube-system --reuse-values --set tunnelPort=8473"
           "   # and set cilium.tunnel_port: 8473 in the plan")
    return [finding(
        "calico.vxlan-port", S.BLOCKING if uses_vxlan or not facts.ippools else S.WARNING,
        f"Calico's VXLAN port {port} (FelixConfiguration vxlanPort) equals {' and '.join(clashes)}: "
        "the two overlays would capture each other's packets", fix)]


def check_cidr_overlap(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    ranges: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    cilium = _net(inputs.cilium_pod_cidr)
    if cilium is None:
        return [finding("cidr.overlap", S.BLOCKING,
                        f"the plan's Cilium pod CIDR {inputs.cilium_pod_cidr!r} is not a CIDR")]
    ranges.append((f"the plan's Cilium pod CIDR {cilium}", cilium))
    configured = _net(((facts.cilium_config or {}).get("cluster-pool-ipv4-cidr") or "").split(" ")[0])
    if configured is not None and configured != cilium:
        ranges.append((f"cilium-config cluster-pool-ipv4-cidr {configured}", configured))
    ranges += [(f"Calico IPPool {p.name} ({p.cidr})", n) for p in facts.ippools
               if not p.disabled and (n := _net(p.cidr)) is not None]
    out: list[Finding] = []
    for i, (a_name, a) in enumerate(ranges):
        for b_name, b in ranges[i + 1:]:
            if a.version == b.version and a.overlaps(b):
                out.append(finding("cidr.overlap", S.BLOCKING,
                                   f"{a_name} overlaps {b_name}: pod IPs could collide; choose a "
                                   "distinct, unused Cilium pod CIDR",
                                   "helm upgrade cilium cilium/cilium -n kube-system --reuse-values "
                                   "--set ipam.operator.clusterPoolIPv4PodCIDRList='{<unused CIDR>}'"))
    addresses = [(f"the kubernetes Service ClusterIP {facts.service_ip}", facts.service_ip)]
    addresses += [(f"node {n.name} address {ip}", ip) for n in facts.nodes for ip in n.addresses]
    for label, ip in addresses:
        try:
            addr = ipaddress.ip_address(ip) if ip else None
        except ValueError:
            continue
        for r_name, r in ranges:
            if addr is not None and addr.version == r.version and addr in r:
                out.append(finding("cidr.overlap", S.BLOCKING,
                                   f"{r_name} contains {label}: routing to it would break",
                                   "helm upgrade cilium cilium/cilium -n kube-system --reuse-values "
                                   "--set ipam.operator.clusterPoolIPv4PodCIDRList='{<unused CIDR>}'"))
    return out


def check_autodetection(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    ds = facts.calico_node
    if ds is None:
        return []
    method = next((env["IP_AUTODETECTION_METHOD"] for env in ds.env.values()
                   if "IP_AUTODETECTION_METHOD" in env), None)
    if method and any(method.startswith(safe) for safe in SAFE_AUTODETECTION):
        return []
    severity = S.BLOCKING if facts.cilium_agent is not None else S.WARNING
    return [finding(
        "calico.autodetection", severity,
        f"calico-node autodetects its node address with "
        f"{method or 'the default first-found'}; Cilium creates cilium_host on every node and "
        "Calico may pick it, breaking Calico routing",
        f"kubectl -n {ds.namespace} set env daemonset/{ds.name} "
        "IP_AUTODETECTION_METHOD=kubernetes-internal-ip")]


CHECKS: tuple[Check, ...] = (check_present, check_mode, check_nat_outgoing, check_vxlan_port,
                             check_cidr_overlap, check_autodetection)
#: The IDs its findings carry (``--skip-check`` accepts these).
IDS: tuple[str, ...] = ("calico.present", "calico.mode", "calico.nat-outgoing", "calico.vxlan-port",
                        "cidr.overlap", "calico.autodetection")
