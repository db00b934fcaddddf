"""The cluster builder and the scenarios: node conventions, the kube-system install
(Calico running, Cilium latent with the migration values, no CiliumNodeConfig), the
shop workloads, the filler knob, the pitfall scenarios, and determinism from a seed."""

from __future__ import annotations

import ipaddress

import pytest

from migrator.sim.builder import cilium_config_data, node_names
from migrator.sim.config import SimConfig
from migrator.sim.scenarios import SCENARIOS, get_scenario
from tests.sim.controller_harness import FAST, Harness


def built(scenario: str = "default", nodes: int = 6, **shape) -> Harness:
    h = Harness(config=SimConfig(nodes=nodes, latencies=FAST))
    h.build(scenario, **shape)
    h.settle()
    return h


@pytest.fixture(scope="module")
def cluster():
    h = built()
    yield h
    h.stop()


def env_of(ds: dict, container: str) -> dict[str, str]:
    c = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == container)
    return {e["name"]: e.get("value") for e in c.get("env", [])}


def test_nodes_follow_the_naming_labelling_and_addressing_conventions(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.store.list("nodes")}
    assert sorted(nodes) == ["cp-1", "node-1", "node-2", "node-3", "node-4", "node-5"]
    cp = nodes["cp-1"]
    assert cp["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] == ""
    assert cp["spec"]["taints"] == [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
    zones = [nodes[n]["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in ("cp-1", "node-1", "node-2",
                                                                                    "node-3")]
    assert zones == ["zone-a", "zone-b", "zone-c", "zone-a"]
    n1 = nodes["node-1"]
    assert n1["metadata"]["labels"]["kubernetes.io/hostname"] == "node-1"
    assert n1["metadata"]["labels"]["kubernetes.io/os"] == "linux"
    assert n1["status"]["addresses"] == [{"type": "InternalIP", "address": "172.18.0.11"},
                                         {"type": "Hostname", "address": "node-1"}]
    assert n1["status"]["allocatable"]["pods"] == "110"
    assert n1["status"]["nodeInfo"]["kubeletVersion"] == "v1.32.4"
    assert "taints" not in n1["spec"]
    assert node_names(SimConfig(nodes=3, control_plane_nodes=2)) == (["cp-1", "cp-2"], ["node-1"])


def test_kube_system_runs_calico_with_cilium_latent(cluster):
    s = cluster.store
    data = s.get("configmaps", "kube-system", "cilium-config")["data"]
    for key, value in {"cluster-name": "default", "routing-mode": "tunnel", "tunnel-protocol": "vxlan",
                       "tunnel-port": "8473", "custom-cni-conf": "true", "ipam": "cluster-pool",
                       "cluster-pool-ipv4-cidr": "10.245.0.0/16", "cluster-pool-ipv4-mask-size": "24",
                       "enable-policy": "never", "enable-host-legacy-routing": "true",
                       "unmanaged-pod-watcher-interval": "0", "enable-ipv4": "true",
                       "kube-proxy-replacement": "false", "cni-chaining-mode": "none"}.items():
        assert data[key] == value, key
    assert "cni-uninstall" not in data and "write-cni-conf-when-ready" not in data
    assert s.list("cilium.io/ciliumnodeconfigs") == []
    cilium = s.get("apps/daemonsets", "kube-system", "cilium")
    tpl = cilium["spec"]["template"]
    assert tpl["metadata"]["labels"]["k8s-app"] == "cilium" and tpl["spec"]["hostNetwork"] is True
    assert tpl["spec"]["tolerations"] == [{"operator": "Exists"}]
    assert tpl["spec"]["containers"][0]["name"] == "cilium-agent"
    assert tpl["spec"]["initContainers"][0]["command"] == ["cilium-dbg", "build-config"]
    calico = s.get("apps/daemonsets", "kube-system", "calico-node")
    env = env_of(calico, "calico-node")
    assert env["CALICO_NETWORKING_BACKEND"] == "vxlan"
    assert env["IP_AUTODETECTION_METHOD"] == "kubernetes-internal-ip" and "FELIX_VXLANPORT" not in env
    pool = s.get("crd.projectcalico.org/ippools", None, "default-ipv4-ippool")["spec"]
    assert (pool["cidr"], pool["vxlanMode"], pool["ipipMode"], pool["natOutgoing"], pool["nodeSelector"]) == \
        ("192.168.0.0/16", "Always", "Never", True, "all()")
    felix = s.get("crd.projectcalico.org/felixconfigurations", None, "default")["spec"]
    assert (felix["vxlanEnabled"], felix["vxlanPort"], felix["vxlanVNI"], felix["bpfEnabled"]) == \
        (True, 4789, 4096, False)
    dns = s.get("services", "kube-system", "kube-dns")["spec"]
    assert dns["clusterIP"] == "10.96.0.10"
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP"), (9153, "TCP")}
    assert s.get("policy/poddisruptionbudgets", "kube-system", "coredns")["spec"]["maxUnavailable"] == 1
    for ds in ("kube-proxy", "calico-node", "cilium"):
        st = s.get("apps/daemonsets", "kube-system", ds)["status"]
        assert st["desiredNumberScheduled"] == st["numberReady"] == 6, ds
    assert s.get("apps/deployments", "kube-system", "cilium-operator")["status"]["availableReplicas"] == 1
    assert s.get("apps/deployments", "kube-system", "calico-kube-controllers")["status"]["availableReplicas"] == 1


def test_shop_holds_the_workloads_a_migration_must_carry(cluster):
    s = cluster.store
    assert s.get("apps/deployments", "shop", "web")["spec"]["replicas"] == 6
    assert s.get("policy/poddisruptionbudgets", "shop", "web")["spec"]["maxUnavailable"] == 1
    assert s.get("policy/poddisruptionbudgets", "shop", "api")["spec"]["minAvailable"] == 1
    cache = s.get("apps/deployments", "shop", "cache")
    assert cache["spec"]["replicas"] == 1
    assert cache["spec"]["template"]["spec"]["volumes"] == [{"name": "data", "emptyDir": {}}]
    assert s.try_get("policy/poddisruptionbudgets", "shop", "cache") is None
    log_agent = s.get("apps/daemonsets", "shop", "log-agent")
    assert not log_agent["spec"]["template"]["spec"].get("hostNetwork")
    assert len(cluster.pods("shop", app="log-agent")) == 5  # workers only: the control plane is tainted
    debug = s.get("pods", "shop", "debug-shell")
    assert "ownerReferences" not in debug["metadata"] and debug["spec"]["nodeName"]
    assert s.get("networking.k8s.io/networkpolicies", "shop", "api-allow-web")
    assert s.get("crd.projectcalico.org/networkpolicies", "shop", "default.web-allow-http")
    web_ep = s.get("endpoints", "shop", "web")["subsets"][0]
    assert len(web_ep["addresses"]) == 6
    service_net = ipaddress.ip_network("10.96.0.0/12")
    assert ipaddress.ip_address(s.get("services", "shop", "web")["spec"]["clusterIP"]) in service_net
    spread = {p["spec"]["nodeName"] for p in cluster.pods("shop", app="web")}
    assert spread == {"node-1", "node-2", "node-3", "node-4", "node-5"}


def test_pods_per_node_adds_a_filler_deployment():
    h = built(nodes=11, pods_per_node=20)
    try:
        pods = h.store.list("pods")
        workers = [n for n in h.store.list("nodes") if n["metadata"]["name"].startswith("node-")]
        per_worker = sum(1 for p in pods if p["spec"]["nodeName"].startswith("node-")) / len(workers)
        assert 19 <= per_worker <= 21
        assert h.store.get("apps/deployments", "filler", "filler")["status"]["availableReplicas"] > 100
    finally:
        h.stop()


@pytest.mark.parametrize(("scenario", "check"), [
    ("vxlan-port-clash", lambda h: h.store.get("configmaps", "kube-system", "cilium-config")["data"]["tunnel-port"]
     == str(h.store.get("crd.projectcalico.org/felixconfigurations", None, "default")["spec"]["vxlanPort"])
     == "4789"),
    ("cidr-overlap", lambda h: ipaddress.ip_network(h.store.get("configmaps", "kube-system", "cilium-config")[
        "data"]["cluster-pool-ipv4-cidr"]).overlaps(ipaddress.ip_network(h.store.get(
            "crd.projectcalico.org/ippools", None, "default-ipv4-ippool")["spec"]["cidr"]))),
    ("calico-first-found", lambda h: env_of(h.store.get("apps/daemonsets", "kube-system", "calico-node"),
                                            "calico-node")["IP_AUTODETECTION_METHOD"] == "first-found"),
    ("no-legacy-routing", lambda h: h.store.get("configmaps", "kube-system", "cilium-config")["data"][
        "enable-host-legacy-routing"] == "false"),
    ("pdb-blocked", lambda h: h.store.get("policy/poddisruptionbudgets", "shop", "api")["status"][
        "disruptionsAllowed"] == 0),
])
def test_pitfall_scenarios_change_exactly_their_knob(scenario, check):
    h = built(scenario, nodes=4)
    try:
        assert check(h)
    finally:
        h.stop()


def test_scenarios_are_described_and_unknown_names_rejected():
    assert {"default", "vxlan-port-clash", "cidr-overlap", "calico-first-found", "no-legacy-routing",
            "pdb-blocked", "cilium-crashloop", "node-notready", "cnc-v2alpha1-only"} <= set(SCENARIOS)
    assert all(s.description for s in SCENARIOS.values())
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("nope")
    assert cilium_config_data(SimConfig(cilium_tunnel_port=9000))["tunnel-port"] == "9000"


def test_same_seed_same_cluster():
    names = []
    for _ in range(2):
        h = built(nodes=4)
        names.append(sorted(p["metadata"]["name"] for p in h.store.list("pods")))
        h.stop()
    assert names[0] == names[1]
