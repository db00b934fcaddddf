"""The watch-driven cache against the simulated cluster: one LIST then WATCH per kind,
``wait_for_change`` wakes on a change and times out on silence, watches resume from the
last resourceVersion without re-listing, and a 410 Gone makes the cache re-list.
"""

from __future__ import annotations

import time

from migrator.cluster.kube import KubeCluster
from migrator.cluster.port import WatchScope

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
