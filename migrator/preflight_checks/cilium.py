"""Cilium-side checks: installed in the guide's migration mode, and CiliumNodeConfig served.

The migration values of the guide render into ``cilium-config`` keys; each key that differs
would change behaviour mid-migration (Cilium writing its CNI file on every node at once,
enforcing policy against Calico pods, no route between the overlays, restarting unmigrated
pods, removing the CNI file on agent shutdown). The fix for each is the Helm value that
produces the expected key.
"""

from __future__ import annotations

import ipaddress
import math

from migrator.preflight_checks.facts import Check, Finding, PreflightFacts, PreflightInputs, finding
from migrator.preflight_checks.facts import Severity as S

HELM = "helm upgrade cilium cilium/cilium -n kube-system --reuse-values"
# key -> (expected value, Helm flag that renders it, why it matters)
EXPECTED: dict[str, tuple[str, str, str]] = {
    "custom-cni-conf": ("true", "--set cni.customConf=true",
                        "Cilium would write its CNI config on every node at once"),
    "enable-policy": ("never", "--set policyEnforcementMode=never",
                      "Cilium would enforce policy and drop traffic from Calico pods"),
    "enable-host-legacy-routing": ("true", "--set bpf.hostLegacyRouting=true",
                                   "traffic between the Cilium and Calico overlays needs the host "
                                   "routing stack"),
    "unmanaged-pod-watcher-interval": ("0", "--set operator.unmanagedPodWatcher.restart=false",
                                       "the operator would restart pods not yet migrated"),
    "ipam": ("cluster-pool", "--set ipam.mode=cluster-pool",
             "the guide requires cluster-pool IPAM to avoid IP collisions"),
}


def check_installed(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    if facts.cilium_agent is None or facts.cilium_config is None:
        missing = (f"DaemonSet {inputs.agent_namespace}/{inputs.agent_daemonset}"
                   if facts.cilium_agent is None
                   else f"ConfigMap {inputs.agent_namespace}/{inputs.cilium_config}")
        return [finding("cilium.installed", S.BLOCKING,
                        f"Cilium is not installed in migration mode: {missing} not found",
                        "helm install cilium cilium/cilium -n kube-system --values values-initial.yaml")]
    agent = facts.cilium_agent
    if agent.ready < agent.desired:
        return [finding("cilium.installed", S.WARNING,
                        f"only {agent.ready}/{agent.desired} cilium agents are ready; nodes whose "
                        "agent is not ready will fail their agent-restart step",
                        f"kubectl -n {agent.namespace} rollout status daemonset/{agent.name}")]
    return [finding("cilium.installed", S.INFO,
                    f"Cilium agent DaemonSet {inputs.agent_namespace}/{inputs.agent_daemonset}: "
                    f"{facts.cilium_agent.ready}/{facts.cilium_agent.desired} ready")]


def check_config(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    config = facts.cilium_config
    if config is None:
        return []
    out: list[Finding] = []
    for key, (want, flag, why) in EXPECTED.items():
        have = config.get(key)
        if have is None and key == "ipam":
            continue  # the agent's default IPAM mode is cluster-pool
        if (have or "") != want:
            out.append(finding("cilium.config", S.BLOCKING,
                               f"cilium-config {key}={have!r}, expected {want!r}: {why}",
                               f"{HELM} {flag}"))
    pool = config.get("cluster-pool-ipv4-cidr", "")
    if pool.split()[0:1] != [inputs.cilium_pod_cidr]:
        out.append(finding("cilium.config", S.BLOCKING,
                           f"cilium-config cluster-pool-ipv4-cidr={pool!r}, but the plan's Cilium "
                           f"pod CIDR is {inputs.cilium_pod_cidr}: verification would reject "
                           "every pod (fix the plan or the Helm values)",
                           f"{HELM} --set ipam.operator.clusterPoolIPv4PodCIDRList="
                           f"'{{{inputs.cilium_pod_cidr}}}'"))
    if config.get("cni-uninstall", "").lower() == "true":
        out.append(finding("cilium.config", S.BLOCKING,
                           "cilium-config cni-uninstall=true: every agent restart would remove the "
                           "node's CNI configuration", f"{HELM} --set cni.uninstall=false"))
    port = config.get("tunnel-port")
    if port and port != str(inputs.tunnel_port):
        out.append(finding("cilium.config", S.BLOCKING,
                           f"cilium-config tunnel-port={port}, but the plan says "
                           f"{inputs.tunnel_port}", f"{HELM} --set tunnelPort={inputs.tunnel_port}"))
    return out


def check_pool_capacity(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    """Cluster-pool IPAM gives each node one CIDR of the mask size: the pools must hold every node."""
    config = facts.cilium_config
    if config is None or config.get("ipam", "cluster-pool") != "cluster-pool" or not facts.nodes:
        return []
    try:
        mask = int(config.get("cluster-pool-ipv4-mask-size") or 24)
        pools = [ipaddress.ip_network(c, strict=False) for c in config.get("cluster-pool-ipv4-cidr", "").split()]
    except ValueError:
        return []  # check_config names a pool that does not parse
    room = sum(2 ** (mask - pool.prefixlen) for pool in pools if pool.prefixlen <= mask)
    if not pools:
        return []
    have = len(facts.nodes)
    # the per-node prefix that would give the first pool room for every node with a fifth to spare
    fitting = pools[0].prefixlen + math.ceil(math.log2(max(2, have * 1.25)))
    fix = (f"{HELM} --set ipam.operator.clusterPoolIPv4MaskSize={fitting}" if fitting <= 28 else
           f"{HELM} --set ipam.operator.clusterPoolIPv4PodCIDRList='{{<a larger pool>}}' "
           "and set the plan's cilium.pod_cidr to it")
    text = (f"the Cilium cluster pool {' '.join(str(p) for p in pools)} with a /{mask} per node has room for "
            f"{room} node(s); the cluster has {have}")
    if have > room:
        return [finding("cilium.pool-capacity", S.BLOCKING,
                        f"{text}: nodes past the {room}th would get no pod CIDR and their pods no address",
                        fix)]
    if have > 0.8 * room:
        return [finding("cilium.pool-capacity", S.WARNING, f"{text}: little room to grow", fix)]
    return [finding("cilium.pool-capacity", S.INFO, text)]


def check_node_config_version(inputs: PreflightInputs, facts: PreflightFacts) -> list[Finding]:
    versions = facts.node_config_versions
    if "v2" in versions:
        return [finding("cilium.nodeconfig-version", S.INFO,
                        "CiliumNodeConfig is served at cilium.io/v2")]
    if "v2alpha1" in versions:
        return [finding("cilium.nodeconfig-version", S.WARNING,
                        "CiliumNodeConfig is served only at cilium.io/v2alpha1 (deprecated since "
                        "Cilium 1.16, removed in 1.20); upgrade Cilium before a later migration",
                        "helm upgrade cilium cilium/cilium -n kube-system --reuse-values --version 1.16.0")]
    return [finding("cilium.nodeconfig-version", S.BLOCKING,
                    "the CiliumNodeConfig CRD (ciliumnodeconfigs.cilium.io) is not served: "
                    "per-node migration is impossible (Cilium >= 1.13 required)",
                    "helm upgrade cilium cilium/cilium -n kube-system --reuse-values --version 1.16.0")]


CHECKS: tuple[Check, ...] = (check_installed, check_config, check_pool_capacity, check_node_config_version)
#: The IDs its findings carry (``--skip-check`` accepts these).
IDS: tuple[str, ...] = ("cilium.installed", "cilium.config", "cilium.pool-capacity", "cilium.nodeconfig-version")
