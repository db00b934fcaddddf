"""The watch-driven cache against the simulated cluster: one LIST then WATCH per kind,
``wait_for_change`` wakes on a change and times out on silence, watches resume from the
last resourceVersion without re-listing, a 410 Gone makes the cache re-list, and a watch that
is reset, refused or answered 5xx backs off, keeps the last state and recovers by itself.
"""

from __future__ import annotations

import time

from migrator.cluster.kube import KubeCluster
from migrator.cluster.port import WatchScope

from .tcpcut import Relay

LABEL = "io.cilium.migration/cilium-default"


def drain_changes(port: KubeCluster) -> None:
    while port.wait_for_change(0.2):
        pass


def eventually(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_one_list_per_kind_then_watches(sim, port) -> None:
    sim.requests.reset()
    port.start_watching(WatchScope(node_config_version="v2"))
    counts = sim.requests.counts()
    lists = {k: v for k, v in counts.items() if k[0] == "list"}
    assert lists == {("list", "nodes"): 1, ("list", "pods"): 1,
                     ("list", "policy/poddisruptionbudgets"): 1, ("list", "apps/daemonsets"): 1,
                     ("list", "cilium.io/ciliumnodeconfigs"): 1}
    port.start_watching(WatchScope())  # idempotent
    assert sum(v for k, v in sim.requests.counts().items() if k[0] == "list") == 5


def test_wait_for_change_wakes_on_changes_and_sees_them(sim, port, kubeconfig) -> None:
    port.start_watching(WatchScope())
    sim.settle()
    drain_changes(port)
    assert port.wait_for_change(0.05) is False
    writer = KubeCluster.from_kubeconfig(str(kubeconfig))
    writer.set_node_label("node-4", LABEL, "true")
    assert port.wait_for_change(5.0) is True
    assert eventually(lambda: next(n for n in port.list_nodes() if n.name == "node-4")
                      .labels.get(LABEL) == "true")


def test_watch_resumes_without_relisting(sim, kubeconfig) -> None:
    port = KubeCluster.from_kubeconfig(str(kubeconfig), watch_timeout_seconds=1)
    try:
        port.start_watching(WatchScope())
        time.sleep(1.5)  # every watch ended once at its timeout and was resumed
        port.cordon_node("node-5")
        assert eventually(lambda: next(n for n in port.list_nodes()
                                       if n.name == "node-5").unschedulable)
        assert port.cache.relists("nodes") == 1
    finally:
        port.close()


def test_gone_makes_the_cache_relist(sim, kubeconfig) -> None:
    port = KubeCluster.from_kubeconfig(str(kubeconfig), watch_timeout_seconds=1)
    try:
        port.start_watching(WatchScope())
        assert port.cache.relists("nodes") == 1
        sim.faults.add(verb="watch", resource="nodes", error_rate=1.0, code=410)
        # the watch in flight ends at its 1 s timeout; its successor is refused with 410 Gone
        assert eventually(lambda: port.cache.relists("nodes") >= 2, timeout=10)
        sim.faults.clear()
        port.cordon_node("node-3")
        assert eventually(lambda: next(n for n in port.list_nodes()
                                       if n.name == "node-3").unschedulable)
        assert port.cache.relists("pods") == 1  # other kinds were not disturbed
    finally:
        port.close()


def relayed_kubeconfig(sim, relay: Relay, tmp_path) -> str:
    from migrator.sim.kubeconfig import write_kubeconfig

    path = tmp_path / "relayed-kubeconfig"
    write_kubeconfig(path, relay.url, sim.token, context="sim", ca_pem=sim.server.ca_pem)
    return str(path)


def node(port: KubeCluster, name: str):
    return next(n for n in port.list_nodes() if n.name == name)


def test_a_cut_connection_and_an_unreachable_server_never_stall_the_cache(sim, tmp_path) -> None:
    """Every watch is reset and the server refuses connections for a while: readers keep the
    last state, ``wait_for_change`` returns at its timeout, and once the server is back the
    watches resume from their resourceVersion and deliver what changed meanwhile."""
    relay = Relay(sim.url)
    port = KubeCluster.from_kubeconfig(relayed_kubeconfig(sim, relay, tmp_path), watch_timeout_seconds=30)
    writer = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "direct")))
    try:
        port.start_watching(WatchScope())
        drain_changes(port)
        relay.cut()
        assert eventually(lambda: port.cache.errors("nodes") >= 2, timeout=10)  # it keeps reconnecting
        assert not port.cache.healthy("nodes")
        writer.cordon_node("node-2")
        started = time.monotonic()
        assert port.wait_for_change(0.3) is False
        assert time.monotonic() - started < 2.0  # returned at its timeout, not held by the dead watch
        assert node(port, "node-2").unschedulable is False  # the last state, served without a request
        relay.restore()
        assert eventually(lambda: node(port, "node-2").unschedulable, timeout=30)
        assert port.cache.relists("nodes") == 1  # resumed from its resourceVersion, no re-list
        assert port.cache.healthy("nodes")
    finally:
        port.close()
        relay.close()


