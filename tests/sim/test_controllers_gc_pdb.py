"""Garbage collection (background, foreground, orphan, namespaces, pods of deleted nodes),
PodDisruptionBudget status for integer and percentage forms with disrupted pods, and
Endpoints following pod readiness."""

from __future__ import annotations

import pytest

from migrator.sim.errors import TooManyRequests
from migrator.sim.eviction import evict
from migrator.sim.operations import Target
from migrator.sim.registry import BUILTIN
from migrator.sim.store import now_rfc3339
from tests.sim.controller_harness import Harness
from tests.sim.test_controllers_workloads import deployment


@pytest.fixture
def h():
    harness = Harness()
    for n in ("a", "b", "c"):
        harness.node(n)
    yield harness
    harness.stop()


def test_background_deletion_removes_replicasets_and_pods(h):
    h.store.create("apps/deployments", deployment("web", 3))
    h.settle()
    assert len(h.pods("default", app="web")) == 3
    h.store.delete("apps/deployments", "default", "web")
    h.settle()
    assert h.store.list("apps/replicasets", "default") == []
    assert h.pods("default", app="web") == []


def test_foreground_deletion_waits_for_dependents(h):
    h.store.create("apps/deployments", deployment("web", 2))
    h.settle()
    h.store.mutate("apps/deployments", "default", "web",
                   lambda d: d["metadata"].update(finalizers=["foregroundDeletion"]))
    obj, gone = h.store.delete("apps/deployments", "default", "web")
    assert not gone and obj["metadata"]["deletionTimestamp"]
    h.settle()
    assert h.store.try_get("apps/deployments", "default", "web") is None
    assert h.store.list("apps/replicasets", "default") == [] and h.pods("default", app="web") == []


def test_orphan_deletion_keeps_dependents_without_the_reference(h):
    h.store.create("apps/deployments", deployment("web", 2))
    h.settle()
    h.store.mutate("apps/deployments", "default", "web", lambda d: d["metadata"].update(finalizers=["orphan"]))
    h.store.delete("apps/deployments", "default", "web")
    h.settle()
    assert h.store.try_get("apps/deployments", "default", "web") is None
    [rs] = h.store.list("apps/replicasets", "default")
    assert "ownerReferences" not in rs["metadata"]
    assert len(h.pods("default", app="web")) == 2


def test_namespace_terminates_once_its_contents_are_gone(h):
    h.store.create("namespaces", {"metadata": {"name": "shop"}, "spec": {"finalizers": ["kubernetes"]}})
    h.store.mutate("namespaces", None, "shop", lambda d: d["metadata"].update(finalizers=["kubernetes"]))
    dep = deployment("web", 2)
    dep["metadata"]["namespace"] = "shop"
    h.store.create("apps/deployments", dep)
    h.store.create("configmaps", {"metadata": {"name": "cfg", "namespace": "shop"}, "data": {}})
    h.settle()
    h.store.delete("namespaces", None, "shop")
    h.settle()
    assert h.store.try_get("namespaces", None, "shop") is None
    assert h.store.list("pods", "shop") == [] and h.store.list("configmaps", "shop") == []


def test_pods_of_a_deleted_node_are_collected(h):
    h.store.create("pods", {"metadata": {"name": "p", "namespace": "default"},
                            "spec": {"nodeName": "c", "containers": [{"name": "c", "image": "x"}]}})
    h.settle()
    h.store.delete("nodes", None, "c")
    h.settle()
    assert h.store.try_get("pods", "default", "p") is None


def pdb(name: str, app: str, **budget) -> dict:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}, **budget}}


def pdb_status(h: Harness, name: str) -> tuple[int, int, int, int]:
    st = h.store.get("policy/poddisruptionbudgets", "default", name)["status"]
    return st["currentHealthy"], st["desiredHealthy"], st["expectedPods"], st["disruptionsAllowed"]


@pytest.mark.parametrize(("budget", "healthy_all", "healthy_one_down"), [
    ({"maxUnavailable": 1}, (4, 3, 4, 1), (3, 3, 4, 0)),
    ({"maxUnavailable": "50%"}, (4, 2, 4, 2), (3, 2, 4, 1)),
    ({"minAvailable": 2}, (4, 2, 4, 2), (3, 2, 4, 1)),
    ({"minAvailable": "75%"}, (4, 3, 4, 1), (3, 3, 4, 0)),
    ({"minAvailable": "30%"}, (4, 2, 4, 2), (3, 2, 4, 1)),  # 1.2 rounds up
])
def test_pdb_status_for_int_and_percent_budgets(h, budget, healthy_all, healthy_one_down):
    h.store.create("apps/deployments", deployment("web", 4))
    h.store.create("policy/poddisruptionbudgets", pdb("web", "web", **budget))
    h.settle()
    assert pdb_status(h, "web") == healthy_all
    st = h.store.get("policy/poddisruptionbudgets", "default", "web")["status"]
    assert st["observedGeneration"] == 1
    assert st["conditions"][0]["type"] == "DisruptionAllowed"
    h.set_ready(h.pods("default", app="web")[0]["metadata"]["name"], False)
    h.settle()
    assert pdb_status(h, "web") == healthy_one_down


