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


def test_kept_backends_match_a_fresh_look_after_every_kind_of_pod_change(sim, monkeypatch):
    """The kept view is brought up to date from the pods written since it was worked out: after
    each change it equals the view worked out afresh from every pod of the namespace, and when
    the store's history no longer reaches back, it is worked out afresh."""
    from migrator.sim.errors import Gone
    from migrator.sim.network import _Backends

    net, store = sim.fleet.network, sim.store
    svc = store.get("services", "kube-system", "kube-dns")

    def fresh() -> list[tuple[str, int, str]]:
        with store.lock:
            view = _Backends((svc["metadata"]["uid"], svc["metadata"]["resourceVersion"]),
                             svc["spec"]["selector"], 53)
            view.refill(store, "kube-system")
            return [(ip, port, pod["metadata"]["name"]) for ip, port, pod in view.sorted()]

    def kept() -> list[tuple[str, int, str]]:
        return [(ip, port, pod["metadata"]["name"]) for ip, port, pod in net.backends(svc, 53)]

    def relabel(name: str, app: str) -> None:
        def change(draft: dict) -> dict:
            draft["metadata"]["labels"]["k8s-app"] = app
            return draft
        store.mutate("pods", "kube-system", name, change)

    def unready(name: str) -> None:
        def change(draft: dict) -> dict:
            for c in draft["status"]["conditions"]:
                if c["type"] == "Ready":
                    c["status"] = "False"
            return draft
        store.mutate("pods", "kube-system", name, change, subresource="status")

    def check(*, without: str = "", within: str = "") -> list[str]:
        """The kept view equals a fresh one (both read under the store's lock: the cluster's
        controllers go on meanwhile); ``without`` is not a backend, ``within`` is."""
        with store.lock:
            view = kept()
            assert view == fresh()
        names = [name for _, _, name in view]
        assert without not in names and (not within or within in names)
        return names

    first, second = (p["metadata"]["name"] for p in store.list("pods", "kube-system", labels={"k8s-app": "kube-dns"}))
    check(within=first)
    relabel(first, "elsewhere")                  # leaves the selector
    check(without=first, within=second)
    relabel(first, "kube-dns")                   # comes back
    check(within=first)
    unready(second)                              # not Ready: no backend
    check(without=second, within=first)
    store.delete("pods", "kube-system", first, graceful=True)   # being deleted: no backend
    check(without=first)
    sim.settle(timeout=5)                        # the Deployment's replacement pods come up
    replacement = check()[0]
    relabel(replacement, "elsewhere")
    monkeypatch.setattr(store, "events_since", lambda rv: (_ for _ in ()).throw(Gone("too old")))
    check(without=replacement)                   # the history is gone: worked out afresh
