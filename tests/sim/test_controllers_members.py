"""The ReplicaSet and disruption controllers keep the pods they count between reconciles, from
the pods' events: after every one of many random pod, ReplicaSet and budget changes, their
status equals a recount of the store's pods by the documented rules (written out here, apart
from the controllers' code)."""

from __future__ import annotations

import math
import random
from typing import Any

from migrator.sim.controllers.podfacts import Members
from tests.sim.controller_harness import Harness
from tests.sim.test_controllers_gc_pdb import h  # noqa: F401 - the fixture: three nodes a, b, c

Obj = dict[str, Any]
BUDGETS: list[Obj] = [{"maxUnavailable": 1}, {"maxUnavailable": "50%"}, {"minAvailable": 2},
                      {"minAvailable": "75%"}]


def _ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _owner(pod: Obj) -> Obj | None:
    return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


def _recount_replicaset(cluster: Harness, rs: Obj) -> dict[str, int]:
    """ReplicaSet status: its active pods (owned, not being deleted, not finished), how many carry
    its selector's labels, are Ready, are available (Ready, minReadySeconds 0)."""
    selector = rs["spec"]["selector"]["matchLabels"]
    active = [p for p in cluster.store.list("pods", "default")
              if (_owner(p) or {}).get("uid") == rs["metadata"]["uid"] and not p["metadata"].get("deletionTimestamp")
              and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    return {"replicas": len(active),
            "fullyLabeledReplicas": sum(all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
                                        for p in active),
            "readyReplicas": sum(_ready(p) for p in active), "availableReplicas": sum(_ready(p) for p in active)}


def _recount_budget(cluster: Harness, pdb: Obj) -> dict[str, int]:
    """PodDisruptionBudget status from the pods its selector selects: healthy ones (Ready, not
    being deleted), the scale of their controllers (or their number with an integer
    minAvailable, or when one has no controller), the desired healthy pods (rounded up)."""
    spec = pdb["spec"]
    selector = spec["selector"]["matchLabels"]
    pods = [p for p in cluster.store.list("pods", "default")
            if all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
    healthy = sum(1 for p in pods if _ready(p) and not p["metadata"].get("deletionTimestamp"))
    owners = {(_owner(p) or {}).get("uid") for p in pods}
    if None in owners or "minAvailable" in spec and isinstance(spec["minAvailable"], int):
        expected = len(pods)
    else:
        expected = sum(rs["spec"]["replicas"] for rs in cluster.store.list("apps/replicasets", "default")
                       if rs["metadata"]["uid"] in owners)

    def scaled(value: int | str) -> int:
        return math.ceil(int(value[:-1]) * expected / 100) if isinstance(value, str) else value

    desired = expected - scaled(spec["maxUnavailable"]) if "maxUnavailable" in spec else scaled(spec["minAvailable"])
    desired = max(0, desired)
    return {"currentHealthy": healthy, "expectedPods": expected, "desiredHealthy": desired,
            "disruptionsAllowed": max(0, healthy - desired)}


def _replicaset(name: str, replicas: int) -> Obj:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "set": name}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def test_status_after_random_changes_matches_a_recount(h: Harness) -> None:  # noqa: F811
    rng = random.Random(7)
    h.store.create("apps/replicasets", _replicaset("front", 4))
    h.store.create("apps/replicasets", _replicaset("back", 3))
    h.store.create("policy/poddisruptionbudgets", {"metadata": {"name": "web", "namespace": "default"},
                                                   "spec": {"selector": {"matchLabels": {"app": "web"}}, **BUDGETS[0]}})
    h.settle()
    moves: list[str] = []
    bare = 0
    for _ in range(70):
        pods = h.pods("default")
        pod = rng.choice(pods)
        name = pod["metadata"]["name"]
        op = rng.choice(["delete", "graceful", "unready", "ready", "relabel", "orphan", "bare", "scale", "budget",
                         "finish"])
        if op in ("delete", "graceful"):
            h.store.delete("pods", "default", name, graceful=op == "graceful")
        elif op in ("unready", "ready"):
            h.set_ready(name, op == "ready")
        elif op == "relabel":
            app = "web" if pod["metadata"]["labels"].get("app") != "web" else "other"
            h.store.mutate("pods", "default", name, lambda o, a=app: o["metadata"]["labels"].update(app=a))
        elif op == "orphan":
            h.store.mutate("pods", "default", name, lambda o: o["metadata"].update(ownerReferences=[]))
        elif op == "bare":
            bare += 1
            h.store.create("pods", {"metadata": {"name": f"bare-{bare}", "namespace": "default", "labels": {"app": "web"}},
                                    "spec": {"nodeName": "a", "containers": [{"name": "c", "image": "nginx"}]}})
        elif op == "scale":
            replicas = rng.randint(1, 6)
            h.store.mutate("apps/replicasets", "default", rng.choice(["front", "back"]),
                           lambda o, n=replicas: o["spec"].update(replicas=n))
        elif op == "finish":
            h.store.mutate("pods", "default", name, lambda o: o.setdefault("status", {}).update(phase="Succeeded"),
                           subresource="status")
        else:
            budget = rng.choice(BUDGETS)
            h.store.mutate("policy/poddisruptionbudgets", "default", "web",
                           lambda o, b=budget: o.update(spec={"selector": o["spec"]["selector"], **b}))
        moves.append(op)
        h.settle()
        for rs in h.store.list("apps/replicasets", "default"):
            status = {k: rs["status"][k] for k in ("replicas", "fullyLabeledReplicas", "readyReplicas", "availableReplicas")}
            assert status == _recount_replicaset(h, rs), f"ReplicaSet {rs['metadata']['name']} after {moves}"
        pdb = h.store.get("policy/poddisruptionbudgets", "default", "web")
        status = {k: pdb["status"][k] for k in ("currentHealthy", "expectedPods", "desiredHealthy", "disruptionsAllowed")}
        assert status == _recount_budget(h, pdb), f"budget after {moves}"
    assert {"relabel", "orphan", "bare", "scale", "budget", "graceful", "unready", "finish"} <= set(moves)


def pod(uid: str, rv: int, ready: bool, name: str | None = None) -> Obj:
    return {"metadata": {"uid": uid, "name": name or uid, "resourceVersion": str(rv)}, "status": {"ready": ready}}


def test_members_pass_over_events_the_list_already_shows():
    members = Members("v1", lambda p: p["status"]["ready"], [pod("a", 6, True), pod("b", 7, False)], listed_at=9)
    assert members.counts == {True: 1, False: 1}
    members.see(7, pod("b", 7, False), gone=False)        # the event of what was listed
    members.see(8, pod("c", 8, True), gone=False)         # created before the list, which had it gone
    members.see(5, pod("a", 5, False), gone=False)        # an older version than the list showed
    assert members.counts == {True: 1, False: 1} and len(members) == 2
    members.see(10, pod("a", 10, False), gone=False)
    members.see(11, pod("c", 11, True), gone=False)
    members.see(12, pod("b", 12, False), gone=True)
    assert members.counts == {False: 1, True: 1} and sorted(p["metadata"]["uid"] for p in members.pods()) == ["a", "c"]
    assert members.named("c") is not None and members.named("b") is None
