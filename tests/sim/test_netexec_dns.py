"""agnhost netexec's /dial by name, as the gate's ``dns`` check uses it: the name is resolved
once to check it, then again by every try, each lookup asking kube-dns twice (resolv.conf's
default attempts), each query a new flow that kube-proxy may send to another backend."""

from __future__ import annotations

import json

import pytest

from migrator.cluster.errors import ClusterError
from migrator.cluster.kube import KubeCluster
from tests.sim.test_guide_steps import netexec_pod

NAME = "kubernetes.default.svc.cluster.local"


def _dns_nodes(sim) -> set[str]:
    return {p["spec"]["nodeName"] for p in sim.store.list("pods", "kube-system")
            if p["metadata"]["labels"].get("k8s-app") == "kube-dns"}


def _dial(port: KubeCluster, tries: int = 3) -> dict:
    query = {"host": NAME, "port": "443", "request": "hostname", "protocol": "http", "tries": str(tries)}
    return json.loads(port.proxy_get("default", "client", 8080, "dial", query))


def test_a_lookup_reaches_the_other_kube_dns_backend_and_each_try_resolves_anew(sim, kubeconfig):
    dns_nodes = _dns_nodes(sim)
    assert len(dns_nodes) == 2
    client_node = next(n["metadata"]["name"] for n in sim.store.list("nodes")
                       if n["metadata"]["name"] not in dns_nodes)
    netexec_pod(sim, "client", client_node)
    port = KubeCluster.from_kubeconfig(str(kubeconfig))
    try:
        assert _dial(port) == {"responses": ["kube-apiserver"] * 3, "errors": []}
        broken = sorted(dns_nodes)[0]
        sim.fleet.crash_agent(broken, "calico", True)   # its kube-dns pod is unreachable, still an endpoint
        sim.settle(timeout=5)
        answers, mixed = 0, 0
        for _ in range(30):
            try:
                got = _dial(port)
            except ClusterError as exc:   # the checking lookup hit the broken backend twice
                assert "host and/or port param are invalid. lookup" in str(exc)
                continue
            answers += len(got["responses"])
            lookups = [e for e in got["errors"] if "dial tcp: lookup" in e and broken in e]
            assert len(lookups) == len(got["errors"])
            mixed += bool(got["responses"]) and bool(lookups)
        assert answers >= 30, "a lookup must try again rather than fail on the first broken backend"
        assert mixed, "every try resolves the name anew: one dial can both answer and fail a lookup"
        sim.fleet.crash_agent(sorted(dns_nodes)[1], "calico", True)
        sim.settle(timeout=5)
        with pytest.raises(ClusterError, match="host and/or port param are invalid. lookup"):
            _dial(port)
    finally:
        port.close()


def test_service_backends_follow_readiness_and_deletion_between_lookups(sim):
    """kube-proxy's view of a Service (kept between lookups) changes with its pods: a pod whose
    node turns NotReady leaves it, comes back when Ready again, and a deleted pod is gone."""
    net = sim.fleet.network
    svc = sim.store.get("services", "kube-system", "kube-dns")

    def backend_nodes() -> list[str]:
        return sorted(pod["spec"]["nodeName"] for _, _, pod in net.backends(svc, 53))

    dns_nodes = sorted(_dns_nodes(sim))
    assert backend_nodes() == backend_nodes() == dns_nodes
    sim.fleet.set_node_ready(dns_nodes[0], False)
    sim.settle(timeout=5)
    assert backend_nodes() == dns_nodes[1:]
    sim.fleet.set_node_ready(dns_nodes[0], True)
    sim.settle(timeout=5)
    assert backend_nodes() == dns_nodes
    gone = next(p for p in sim.store.list("pods", "kube-system", labels={"k8s-app": "kube-dns"})
                if p["spec"]["nodeName"] == dns_nodes[1])
    sim.store.delete("pods", "kube-system", gone["metadata"]["name"])
    assert gone["metadata"]["uid"] not in {pod["metadata"]["uid"] for _, _, pod in net.backends(svc, 53)}
