"""Policy in the simulated network during a migration: both ends checked, each by the engine that owns
it; ``enable-policy`` per node from the CiliumNodeConfigs; Calico pods seen by Cilium as ``unmanaged``,
or as their node when Calico's natOutgoing masquerades them; netexec's /dial reporting the denial;
and a cross-check of the sim's Calico verdicts against the tool's own Calico evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sim.test_guide_steps import _wait, migrate_node

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.52"
GUIDE_DEFAULTS = {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                  "custom-cni-conf": "false", "cni-chaining-mode": "none", "cni-exclusive": "true"}


def _cnc(name: str, selector: dict[str, str], defaults: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
            "metadata": {"name": name, "namespace": "kube-system"},
            "spec": {"nodeSelector": {"matchLabels": selector}, "defaults": defaults}}


def _pod(sim: Any, name: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    sim.store.create("pods", {"metadata": {"name": name, "namespace": "default", "labels": labels},
                              "spec": {"nodeName": node, "tolerations": [{"operator": "Exists"}], "containers": [
                                  {"name": "netexec", "image": AGNHOST,
                                   "args": ["netexec", "--http-port=8080", "--udp-port=8080"]}]}})
    _wait(lambda: sim.store.get("pods", "default", name)["status"].get("podIP"))
    return sim.store.get("pods", "default", name)


@pytest.fixture(scope="module")
def mixed(request: Any) -> Any:
    """cp-1; node-1 Cilium with enable-policy default, node-2 Cilium always, node-3 Cilium never,
    node-4 Calico. Pods in ``default``: ``cal1`` (Calico, on node-1, created before it switched),
    ``t1``/``c1``/``o1`` on node-1, ``t2``/``o2`` on node-2, ``t3`` on node-3, ``cal4`` on node-4;
    ``t*`` are app=target, ``c1`` and ``cal4`` app=client, ``o*`` app=other. One CNP: targets take
    ingress from app=client only."""
    from migrator.sim.cluster import SimCluster
    from tests.conftest import fast_config
    sim = SimCluster(config=fast_config(5), seed=11).start()
    request.addfinalizer(sim.stop)
    store = sim.store
    store.create("cilium.io/ciliumnodeconfigs", _cnc("cilium-default", {"io.cilium.migration/cilium-default": "true"},
                                                     {**GUIDE_DEFAULTS, "enable-policy": "default"}))
    store.create("cilium.io/ciliumnodeconfigs", _cnc("z-always", {"kubernetes.io/hostname": "node-2"},
                                                     {"enable-policy": "always"}))
    store.create("cilium.io/ciliumnodeconfigs", _cnc("z-never", {"kubernetes.io/hostname": "node-3"},
                                                     {"enable-policy": "never"}))
    pods = {"cal1": _pod(sim, "cal1", "node-1", {"app": "client"})}
    for node in ("node-1", "node-2", "node-3"):
        migrate_node(sim, node)
    for name, node, app in (("t1", "node-1", "target"), ("c1", "node-1", "client"), ("o1", "node-1", "other"),
                            ("t2", "node-2", "target"), ("o2", "node-2", "other"), ("t3", "node-3", "target"),
                            ("cal4", "node-4", "client")):
        pods[name] = _pod(sim, name, node, {"app": app})
    store.create("cilium.io/ciliumnetworkpolicies", {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "targets", "namespace": "default"},
        "spec": {"endpointSelector": {"matchLabels": {"app": "target"}},
                 "ingress": [{"fromEndpoints": [{"matchLabels": {"app": "client"}}]}]}})
    sim.settle(timeout=10)
    sim.pods = pods
    return sim


def _reach(sim: Any, src: str, dst: str, port: int = 8080, protocol: str = "tcp") -> tuple[bool, str]:
    ip = {n: p["status"]["podIP"] for n, p in sim.pods.items()}
    return sim.fleet.network.reachable(ip[src], ip[dst], port, protocol)


def test_the_pods_sit_where_the_case_needs_them(mixed: Any) -> None:
    net = mixed.fleet.network
    networks = {n: net.endpoint(p["status"]["podIP"]).network for n, p in mixed.pods.items()}
    assert networks == {"cal1": "calico", "t1": "cilium", "c1": "cilium", "o1": "cilium", "t2": "cilium",
                        "o2": "cilium", "t3": "cilium", "cal4": "calico"}
    modes = {n: mixed.fleet.runtimes[n].cilium.config.get("enable-policy") for n in ("node-1", "node-2", "node-3")}
    assert modes == {"node-1": "default", "node-2": "always", "node-3": "never"}


@pytest.mark.parametrize(("src", "dst", "allowed", "reason"), [
    ("c1", "t1", True, "ok"),                       # a Cilium client: its label identity matches
    ("c1", "t2", True, "ok"),
    ("o1", "t1", False, "denied by NetworkPolicy (cilium): ingress of default/t1 not allowed by "
                        "CiliumNetworkPolicy default/targets"),
    ("c1", "o1", True, "ok"),                       # default: an unselected endpoint is open
    ("c1", "o2", False, "enable-policy is always"),  # always: default-deny everywhere on node-2
    ("o1", "t3", True, "ok"),                       # never: node-3 enforces nothing
    # a Calico client on another node is masqueraded by natOutgoing: remote-node, not app=client
    ("cal4", "t1", False, "not allowed by CiliumNetworkPolicy default/targets"),
    # on the same node the masqueraded packet comes from the local host, which Cilium lets in
    ("cal1", "t1", True, "ok"),
])
def test_enforcement_per_node_and_identity(mixed: Any, src: str, dst: str, allowed: bool, reason: str) -> None:
    ok, why = _reach(mixed, src, dst)
    assert ok is allowed and reason in why, why


def test_identities_of_calico_peers_follow_nat_outgoing(mixed: Any) -> None:
    net = mixed.fleet.network
    ep = {n: net.endpoint(p["status"]["podIP"]) for n, p in mixed.pods.items()}
    node4_ip = mixed.fleet.runtimes["node-4"].ip
    assert net.identity(ep["cal4"], ep["t1"], "ingress").kinds == {"remote-node"}
    assert net.identity(ep["cal4"], ep["t1"], "ingress").ip == node4_ip
    assert net.identity(ep["cal1"], ep["t1"], "ingress").kinds == {"host"}
    assert net.identity(ep["cal4"], ep["t1"], "egress").kinds == {"unmanaged"}   # a destination keeps its IP
    assert net.identity(ep["c1"], ep["t1"], "ingress").labels["app"] == "client"


def test_a_disabled_pool_for_the_cilium_cidr_keeps_calico_sources_unmanaged(mixed: Any) -> None:
    store, net = mixed.store, mixed.fleet.network
    pool = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "cilium-pool"},
            "spec": {"cidr": mixed.config.cilium_pool, "disabled": True, "natOutgoing": False}}
    store.create("crd.projectcalico.org/ippools", pool)
    shim = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
            "metadata": {"name": "shim", "namespace": "default"},
            "spec": {"endpointSelector": {"matchLabels": {"app": "target"}},
                     "ingress": [{"fromEntities": ["unmanaged"], "toPorts": [{"ports": [{"port": "8080"}]}]}]}}
    try:
        ep = {n: net.endpoint(p["status"]["podIP"]) for n, p in mixed.pods.items()}
        assert net.identity(ep["cal4"], ep["t1"], "ingress").kinds == {"unmanaged"}
        assert not _reach(mixed, "cal4", "t1")[0]              # a label rule cannot match an unmanaged pod
        store.create("cilium.io/ciliumnetworkpolicies", shim)
        assert _reach(mixed, "cal4", "t1")[0]                  # the unmanaged entity can
        assert not _reach(mixed, "cal4", "t1", 9090)[0]
    finally:
        store.delete("crd.projectcalico.org/ippools", None, "cilium-pool")
        if store.try_get("cilium.io/ciliumnetworkpolicies", "default", "shim"):
            store.delete("cilium.io/ciliumnetworkpolicies", "default", "shim")
    assert net.identity(ep["cal4"], ep["t1"], "ingress").kinds == {"remote-node"}


def test_calico_enforces_on_a_cilium_pod_by_its_labels(mixed: Any) -> None:
    """Felix sees Cilium pods as workload endpoints: a Calico pod's ingress policy matches them by label."""
    store = mixed.store
    store.create("crd.projectcalico.org/networkpolicies", {
        "apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "only-clients", "namespace": "default"},
        "spec": {"selector": "app == 'client'", "order": 10, "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "source": {"selector": "app == 'client'"}}]}})
    try:
        assert _reach(mixed, "c1", "cal4")[0]
        ok, why = _reach(mixed, "o1", "cal4")
        assert not ok and why.startswith("denied by NetworkPolicy (calico): ingress of default/cal4 denied at "
                                         "the end of tier default"), why
    finally:
        store.delete("crd.projectcalico.org/networkpolicies", "default", "only-clients")


@pytest.mark.parametrize("protocol", ["http", "udp"])
def test_netexec_dial_reports_the_engine_and_the_policy(mixed: Any, protocol: str) -> None:
    src, dst = mixed.pods["o1"], mixed.pods["t1"]
    code, body = mixed.fleet.proxy(src, "8080", "/dial", {"host": [dst["status"]["podIP"]], "port": ["8080"],
                                                           "protocol": [protocol], "tries": ["1"]})
    assert code == 200 and body["responses"] == []
    (error,) = body["errors"]
    proto = "udp" if protocol == "udp" else "tcp"
    assert f"dial {proto} {dst['status']['podIP']}:8080: i/o timeout (denied by NetworkPolicy (cilium)" in error
    assert "CiliumNetworkPolicy default/targets" in error
    code, body = mixed.fleet.proxy(mixed.pods["c1"], "8080", "/dial", {
        "host": [dst["status"]["podIP"]], "port": ["8080"], "protocol": [protocol]})
    assert body == {"responses": ["t1"], "errors": []}
