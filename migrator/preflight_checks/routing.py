"""Routing checks: a cluster routed without an overlay can migrate, when both sides reach each other.

During the migration Cilium runs the guide's overlay on its own tunnel port and Calico keeps
routing as it does. Traffic then crosses between the two as follows:

* a Calico pod (or a host) reaching a Cilium pod goes through its node's Cilium tunnel routes
  (``cilium_host``), which the latent agent installs on every node it runs on;
* a Cilium pod reaching a Calico pod leaves through its node's host stack
  (``enable-host-legacy-routing``) and follows the node's route to the Calico pod's prefix:
  announced by BIRD (mesh, reflector, BGPPeer) or, with Calico's backend ``none``, by whatever
  announces the node's podCIDR (metal-stack: node-init + the node's FRR).

What the API shows is the configuration (backend, pools, BGPConfiguration, BGPPeers, reflector
annotations, node podCIDRs, where the agents run), not the routes routers actually learned or a
leaf switch's prefix filter. So these checks block on configurations that cannot work, take the
fabric's filter from the plan (``routing.announceable_cidrs``), and leave the rest to the
connectivity gate, which dials Calico and Cilium pods on other nodes before the first node is
released.
"""

from __future__ import annotations

import ipaddress

from migrator.engine.handover_translate import translate
from migrator.engine.routing import detect
from migrator.model.routing import Announcer, PoolMode, RoutingDetection
from migrator.preflight_checks.facts import Check, Finding, PreflightFacts, PreflightInputs, finding
from migrator.preflight_checks.facts import Severity as S

HELM = "helm upgrade cilium cilium/cilium -n kube-system --reuse-values"
LIST_CAP = 5


def _capped(names: list[str]) -> str:
    more = len(names) - LIST_CAP
    return ", ".join(names[:LIST_CAP]) + (f" and {more} more" if more > 0 else "")


def detection(facts: PreflightFacts) -> RoutingDetection | None:
    return detect(facts.routing) if facts.routing is not None else None


def overall(d: RoutingDetection) -> str:
    """overlay | bgp | node-routed: what ``routing.expect`` names."""
    modes = {p.mode for p in d.pools}
    if PoolMode.NODE_ROUTED in modes:
        return "node-routed"
    if modes & {PoolMode.BGP, PoolMode.IPIP_CROSS_SUBNET}:
        return "bgp"
    return "overlay"


def _inside(cidr: str, outer: tuple[str, ...]) -> bool:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
        return any((o := ipaddress.ip_network(c, strict=False)).version == net.version
                   and net.subnet_of(o)  # type: ignore[arg-type]
                   for c in outer)
    except ValueError:
        return False


