"""Preflight on routed clusters, against the simulated scenarios over HTTP and through the CLI.

* both routed scenarios pass preflight with a plan that matches them;
* a plan whose Cilium pod CIDR lies outside the announceable CIDRs exits 1 naming both, and the
  CIDR the finding suggests passes (``migrator plan`` then shows the detected routing);
* a routing breakage preflight can see (BIRD mesh off, nothing else announcing) blocks with a fix;
  netexec dials across nodes fail naming the cause until that fix is applied, then pass;
* a fabric filter that drops a node's Calico prefix breaks a Cilium pod's dial to a Calico pod on
  that node, with a reason naming the filter (the cross-overlay leg that crosses the fabric).
"""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from migrator.cli import main
from migrator.cluster.kube import KubeCluster
from migrator.model.plan import MigrationPlan
from migrator.preflight import Severity, has_blocking, run_preflight
from tests.conftest import fast_config
from tests.runner.helpers import fast_plan

BGP_CONFIG = ("crd.projectcalico.org", "v1", "bgpconfigurations", "default")


def patch_bgp_configuration(kubeconfig, body: dict) -> None:
    """A merge patch of the default BGPConfiguration through the API (what the fix's kubectl does)."""
    from kubernetes import client, config
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.CustomObjectsApi(api).patch_cluster_custom_object(*BGP_CONFIG, body)
    finally:
        api.close()


def plan(sim, **routing) -> MigrationPlan:
    return MigrationPlan.model_validate({
        "api_version": "migrator.io/v1", "kind": "MigrationPlan", "name": "routed",
        "cilium": {"pod_cidr": sim.config.cilium_pool, "tunnel_port": sim.config.cilium_tunnel_port},
        "routing": routing})


@pytest.fixture
def connect(tmp_path):
    ports: list[KubeCluster] = []

    def make(sim) -> KubeCluster:
        port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / f"kc{len(ports)}")))
        ports.append(port)
        return port
    yield make
    for port in ports:
        port.close()


def blocking(findings) -> list:
    return [f for f in findings if f.severity is Severity.BLOCKING]


@pytest.mark.parametrize(("scenario", "routing", "expect"), [
    ("calico-bgp", {"expect": "bgp"}, "BIRD"),
    ("metal-stack", {"expect": "node-routed", "announceable_cidrs": ["10.240.0.0/12"]}, "node router"),
])
def test_preflight_passes_on_the_routed_scenarios(sim_factory, connect, scenario, routing, expect) -> None:
    sim = sim_factory(scenario=scenario, config=fast_config(3))
    findings = run_preflight(plan(sim, **routing), connect(sim))
    assert not blocking(findings), blocking(findings)
    reach = [f for f in findings if f.check == "routing.reachability"]
    assert len(reach) == 1 and expect in reach[0].message and f"port {sim.config.cilium_tunnel_port}" in reach[0].message
    assert not [f for f in findings if f.check == "calico.mode" and f.severity is not Severity.INFO]
    # the simulated Cilium serves the BGPv2 and LB IPAM CRDs at cilium.io/v2: the hand-over is described
    handover = [f for f in findings if f.check == "routing.handover"]
    assert [f.severity for f in handover] == [Severity.INFO]
    assert "CiliumBGPClusterConfig(s) at cilium.io/v2" in handover[0].message
    assert "1 CiliumLoadBalancerIPPool(s)" in handover[0].message
    wrong = run_preflight(plan(sim, expect="overlay"), connect(sim))
    assert [f.check for f in blocking(wrong)] == ["routing.detected"]


def cli(capsys, *args: str) -> tuple[int, str]:
    """The real CLI, in this process (the exit code and what it printed)."""
    capsys.readouterr()
    code = main([*args, "--log-level", "warning"])
    return code, capsys.readouterr().out


def test_cilium_cidr_outside_the_announceable_cidrs_exits_1_naming_both(sim_factory, tmp_path, capsys) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    kubeconfig = str(sim.write_kubeconfig(tmp_path / "kc"))
    outside = fast_plan(tmp_path, {"cilium.pod_cidr": "172.30.0.0/16", "routing.announceable_cidrs": ["10.240.0.0/12"]},
                        name="outside.yaml")
    code, out = cli(capsys, "preflight", "--plan", str(outside), "--kubeconfig", kubeconfig)
    assert code == 1, out[-3000:]
    line = next(ln for ln in out.splitlines() if "routing.announceable" in ln)
    assert "blocking" in line and "172.30.0.0/16" in line and "10.240.0.0/12" in line, line
    inside = fast_plan(tmp_path, {"cilium.pod_cidr": sim.config.cilium_pool,
                                  "routing.announceable_cidrs": ["10.240.0.0/12"]}, name="inside.yaml")
    code, out = cli(capsys, "preflight", "--plan", str(inside), "--kubeconfig", kubeconfig)
    assert code == 0, out[-3000:]
    assert re.search(r"info\s+routing\.announceable.*10\.250\.0\.0/16 lies inside", out)
    code, out = cli(capsys, "plan", "--plan", str(inside), "--kubeconfig", kubeconfig)
    assert code == 0, out[-3000:]
    assert "IPPool default-ipv4-ippool (10.240.0.0/13): node-routed" in out
    assert "Cilium runs its migration overlay on port 8473; Calico keeps routing" in out