def test_pdb_counts_disrupted_pods_as_unhealthy_until_they_go(h):
    h.store.create("apps/deployments", deployment("web", 3))
    h.store.create("policy/poddisruptionbudgets", pdb("web", "web", maxUnavailable=1))
    h.settle()
    victim = h.pods("default", app="web")[0]["metadata"]["name"]
    # what the eviction subresource writes before deleting the pod
    h.store.mutate("policy/poddisruptionbudgets", "default", "web", lambda d: d["status"].update(
        disruptionsAllowed=0, disruptedPods={victim: now_rfc3339()}), subresource="status")
    h.settle()
    assert pdb_status(h, "web") == (2, 2, 3, 0)
    assert victim in h.store.get("policy/poddisruptionbudgets", "default", "web")["status"]["disruptedPods"]
    h.store.delete("pods", "default", victim, graceful=True)
    h.settle()  # replaced and Ready again
    assert pdb_status(h, "web") == (3, 2, 3, 1)
    assert "disruptedPods" not in h.store.get("policy/poddisruptionbudgets", "default", "web")["status"]


def test_pdb_without_controller_counts_matching_pods(h):
    for i in range(3):
        h.store.create("pods", {"metadata": {"name": f"solo-{i}", "namespace": "default", "labels": {"app": "solo"}},
                                "spec": {"containers": [{"name": "c", "image": "x"}]}})
    h.store.create("policy/poddisruptionbudgets", pdb("solo", "solo", maxUnavailable="34%"))
    h.settle()
    assert pdb_status(h, "solo") == (3, 1, 3, 2)  # 34% of 3 rounds up to 2


def test_a_null_selector_selects_no_pod_and_an_empty_one_every_pod_of_the_namespace(h):
    h.store.create("apps/deployments", deployment("web", 2))
    h.store.create("policy/poddisruptionbudgets", {"metadata": {"name": "none", "namespace": "default"},
                                                   "spec": {"maxUnavailable": 0}})
    h.store.create("policy/poddisruptionbudgets", {"metadata": {"name": "all", "namespace": "default"},
                                                   "spec": {"selector": {}, "maxUnavailable": 0}})
    h.settle()
    assert pdb_status(h, "none") == (0, 0, 0, 0)
    assert pdb_status(h, "all") == (2, 2, 2, 0)


PODS = next(r for r in BUILTIN if r.plural == "pods" and r.group == "")


def _evict(h: Harness, name: str) -> None:
    evict(h.store, Target(PODS, "default", name, "eviction"), {})


@pytest.mark.parametrize(("policy", "unready_goes_when_disrupted"), [(None, False), ("AlwaysAllow", True)])
def test_an_unready_pod_is_evicted_as_its_budgets_unhealthy_pod_policy_says(h, policy, unready_goes_when_disrupted):
    h.store.create("apps/deployments", deployment("web", 3))
    budget = pdb("web", "web", minAvailable=2, **({"unhealthyPodEvictionPolicy": policy} if policy else {}))
    h.store.create("policy/poddisruptionbudgets", budget)
    h.settle()
    first, second, third = sorted(p["metadata"]["name"] for p in h.pods("default", app="web"))
    h.store.create("pods", {"metadata": {"name": "web-extra", "namespace": "default", "labels": {"app": "web"}},
                            "spec": {"containers": [{"name": "c", "image": "x"}]}})
    h.set_ready("web-extra", False)
    h.settle()
    assert pdb_status(h, "web") == (3, 2, 4, 1)
    _evict(h, "web-extra")        # not Ready, the application not disrupted: goes, the room stays
    assert pdb_status(h, "web")[3] == 1
    h.set_ready(first, False)
    h.set_ready(second, False)
    h.settle()
    assert pdb_status(h, "web")[:2] == (1, 2)      # disrupted: 1 healthy of 2 needed
    with pytest.raises(TooManyRequests):
        _evict(h, third)          # Ready: always asks the budget
    if unready_goes_when_disrupted:
        _evict(h, first)
    else:
        with pytest.raises(TooManyRequests):
            _evict(h, first)


def test_endpoints_follow_readiness(h):
    h.store.create("apps/deployments", deployment("web", 2))
    h.store.create("services", {"metadata": {"name": "web", "namespace": "default"},
                                "spec": {"selector": {"app": "web"},
                                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    h.settle()
    ep = h.store.get("endpoints", "default", "web")
    [subset] = ep["subsets"]
    assert len(subset["addresses"]) == 2 and subset["ports"] == [{"port": 8080, "protocol": "TCP", "name": "http"}]
    slow = h.pods("default", app="web")[0]
    h.set_ready(slow["metadata"]["name"], False)
    h.settle()
    [subset] = h.store.get("endpoints", "default", "web")["subsets"]
    assert [a["targetRef"]["name"] for a in subset["notReadyAddresses"]] == [slow["metadata"]["name"]]
    assert len(subset["addresses"]) == 1
    h.set_ready(slow["metadata"]["name"], True)   # the Service's and the pods' changes both count
    h.store.mutate("services", "default", "web", lambda s: s["spec"]["ports"][0].update(targetPort=9090))
    h.settle()
    [subset] = h.store.get("endpoints", "default", "web")["subsets"]
    assert len(subset["addresses"]) == 2 and "notReadyAddresses" not in subset
    assert subset["ports"] == [{"port": 9090, "protocol": "TCP", "name": "http"}]
    h.store.delete("services", "default", "web")
    h.settle()
    assert h.store.try_get("endpoints", "default", "web") is None
