"""Preflight: every check on literal facts (pure), then against the simulated cluster's
pitfall scenarios over HTTP (the default cluster has no blocking finding; each pitfall
scenario produces the blocking finding the guide predicts, with a fix command).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.cluster.port import DaemonSetInfo, FelixInfo, IPPoolInfo, PolicyInfo, WorkloadInfo
from migrator.commands import render_findings
from migrator.model.observation import PdbFacts
from migrator.model.routing import CalicoBgpConfig, PoolInfo, RoutingInventory, RoutingNode
from migrator.model.selector import LabelSelector
from migrator.preflight import (
    CHECK_IDS,
    NodeAddress,
    PdbState,
    PreflightFacts,
    PreflightInputs,
    Severity,
    evaluate,
    has_blocking,
    unknown_checks,
)
from migrator.preflight_checks.plan_inputs import pdb_states

GUIDE_CONFIG = {
    "custom-cni-conf": "true", "enable-policy": "never", "enable-host-legacy-routing": "true",
    "unmanaged-pod-watcher-interval": "0", "ipam": "cluster-pool",
    "cluster-pool-ipv4-cidr": "10.245.0.0/16", "tunnel-port": "8473",
}


def ds(name: str, namespace: str = "kube-system", env: dict[str, str] | None = None) -> DaemonSetInfo:
    return DaemonSetInfo(namespace=namespace, name=name, generation=1, observed_generation=1,
                         desired=3, current=3, updated=3, ready=3, available=3, restarted_at=None,
                         env={"calico-node": env or {}})


def healthy() -> PreflightFacts:
    return PreflightFacts(
        server_version="v1.32.4",
        calico_node=ds("calico-node", env={"IP_AUTODETECTION_METHOD": "kubernetes-internal-ip"}),
        ippools=(IPPoolInfo("default-ipv4-ippool", "192.168.0.0/16", "Always", "Never",
                            nat_outgoing=False, disabled=False),),
        felix=FelixInfo("default", vxlan_port=4789, vxlan_enabled=True, bpf_enabled=False),
        cilium_agent=ds("cilium"),
        cilium_config=dict(GUIDE_CONFIG),
        node_config_versions=("v2", "v2alpha1"),
        service_ip="10.96.0.1",
        nodes=(NodeAddress("node-1", ("172.18.0.10",)),),
        pdbs=(PdbState("kube-system", "coredns", 1),),
    )


def checks_of(findings, severity: Severity) -> set[str]:
    return {f.check for f in findings if f.severity is severity}


def test_healthy_cluster_has_no_blocking_or_warning() -> None:
    findings = evaluate(PreflightInputs(), healthy())
    assert not has_blocking(findings), findings
    assert checks_of(findings, Severity.WARNING) == set()
    assert {"calico.present", "cilium.installed", "cilium.nodeconfig-version"} <= \
        checks_of(findings, Severity.INFO)


@pytest.mark.parametrize(("change", "check", "severity", "fix_contains"), [
    (dict(calico_node=None, ippools=()), "calico.present", Severity.BLOCKING, "kubectl"),
    (dict(felix=FelixInfo("default", 4789, True, bpf_enabled=True)), "calico.mode",
     Severity.BLOCKING, "bpfEnabled"),
    (dict(routing=RoutingInventory(calico_backend="bird", pools=(PoolInfo("p", "192.168.0.0/16"),),
                                   bgp_config=CalicoBgpConfig(mesh_enabled=False), nodes=(RoutingNode("node-1"),))),
     "routing.reachability", Severity.BLOCKING, "nodeToNodeMeshEnabled"),
    (dict(felix=FelixInfo("default", 8473, True, False)), "calico.vxlan-port", Severity.BLOCKING,
     "vxlanPort"),
    (dict(cilium_config={**GUIDE_CONFIG, "tunnel-port": "4789"}), "calico.vxlan-port",
     Severity.BLOCKING, "tunnelPort=8473"),
    (dict(ippools=(IPPoolInfo("p", "10.0.0.0/8", "Always", "Never", False, False),)),
     "cidr.overlap", Severity.BLOCKING, "clusterPoolIPv4PodCIDRList"),
    (dict(nodes=(NodeAddress("n", ("10.245.3.4",)),)), "cidr.overlap", Severity.BLOCKING, "helm"),
    (dict(calico_node=ds("calico-node", env={"IP_AUTODETECTION_METHOD": "first-found"})),
     "calico.autodetection", Severity.BLOCKING, "IP_AUTODETECTION_METHOD=kubernetes-internal-ip"),
    (dict(calico_node=ds("calico-node")), "calico.autodetection", Severity.BLOCKING,
     "set env daemonset/calico-node"),
    (dict(cilium_agent=None), "cilium.installed", Severity.BLOCKING, "helm install"),
    (dict(cilium_config={**GUIDE_CONFIG, "enable-host-legacy-routing": "false"}), "cilium.config",
     Severity.BLOCKING, "bpf.hostLegacyRouting=true"),
    (dict(cilium_config={**GUIDE_CONFIG, "enable-policy": "default"}), "cilium.config",
     Severity.BLOCKING, "policyEnforcementMode=never"),
    (dict(cilium_config={**GUIDE_CONFIG, "custom-cni-conf": "false"}), "cilium.config",
     Severity.BLOCKING, "cni.customConf=true"),
    (dict(cilium_config={**GUIDE_CONFIG, "unmanaged-pod-watcher-interval": "15s"}), "cilium.config",
     Severity.BLOCKING, "unmanagedPodWatcher.restart=false"),
    (dict(cilium_config={**GUIDE_CONFIG, "cni-uninstall": "true"}), "cilium.config",
     Severity.BLOCKING, "cni.uninstall=false"),
    (dict(cilium_config={**GUIDE_CONFIG, "cluster-pool-ipv4-cidr": "10.99.0.0/16"}), "cilium.config",
     Severity.BLOCKING, "10.245.0.0/16"),
    (dict(node_config_versions=("v2alpha1",)), "cilium.nodeconfig-version", Severity.WARNING, "helm"),
    (dict(node_config_versions=()), "cilium.nodeconfig-version", Severity.BLOCKING, "helm"),
    (dict(pdbs=(PdbState("shop", "web", 0),)), "pdb.zero-disruptions", Severity.BLOCKING, "pdb web"),
    (dict(ippools=(IPPoolInfo("p", "192.168.0.0/16", "Always", "Never", True, False),)),
     "calico.nat-outgoing", Severity.WARNING, "disabled: true"),
    (dict(workloads=(WorkloadInfo("Deployment", "shop", "cache", 1),)), "workloads.single-replica",
     Severity.WARNING, "deployment/cache --replicas=2"),
    (dict(policies=(PolicyInfo("CalicoNetworkPolicy", "deny-all", "shop", frozenset({"Deny"})),)),
     "policy.calico", Severity.WARNING, "networkpolicies.crd.projectcalico.org"),
    (dict(policies=(PolicyInfo("CiliumNetworkPolicy", "l7", "shop"),)), "policy.cilium",
     Severity.WARNING, "policyAuditMode"),
])
def test_each_pitfall_is_reported_with_a_fix(change, check, severity, fix_contains) -> None:
    findings = evaluate(PreflightInputs(), replace(healthy(), **change))
    matching = [f for f in findings if f.check == check and f.severity is severity]
    assert matching, findings
    assert any(fix_contains in f.fix_command for f in matching), matching


def test_pdb_blocked_is_a_warning_when_the_plan_skips_blocked_nodes() -> None:
    facts = replace(healthy(), pdbs=(PdbState("shop", "web", 0),))
    findings = evaluate(PreflightInputs(pdb_blocks_run=False), facts)
    assert checks_of(findings, Severity.WARNING) == {"pdb.zero-disruptions"}
    assert not has_blocking(findings)


def test_a_budget_with_a_null_selector_selects_no_pod_and_is_not_a_finding() -> None:
    budgets = [PdbFacts(namespace="shop", name="none", selector=None),
               PdbFacts(namespace="shop", name="all", selector=LabelSelector())]
    assert pdb_states(budgets) == [PdbState("shop", "all", 0)]


def test_nat_outgoing_is_quiet_when_a_disabled_pool_covers_the_cilium_cidr() -> None:
    pools = (IPPoolInfo("p", "192.168.0.0/16", "Always", "Never", True, False),
             IPPoolInfo("no-nat", "10.245.0.0/16", "Never", "Never", False, True))
    findings = evaluate(PreflightInputs(), replace(healthy(), ippools=pools))
    assert "calico.nat-outgoing" not in {f.check for f in findings}


def test_blocking_findings_come_first() -> None:
    facts = replace(healthy(), node_config_versions=(),
                    workloads=(WorkloadInfo("Deployment", "shop", "cache", 1),))
    severities = [f.severity for f in evaluate(PreflightInputs(), facts)]
    assert severities == sorted(severities, key=[Severity.BLOCKING, Severity.WARNING,
                                                 Severity.INFO].index)


def test_configured_cilium_pool_overlapping_calico_is_reported() -> None:
    facts = replace(healthy(), cilium_config={**GUIDE_CONFIG,
                                              "cluster-pool-ipv4-cidr": "192.168.128.0/17"})
    overlaps = [f for f in evaluate(PreflightInputs(), facts) if f.check == "cidr.overlap"]
    assert overlaps and "192.168.128.0/17" in overlaps[0].message


# -- against the simulated cluster over HTTP ------------------------------------------------------

def plan_for(sim, **drain):
    from migrator.model.plan import MigrationPlan
    return MigrationPlan.model_validate({
        "api_version": "migrator.io/v1", "kind": "MigrationPlan", "name": "preflight",
        "cilium": {"pod_cidr": sim.config.cilium_pool, "tunnel_port": sim.config.cilium_tunnel_port},
        "drain": drain or {},
    })


def preflight_of(sim, tmp_path, **drain):
    from migrator.cluster.kube import KubeCluster
    from migrator.preflight import run_preflight

    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    sim.requests.reset()
    findings = run_preflight(plan_for(sim, **drain), port)
    assert sim.requests.writes() == 0, "preflight must not write"
    return findings


def test_default_sim_cluster_has_no_blocking_finding(sim, tmp_path) -> None:
    findings = preflight_of(sim, tmp_path)
    assert not has_blocking(findings), [f for f in findings if f.severity is Severity.BLOCKING]
    warnings = checks_of(findings, Severity.WARNING)
    assert "workloads.single-replica" in warnings   # shop/cache
    assert "policy.calico" in warnings              # the Calico NetworkPolicy in shop
    assert "policy.kubernetes" in checks_of(findings, Severity.INFO)


@pytest.mark.parametrize(("scenario", "check", "severity"), [
    ("vxlan-port-clash", "calico.vxlan-port", Severity.BLOCKING),
    ("cidr-overlap", "cidr.overlap", Severity.BLOCKING),
    ("calico-first-found", "calico.autodetection", Severity.BLOCKING),
    ("no-legacy-routing", "cilium.config", Severity.BLOCKING),
    ("pdb-blocked", "pdb.zero-disruptions", Severity.BLOCKING),
    ("cnc-v2alpha1-only", "cilium.nodeconfig-version", Severity.WARNING),
])
def test_pitfall_scenarios(sim_factory, tmp_path, scenario, check, severity) -> None:
    findings = preflight_of(sim_factory(scenario=scenario), tmp_path)
    hits = [f for f in findings if f.check == check and f.severity is severity]
    assert hits, findings
    assert all(f.fix_command for f in hits)
    others = {f.check for f in findings if f.severity is Severity.BLOCKING} - {check}
    assert not others, others


def test_unready_cilium_agents_warn() -> None:
    agent = replace(ds("cilium"), ready=2)
    findings = evaluate(PreflightInputs(), replace(healthy(), cilium_agent=agent))
    assert "cilium.installed" in checks_of(findings, Severity.WARNING)


@pytest.mark.parametrize(("nodes", "mask", "severity"), [
    (200, "24", Severity.INFO), (216, None, Severity.WARNING), (257, "24", Severity.BLOCKING),
    (1000, "26", Severity.INFO)])
def test_cilium_pool_must_hold_every_node(nodes: int, mask: str | None, severity: Severity) -> None:
    config = {**GUIDE_CONFIG, **({"cluster-pool-ipv4-mask-size": mask} if mask else {})}
    if nodes == 1000:
        config["cluster-pool-ipv4-cidr"] = "10.244.0.0/14"  # 4,096 blocks of /26
    facts = replace(healthy(), cilium_config=config,
                    nodes=tuple(NodeAddress(f"node-{i}", (f"172.18.{i // 250}.{i % 250 + 1}",)) for i in range(nodes)))
    found = [f for f in evaluate(PreflightInputs(cilium_pod_cidr=config["cluster-pool-ipv4-cidr"]), facts)
             if f.check == "cilium.pool-capacity"]
    assert [f.severity for f in found] == [severity], found
    if severity is Severity.BLOCKING:
        assert "room for 256 node(s); the cluster has 257" in found[0].message
        assert found[0].fix_command.endswith("--set ipam.operator.clusterPoolIPv4MaskSize=25")


def test_every_check_id_is_known_to_skip_check() -> None:
    """``--skip-check`` accepts exactly the IDs the checks report."""
    source = "".join(p.read_text() for p in (Path(__file__).parents[1] / "migrator" / "preflight_checks").glob("*.py"))
    emitted = set(re.findall(r'finding\(\s*"([a-z0-9.-]+)"', source))
    assert emitted == set(CHECK_IDS) and len(CHECK_IDS) == len(emitted)
    assert unknown_checks(["cidr.overlap", "cidr.overlaps", "cidr.overlaps"]) == ["cidr.overlaps"]


def test_findings_table_shows_skipped_checks() -> None:
    findings = evaluate(PreflightInputs(), replace(healthy(), node_config_versions=(),
                                                   felix=FelixInfo("default", 8473, True, False)))
    plain = render_findings(findings)
    assert "blocking  calico.vxlan-port" in plain and "\n2 blocking, " in plain
    skipped = render_findings(findings, ("calico.vxlan-port",))
    assert "skipped   calico.vxlan-port" in skipped and "blocking  cilium.nodeconfig-version" in skipped
    assert "\n1 blocking, 1 skipped (--skip-check), " in skipped