def dial(port: KubeCluster, sim, src: dict, dst_ip: str, dst_port: int) -> dict:
    body = port.proxy_get(src["metadata"]["namespace"], src["metadata"]["name"], 8080, "/dial",
                          {"host": dst_ip, "port": str(dst_port), "request": "hostname", "protocol": "http",
                           "tries": "1"})
    return json.loads(body)


def pod_on(sim, namespace: str, app_key: str, app: str, node: str) -> dict:
    return next(p for p in sim.store.list("pods", namespace)
                if (p["metadata"].get("labels") or {}).get(app_key) == app and p["spec"].get("nodeName") == node)


def test_bgp_mesh_off_blocks_breaks_dials_and_the_named_fix_restores_both(sim_factory, connect, tmp_path) -> None:
    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    port = connect(sim)
    kubeconfig = sim.write_kubeconfig(tmp_path / "admin")
    api = next(p for p in sim.store.list("pods", "shop") if p["metadata"]["labels"].get("app") == "api")
    web = next(p for p in sim.store.list("pods", "shop") if p["metadata"]["labels"].get("app") == "web"
               and p["spec"]["nodeName"] != api["spec"]["nodeName"])
    assert dial(port, sim, api, web["status"]["podIP"], 80)["errors"] == []

    patch_bgp_configuration(kubeconfig, {"spec": {"nodeToNodeMeshEnabled": False}})
    broken = dial(port, sim, api, web["status"]["podIP"], 80)
    assert broken["responses"] == [] and "no BGP session or route reflector" in broken["errors"][0]
    findings = run_preflight(plan(sim, expect="bgp"), port)
    hit = [f for f in blocking(findings) if f.check == "routing.reachability"]
    assert len(hit) == 1 and "nodeToNodeMeshEnabled" in hit[0].fix_command, blocking(findings)

    patch = json.loads(re.search(r"-p '(\{.*\})'", hit[0].fix_command).group(1))   # the fix, as named
    patch_bgp_configuration(kubeconfig, patch)
    assert not has_blocking(run_preflight(plan(sim, expect="bgp"), port))
    assert dial(port, sim, api, web["status"]["podIP"], 80)["errors"] == []


def test_fabric_filter_breaks_cilium_to_calico_across_nodes(sim_factory, connect, tmp_path) -> None:
    sim = sim_factory(scenario="metal-stack", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kc")
    partial = fast_plan(tmp_path, {"cilium.pod_cidr": sim.config.cilium_pool, "nodes.names": ["node-1"],
                                   "order.canaries": ["node-1"], "routing.announceable_cidrs": ["10.240.0.0/12"]})
    assert main(["run", "--plan", str(partial), "--kubeconfig", str(kubeconfig), "--yes",
                 "--output-dir", str(tmp_path), "--log-level", "warning"]) == 0
    port = connect(sim)
    cilium_probe = pod_on(sim, "cni-migration-probes", "app.kubernetes.io/component", "pod", "node-1")
    calico_probe = pod_on(sim, "cni-migration-probes", "app.kubernetes.io/component", "pod", "node-2")
    assert cilium_probe["status"]["podIP"].startswith("10.250.") and calico_probe["status"]["podIP"].startswith("10.240.")
    assert dial(port, sim, cilium_probe, calico_probe["status"]["podIP"], 8080)["errors"] == []

    node2_cidr = sim.store.get("nodes", None, "node-2")["spec"]["podCIDR"]
    others = [f"10.240.{i}.0/24" for i in range(3) if f"10.240.{i}.0/24" != node2_cidr]
    sim.fleet.config = dataclasses.replace(sim.fleet.config, fabric_announceable=(*others, "10.250.0.0/16"))
    broken = dial(port, sim, cilium_probe, calico_probe["status"]["podIP"], 8080)
    assert broken["responses"] == [], broken
    assert f"the fabric filter (announceable CIDRs {', '.join(others)}, 10.250.0.0/16) drops {node2_cidr}" \
        in broken["errors"][0]
    findings = run_preflight(plan(sim, announceable_cidrs=[*others, "10.250.0.0/16"]), port)
    hit = [f for f in blocking(findings) if f.check == "routing.announceable"]
    assert len(hit) == 1 and f"node-2 ({node2_cidr})" in hit[0].message, blocking(findings)
