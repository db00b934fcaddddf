"""The simulated scheduler: node selectors, required affinity, taints and tolerations,
cordoned and NotReady nodes, pod capacity, PreferNoSchedule, spreading, the
Unschedulable condition with retry when nodes change, and the search that stops early on
100 nodes or more (kube-scheduler's percentageOfNodesToScore)."""

from __future__ import annotations

import pytest

from migrator.sim.config import SimConfig
from migrator.sim.controllers.matching import named_nodes
from migrator.sim.controllers.scheduler import feasible_nodes_to_find
from tests.sim.controller_harness import FAST, Harness


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.stop()


def bare_pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "nginx"}], **spec}}


def node_of(h: Harness, name: str) -> str | None:
    return h.store.get("pods", "default", name)["spec"].get("nodeName")


def scheduled_condition(h: Harness, name: str) -> dict:
    pod = h.store.get("pods", "default", name)
    return next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")


def test_taints_need_tolerations(h):
    h.node("a", taints=[{"key": "dedicated", "value": "db", "effect": "NoSchedule"}])
    h.node("b", taints=[{"key": "gpu", "effect": "NoExecute"}])
    h.store.create("pods", bare_pod("plain"))
    h.store.create("pods", bare_pod("tolerant", tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]))
    h.store.create("pods", bare_pod("wrong-value", tolerations=[
        {"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"}]))
    h.settle()
    assert node_of(h, "plain") is None
    cond = scheduled_condition(h, "plain")
    assert (cond["status"], cond["reason"]) == ("False", "Unschedulable")
    assert cond["message"].startswith("0/2 nodes are available")
    assert node_of(h, "tolerant") == "a"
    assert node_of(h, "wrong-value") is None


def test_node_selector_and_required_affinity(h):
    h.node("a", labels={"zone": "z1", "disk": "ssd"})
    h.node("b", labels={"zone": "z2"})
    h.node("c", labels={"zone": "z3"})
    h.store.create("pods", bare_pod("selector", nodeSelector={"zone": "z2"}))
    h.store.create("pods", bare_pod("not-in", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z1", "z2"]}]}]}}}))
    h.store.create("pods", bare_pod("exists", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}}}))
    h.store.create("pods", bare_pod("fields", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"}]},  # terms are ORed
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}))
    h.store.create("pods", bare_pod("nowhere", nodeSelector={"zone": "z9"}))
    h.settle()
    assert node_of(h, "selector") == "b"
    assert node_of(h, "not-in") == "c"
    assert node_of(h, "exists") == "a"
    assert node_of(h, "fields") in {"a", "b", "c"}
    assert node_of(h, "nowhere") is None
    assert "didn't match Pod's node affinity/selector" in scheduled_condition(h, "nowhere")["message"]


def pinned(*terms: dict) -> dict:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def names(*values: str) -> dict:
    return {"key": "metadata.name", "operator": "In", "values": list(values)}


