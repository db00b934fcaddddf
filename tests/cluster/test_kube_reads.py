"""KubeCluster reads against the simulated cluster over HTTP: discovery, observation facts
(direct and cached), and the preflight inventories.
"""

from __future__ import annotations

import time

import pytest

from migrator.cluster.errors import ConfigError
from migrator.cluster.kube import KubeCluster
from migrator.cluster.port import WatchScope


def test_server_version_and_served_crd_versions(port) -> None:
    assert port.server_version().startswith("v1.")
    assert port.served_versions("ciliumnodeconfigs.cilium.io")[0] == "v2"
    assert set(port.served_versions("ciliumnodeconfigs.cilium.io")) == {"v2", "v2alpha1"}
    assert port.served_versions("nothings.example.com") == []


def test_nodes_and_pods_as_facts(sim, port) -> None:
    nodes = port.list_nodes()
    assert [n.name for n in nodes] == ["cp-1", "node-1", "node-2", "node-3", "node-4", "node-5"]
    cp = nodes[0]
    assert cp.control_plane and cp.taints
    assert all(n.internal_ip for n in nodes)
    pods = port.list_pods(node="node-1")
    assert pods and all(p.node == "node-1" for p in pods)
    agents = port.list_pods(namespace="kube-system", labels={"k8s-app": "cilium"})
    assert sorted(p.node for p in agents) == sorted(n.name for n in nodes)
    assert port.get_pod("shop", "debug-shell").name == "debug-shell"
    assert port.get_pod("shop", "nope") is None


def test_pdbs_and_daemonsets(port) -> None:
    pdbs = {(p.namespace, p.name): p for p in port.list_pdbs()}
    assert ("kube-system", "coredns") in pdbs and ("shop", "web") in pdbs
    assert pdbs[("kube-system", "coredns")].disruptions_allowed >= 1
    cilium = port.get_daemonset("kube-system", "cilium")
    assert cilium.desired == 6 and cilium.rolled_out
    assert port.get_daemonset("kube-system", "nope") is None


def test_cached_reads_match_direct_reads_and_cost_no_requests(sim, port) -> None:
    direct_nodes, direct_pods = port.list_nodes(), port.list_pods(node="node-2")
    port.start_watching(WatchScope(node_config_version="v2"))
    sim.requests.reset()
    assert [n.name for n in port.list_nodes()] == [n.name for n in direct_nodes]
    assert {p.uid for p in port.list_pods(node="node-2")} == {p.uid for p in direct_pods}
    assert port.get_daemonset("kube-system", "cilium").desired == 6
    assert port.get_node_config("kube-system", "cilium-default", version="v2") is None
    counted = {k: v for k, v in sim.requests.counts().items() if k[0] != "watch"}
    assert counted == {}


def test_unready_pods_of_a_namespace_direct_and_cached(sim, port) -> None:
    """Pods not Ready, scheduled or not yet, from the API and from the cache, whose index follows
    a pod as it turns Ready or goes."""
    def unready(namespace: str = "shop") -> list[str]:
        return [p.name for p in port.list_pods(namespace=namespace, unready=True)]

    def eventually(condition) -> None:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert condition()

    sim.store.create("pods", {"metadata": {"name": "stuck", "namespace": "shop"},
                              "spec": {"nodeSelector": {"pool": "nowhere"},
                                       "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}})
    direct = port.list_pods(namespace="shop", unready=True)
    assert [(p.name, p.node, p.phase) for p in direct] == [("stuck", None, "Pending")]
    port.start_watching(WatchScope(node_config_version="v2"))
    sim.requests.reset()
    assert unready() == ["stuck"] and unready("kube-system") == []
    assert {k: v for k, v in sim.requests.counts().items() if k[0] != "watch"} == {}
    sim.store.delete("pods", "shop", "stuck")
    eventually(lambda: unready() == [])
    sim.store.create("pods", {"metadata": {"name": "fresh", "namespace": "shop"},
                              "spec": {"nodeName": "node-1",
                                       "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}})
    eventually(lambda: (pod := port.get_pod("shop", "fresh")) is not None and pod.ready)
    assert unready() == []  # it entered the index unready, and left it once Ready


def test_preflight_inventories(port) -> None:
    pools = port.list_ippools()
    assert [(p.name, p.cidr, p.vxlan_mode) for p in pools] == \
        [("default-ipv4-ippool", "192.168.0.0/16", "Always")]
    felix = port.get_felix_configuration()
    assert felix.vxlan_port == 4789 and not felix.bpf_enabled
    assert port.get_felix_configuration("absent") is None
    assert port.get_service_cluster_ip() == "10.96.0.1"
    kinds = {p.kind for p in port.list_policies()}
    assert {"NetworkPolicy", "CalicoNetworkPolicy"} <= kinds
    workloads = {(w.kind, w.namespace, w.name): w.replicas for w in port.list_workloads()}
    assert workloads[("Deployment", "shop", "cache")] == 1
    calico = port.get_daemonset("kube-system", "calico-node")
    assert calico.env["calico-node"]["IP_AUTODETECTION_METHOD"] == "kubernetes-internal-ip"


def test_bad_kubeconfig_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="kubeconfig"):
        KubeCluster.from_kubeconfig(str(tmp_path / "missing.yaml"))
    (tmp_path / "kc.yaml").write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(ConfigError, match="--kubeconfig"):
        KubeCluster.from_kubeconfig(str(tmp_path / "kc.yaml"), context="nope")