def test_a_watch_answered_with_5xx_backs_off_and_recovers(sim, kubeconfig) -> None:
    port = KubeCluster.from_kubeconfig(str(kubeconfig), watch_timeout_seconds=1)
    try:
        port.start_watching(WatchScope())
        sim.faults.add(verb="watch", resource="nodes", error_rate=1.0, code=503)
        assert eventually(lambda: port.cache.errors("nodes") >= 3, timeout=15)
        refused = [e for e in sim.requests.entries if e.verb == "watch" and e.resource == "nodes" and e.code == 503]
        assert len(refused) <= port.cache.errors("nodes") + 1  # one try per back-off, no hot loop
        sim.faults.clear()
        KubeCluster.from_kubeconfig(str(kubeconfig)).cordon_node("node-1")
        assert eventually(lambda: node(port, "node-1").unschedulable, timeout=30)
        assert port.cache.relists("pods") == 1
    finally:
        port.close()


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    import random

    from migrator.cluster.cache import WatchCache

    cache = WatchCache(error_backoff=0.5, max_backoff=10.0, rng=random.Random(1))
    waits = [cache._backoff(n) for n in range(1, 9)]
    assert all(0.25 <= w <= 0.5 for w in waits[:1])
    assert all(5.0 <= w <= 10.0 for w in waits[5:])
    assert waits[3] > waits[0]


def test_the_kept_orders_follow_every_change() -> None:
    """Each kind keeps its sorted order, and each index value its own, until its set changes: an
    object that moves to another value, comes or goes is seen at once, in order."""
    from migrator.cluster.cache import _Kind

    def pod(name: str, node: str) -> dict:
        return {"metadata": {"namespace": "ns", "name": name}, "spec": {"nodeName": node}}

    kind = _Kind(lambda raw: raw["spec"]["nodeName"], {"node": lambda node: node})
    names = lambda entries: [e.raw["metadata"]["name"] for e in entries]  # noqa: E731
    for name, node in (("c", "n1"), ("a", "n1"), ("b", "n2")):
        kind.put(pod(name, node))
    assert names(kind.ordered()) == ["a", "b", "c"] and names(kind.with_value("node", "n1")) == ["a", "c"]
    kind.put(pod("a", "n1"))                       # updated in place: same sets
    kind.put(pod("c", "n2"))                       # moved to another node
    assert names(kind.with_value("node", "n1")) == ["a"] and names(kind.with_value("node", "n2")) == ["b", "c"]
    kind.put(pod("0", "n2"))                       # a new one sorts first
    kind.drop(("ns", "b"))
    assert names(kind.ordered()) == ["0", "a", "c"] and names(kind.with_value("node", "n2")) == ["0", "c"]
    kind.replace_all([pod("z", "n1")])
    assert names(kind.ordered()) == ["z"] and kind.with_value("node", "n2") == []


def test_changes_name_what_was_put_or_dropped_since_a_cursor() -> None:
    """``changes`` tells a reader which objects moved since its cursor, and says it cannot tell
    (None: read everything) on the first call, after a relist, and for a cursor the kept log no
    longer reaches."""
    from migrator.cluster import cache as cache_module
    from migrator.cluster.cache import _Kind

    def pod(name: str) -> dict:
        return {"metadata": {"namespace": "ns", "name": name}}

    kind = _Kind(lambda raw: raw["metadata"]["name"], {})
    kind.replace_all([pod("a"), pod("b")])
    keys, cursor = kind.changes(None)
    assert keys is None                                   # first call: read everything
    keys, cursor = kind.changes(cursor)
    assert keys == set()
    kind.put(pod("a"))
    kind.put(pod("c"))
    kind.drop(("ns", "b"))
    kind.drop(("ns", "nobody"))                           # not there: nothing changed
    keys, cursor = kind.changes(cursor)
    assert keys == {("ns", "a"), ("ns", "b"), ("ns", "c")}
    kind.replace_all([pod("a")])                          # a relist: the reader's cursor is stale
    keys, cursor = kind.changes(cursor)
    assert keys is None
    stale = cursor
    for i in range(cache_module.LOG_LIMIT + 1):           # the log is cut past its limit
        kind.put(pod(f"p{i % 7}"))
    keys, cursor = kind.changes(stale)
    assert keys is None
    kind.put(pod("late"))
    assert kind.changes(cursor)[0] == {("ns", "late")}