def test_named_nodes_is_the_node_affinity_prefilter():
    assert named_nodes({}) is None
    assert named_nodes({"affinity": pinned({"matchFields": [names("a")]})}) == {"a"}
    # terms are ORed: their names are united; one term without names leaves every node
    assert named_nodes({"affinity": pinned({"matchFields": [names("a")]}, {"matchFields": [names("b", "c")]})}) \
        == {"a", "b", "c"}
    assert named_nodes({"affinity": pinned({"matchFields": [names("a")]},
                                           {"matchExpressions": [{"key": "zone", "operator": "Exists"}]})}) is None
    # requirements of one term are ANDed: their name lists intersect
    assert named_nodes({"affinity": pinned({"matchFields": [names("a", "b"), names("b", "c")]})}) == {"b"}
    assert named_nodes({"affinity": pinned({"matchFields": [names("a"), names("c")]})}) == frozenset()
    # NotIn narrows nothing
    assert named_nodes({"affinity": pinned({"matchFields": [
        {"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]})}) is None


def test_pods_pinned_by_name_are_filtered_on_their_nodes_only(h):
    h.node("a", labels={"zone": "z1"})
    h.node("b", taints=[{"key": "dedicated", "effect": "NoSchedule"}])
    h.node("c", labels={"zone": "z3"})
    h.store.create("pods", bare_pod("on-a", affinity=pinned({"matchFields": [names("a")]})))
    h.store.create("pods", bare_pod("on-tainted-b", affinity=pinned({"matchFields": [names("b")]})))
    h.store.create("pods", bare_pod("selector-too", nodeSelector={"zone": "z1"},
                                    affinity=pinned({"matchFields": [names("a", "c")]})))
    h.store.create("pods", bare_pod("on-missing", affinity=pinned({"matchFields": [names("gone")]})))
    h.settle()
    assert node_of(h, "on-a") == "a"
    assert node_of(h, "selector-too") == "a"   # the named nodes still pass every filter
    assert node_of(h, "on-tainted-b") is None
    assert scheduled_condition(h, "on-tainted-b")["message"] == (
        "0/3 nodes are available: 2 node(s) didn't satisfy plugin(s) [NodeAffinity], "
        "1 node(s) had untolerated taint {dedicated: }.")   # kube-scheduler's words for the nodes left out
    assert scheduled_condition(h, "on-missing")["message"] == (
        "0/3 nodes are available: 3 node(s) didn't satisfy plugin(s) [NodeAffinity].")
    h.node("gone")
    h.settle()
    assert node_of(h, "on-missing") == "gone"


def test_cordoned_and_notready_nodes_are_avoided_unless_tolerated(h):
    h.node("cordoned", unschedulable=True)
    h.node("down", ready=False)
    h.store.create("pods", bare_pod("p"))
    h.store.create("pods", bare_pod("t", tolerations=[
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]))
    h.settle()
    assert node_of(h, "p") is None
    assert node_of(h, "t") == "cordoned"
    h.set_node("down", lambda d: d["status"].update(conditions=[{"type": "Ready", "status": "True"}]))
    h.settle()
    assert node_of(h, "p") == "down"  # retried once the node changed


def test_capacity_spreading_and_prefer_no_schedule(h):
    h.node("small", pods=1)
    h.node("big", pods=10)
    h.node("soft", taints=[{"key": "spot", "effect": "PreferNoSchedule"}])
    for i in range(4):
        h.store.create("pods", bare_pod(f"p{i}"))
    h.settle()
    placed = [node_of(h, f"p{i}") for i in range(4)]
    assert placed.count("small") == 1  # capacity 1
    assert placed.count("big") == 3  # the PreferNoSchedule node comes last while others have room
    for i in range(4, 11):
        h.store.create("pods", bare_pod(f"p{i}"))
    h.settle()
    placed = [node_of(h, f"p{i}") for i in range(11)]
    assert (placed.count("small"), placed.count("big"), placed.count("soft")) == (1, 10, 0)
    h.store.create("pods", bare_pod("overflow"))
    h.settle()
    assert node_of(h, "overflow") == "soft"  # untainted nodes are full


def test_spreads_pods_of_one_owner(h):
    for n in ("a", "b", "c"):
        h.node(n)
    h.store.create("apps/deployments", {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    h.settle()
    nodes = sorted(p["spec"]["nodeName"] for p in h.pods("default", app="web"))
    assert nodes == ["a", "a", "b", "b", "c", "c"]


def test_unschedulable_pod_lands_on_a_new_node(h):
    h.store.create("pods", bare_pod("waiting"))
    h.settle()
    assert scheduled_condition(h, "waiting")["reason"] == "Unschedulable"
    h.node("fresh")
    h.settle()
    assert node_of(h, "waiting") == "fresh"
    assert scheduled_condition(h, "waiting")["status"] == "True"


def test_pod_waiting_for_room_lands_when_a_pod_goes(h):
    h.node("tiny", pods=1)
    h.store.create("pods", bare_pod("first"))
    h.store.create("pods", bare_pod("second"))
    h.settle()
    assert node_of(h, "first") == "tiny" and node_of(h, "second") is None
    assert "Too many pods" in scheduled_condition(h, "second")["message"]
    h.store.delete("pods", "default", "first", graceful=True)
    h.settle()
    assert node_of(h, "second") == "tiny"


def test_random_scoring_is_uniform_among_preferred_nodes_and_seeded():
    def placements(seed: int) -> list[str | None]:
        harness = Harness(seed=seed, config=SimConfig(nodes=4, latencies=FAST, scheduler_scoring="random"))
        try:
            for n in ("a", "b", "c", "d"):
                harness.node(n)
            harness.node("soft", taints=[{"key": "spot", "effect": "PreferNoSchedule"}])
            harness.node("full", pods=0)
            for i in range(60):
                harness.store.create("pods", bare_pod(f"p{i}"))
            harness.settle()
            return [node_of(harness, f"p{i}") for i in range(60)]
        finally:
            harness.stop()
    first = placements(3)
    counts = {n: first.count(n) for n in ("a", "b", "c", "d", "soft", "full")}
    assert counts["soft"] == 0 and counts["full"] == 0 and sum(counts.values()) == 60
    assert all(5 <= counts[n] <= 25 for n in "abcd"), counts   # not spread evenly, not piled up
    assert first == placements(3)                               # replays from its seed
    assert first != placements(4)


@pytest.mark.parametrize(("nodes", "searched"), [
    (3, 3), (99, 99),          # under 100 nodes every node is searched
    (100, 100), (200, 100),    # 50 % (49 % at 200) but never under 100 nodes
    (1000, 420),               # 50 - 1000/125 = 42 %
    (5000, 500),               # 10 % at 5,000, as the documentation says
    (10000, 500),              # the percentage never goes under 5
])
def test_the_search_stops_after_kube_schedulers_default_share_of_the_nodes(nodes, searched):
    assert feasible_nodes_to_find(nodes) == searched


def spot(name: str) -> bool:
    return int(name.split("-")[1]) < 100


def test_on_200_nodes_each_search_starts_where_the_last_stopped(h):
    """Nodes n-000..n-199, those under n-100 PreferNoSchedule-tainted: the first pod's search
    finds 100 feasible nodes (n-000..n-099, all tainted), so it lands on a tainted node although
    untainted ones have room (the taint is a score among the nodes searched); the next search
    starts at n-100 and finds the untainted ones."""
    for i in range(200):
        h.node(f"n-{i:03}", taints=[{"key": "spot", "effect": "PreferNoSchedule"}] if i < 100 else None)
    h.store.create("pods", bare_pod("first"))
    h.settle()
    h.store.create("pods", bare_pod("second"))
    h.settle()
    assert spot(node_of(h, "first"))
    assert not spot(node_of(h, "second"))


def test_a_pod_that_fits_outside_the_window_is_never_unschedulable(h):
    """300 nodes, only the last 10 with room: no window of 144 nodes searched in turn from n-000
    holds one (the second ends at n-287), and the pod gets a search over every node instead of an
    Unschedulable condition (kube-scheduler counts a full node as infeasible and searches on)."""
    for i in range(300):
        h.node(f"n-{i:03}", pods=0 if i < 290 else 110)
    h.store.create("pods", bare_pod("late"))
    h.settle()
    assert int(node_of(h, "late").split("-")[1]) >= 290
    assert scheduled_condition(h, "late")["status"] == "True"