def check_detected(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    d = detection(facts)
    if d is None:
        return []
    out = [finding("routing.detected", S.INFO, f"routing: {overall(d)}: " + "; ".join(d.lines()))]
    if inputs.expect_routing != "auto" and inputs.expect_routing != overall(d):
        out.append(finding("routing.detected", S.BLOCKING,
                           f"the plan expects {inputs.expect_routing} routing (routing.expect) but the cluster "
                           f"shows {overall(d)}: " + "; ".join(d.lines()[:2]),
                           "kubectl get ippools.crd.projectcalico.org -o yaml; "
                           "kubectl get bgpconfigurations.crd.projectcalico.org -o yaml   # then fix routing.expect"))
    return out


def check_reachability(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    d = detection(facts)
    if d is None or not d.routed:
        return []
    out: list[Finding] = []
    mode = (facts.cilium_config or {}).get("routing-mode") or (facts.cilium_config or {}).get("tunnel")
    if mode in ("native", "disabled"):
        out.append(finding("routing.reachability", S.BLOCKING,
                           f"cilium-config routes natively ({mode}); this version migrates a routed cluster with "
                           "Cilium's migration overlay, whose tunnel routes let Calico-routed pods reach Cilium pods",
                           f"{HELM} --set routingMode=tunnel --set tunnelProtocol=vxlan --set tunnelPort={inputs.tunnel_port}"))
    agent = facts.cilium_agent
    if agent is not None and facts.nodes and agent.desired < len(facts.nodes):
        out.append(finding("routing.reachability", S.BLOCKING,
                           f"the cilium agent runs on {agent.desired} of {len(facts.nodes)} nodes: a node without it "
                           f"has no tunnel route to the Cilium pod CIDR {inputs.cilium_pod_cidr}, so its Calico "
                           "pods cannot reach pods already on Cilium",
                           f"kubectl -n {agent.namespace} get daemonset {agent.name} -o yaml   "
                           "# tolerations / nodeSelector must cover every node"))
    silent = [n for n in d.nodes if n.announcer is Announcer.NOBODY]
    if silent:
        names = _capped([n.name for n in silent])
        if d.calico.backend == "bird":
            out.append(finding("routing.reachability", S.BLOCKING,
                               f"no BGP session carries the pod prefixes of {names} (node-to-node mesh off, no "
                               "route reflector or BGPPeer selects them): Cilium pods on other nodes would "
                               "have no route to their Calico pods",
                               "kubectl patch bgpconfiguration.crd.projectcalico.org default --type=merge "
                               "-p '{\"spec\":{\"nodeToNodeMeshEnabled\":true}}'   # or add a BGPPeer for them"))
        else:
            out.append(finding("routing.reachability", S.BLOCKING,
                               f"nodes {names} have no spec.podCIDR: with Calico backend {d.calico.backend} nothing "
                               "announces a route to their pods, so Cilium pods elsewhere cannot reach them",
                               "kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=<pod range>"))
    how = ("BIRD" if d.calico.backend == "bird" else "the node router (node-init + the node's own BGP daemon)"
           if facts.routing is not None and facts.routing.node_init else "a router outside the cluster's objects")
    out.append(finding(
        "routing.reachability", S.INFO if not d.notes else S.WARNING,
        f"Cilium will run its migration overlay on port {inputs.tunnel_port} while Calico keeps routing "
        f"through {how}; Calico pods reach Cilium pods through the agents' tunnel routes, Cilium pods reach "
        "Calico pods through each node's routes to the Calico pod prefixes. The API shows the configuration, "
        "not the routes routers learned: the connectivity gate dials pods of both sides across nodes before "
        "the first node is released" + ("; " + "; ".join(d.notes) if d.notes else ""),
        "birdcl show protocols; birdcl show route   # or: vtysh -c 'show ip bgp' on a node"
        if d.calico.backend == "bird" else "vtysh -c 'show ip bgp'; ip route show dev lo   # on a node"))
    return out


def check_announceable(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    d = detection(facts)
    allowed = inputs.announceable_cidrs
    if not allowed:
        if d is not None and d.node_routed:
            return [finding("routing.announceable", S.WARNING,
                            "the plan gives no routing.announceable_cidrs: the tool cannot check that the fabric "
                            f"accepts the Cilium pod CIDR {inputs.cilium_pod_cidr} (its leaf filters are not "
                            "visible through the API)",
                            "add routing.announceable_cidrs to the plan (metal-stack: the private network's "
                            "additional announceable CIDRs)")]
        return []
    shown = ", ".join(allowed)
    out: list[Finding] = []
    if not _inside(inputs.cilium_pod_cidr, allowed):
        out.append(finding(
            "routing.announceable", S.BLOCKING,
            f"the Cilium pod CIDR {inputs.cilium_pod_cidr} lies outside the announceable CIDRs {shown}: "
            "the fabric drops any route for it, so nothing outside a node's tunnel reaches Cilium pods and "
            "their prefixes can never be announced (native routing)",
            f"choose a Cilium pod CIDR inside {allowed[0]} that overlaps no other range: set cilium.pod_cidr "
            f"and {HELM} --set ipam.operator.clusterPoolIPv4PodCIDRList='{{<that CIDR>}}'; or add "
            f"{inputs.cilium_pod_cidr} to the network's announceable CIDRs"))
    if d is not None and d.node_routed:
        outside = [f"{n.name} ({c})" for n in d.nodes for c in n.pod_cidrs if not _inside(c, allowed)]
        if outside:
            out.append(finding(
                "routing.announceable", S.BLOCKING,
                f"node pod CIDRs outside the announceable CIDRs {shown}: {_capped(outside)}; the fabric drops "
                "their routes, so their pods are unreachable from other nodes",
                "check routing.announceable_cidrs against the network's announceable CIDRs"))
    if not out:
        out.append(finding("routing.announceable", S.INFO,
                           f"the Cilium pod CIDR {inputs.cilium_pod_cidr} lies inside the announceable CIDRs {shown}"))
    return out


def check_handover(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    """What handing routing and LoadBalancer IPs to Cilium after the migration needs. A plan with
    ``routing.handover`` is blocked when the hand-over could not run (the nodes would migrate and
    finalize would then wait for a hand-over that cannot happen); without it, a warning."""
    d = detection(facts)
    if d is None or facts.routing is None or not (d.routed or d.metallb.announcements):
        if inputs.handover:
            return [finding("routing.handover", S.BLOCKING,
                            "routing.handover is on, but the cluster shows no BGP routing and no MetalLB "
                            "announcement to hand over", "set routing.handover: false in the plan")]
        return []
    res = translate(facts.routing, d)
    if res.blockers:
        severity = S.BLOCKING if inputs.handover else S.WARNING
        return [finding("routing.handover", severity,
                        "handing routing to Cilium after the migration is not possible yet: " + "; ".join(res.blockers),
                        f"{HELM} --set bgpControlPlane.enabled=true   # Cilium 1.16+, CRDs at cilium.io/v2 or v2alpha1")]
    peers = sorted({f"{p.address} (AS {p.asn})" for c in res.cluster_configs for p in c.peers})
    return [finding("routing.handover", S.INFO,
                    f"the hand-over would write {len(res.cluster_configs)} CiliumBGPClusterConfig(s) at {res.bgp_api} "
                    f"peering {_capped(peers)}, {len(res.lb_pools)} CiliumLoadBalancerIPPool(s) and move "
                    f"{len(res.services)} LoadBalancer Service(s) keeping their IPs"
                    + ("; " + "; ".join(res.notes) if res.notes else ""),
                    "kubectl get ciliumbgpclusterconfigs,ciliumloadbalancerippools   # after the hand-over")]


CHECKS: tuple[Check, ...] = (check_detected, check_reachability, check_announceable, check_handover)
#: The IDs its findings carry (``--skip-check`` accepts these).
IDS: tuple[str, ...] = ("routing.detected", "routing.reachability", "routing.announceable", "routing.handover")
