"""The simulated kube-scheduler: binds pending pods to nodes.

A pod with an empty ``spec.nodeName`` (and the default scheduler) is bound to a feasible
node. Feasible means: ``nodeSelector`` and required node affinity match, every
``NoSchedule``/``NoExecute`` taint is tolerated (cordoned and NotReady nodes count as
tainted, as the node lifecycle controller would taint them), and the node has room under
``status.allocatable.pods``. Among feasible nodes the choice is deterministic: nodes whose
``PreferNoSchedule`` taints are all tolerated first, then the fewest pods of the same
owner (spreading), then the fewest pods, then the name. With ``scheduler_scoring: random`` the
choice among the feasible nodes of the best taint preference is uniform instead (drawn from the
world's seed and the pod's name, so it replays whatever the timing): the scoring of a scheduler
that does not favour emptied nodes.

Pods that fit nowhere get ``PodScheduled=False`` with reason ``Unschedulable`` and the
same summary the real scheduler writes; they are retried whenever a node changes.

Scale: scheduling runs in batched passes (see ``coalesce``); per pass, nodes are filtered
once per pod *shape* and placed through a lazily refreshed heap, so placing 20,000 pods on
1,000 nodes costs far less than pods × nodes. A pod whose required node affinity names its
nodes (``matchFields`` on ``metadata.name``, as every DaemonSet pod's does) is filtered against
those nodes only, as kube-scheduler's NodeAffinity PreFilter narrows it
(``matching.named_nodes``; the nodes left out count as "didn't satisfy plugin(s) [NodeAffinity]"
in the Unschedulable message, as they do in kube-scheduler): placing a DaemonSet's pod costs the
same on 5 nodes as on 5,000.

On 100 nodes or more the scheduler stops filtering once it has found enough feasible nodes, as
kube-scheduler does with ``percentageOfNodesToScore`` at its default (Scheduler Performance
Tuning: "a linear formula that yields 50% for a 100-node cluster and yields 10% for a 5000-node
cluster", never under 5 % and never under 100 nodes, ``minFeasibleNodesToFind`` in
pkg/scheduler/schedule_one.go), and the next search starts where the last one stopped (round
robin over the nodes). A pod is placed on the best node of that window, not of the cluster: a
``PreferNoSchedule`` taint steers it only among the nodes searched. When every node of the window
is full, the pod gets a search over all nodes (kube-scheduler counts a full node as infeasible and
searches on), so a pod that fits somewhere is never reported Unschedulable. kube-scheduler
searches once per pod; the simulator, once per pod shape and pass (the pods of one pass share it).
"""

from __future__ import annotations

import heapq
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import (
    controller_uid,
    effective_taints,
    named_nodes,
    node_affinity_matches,
    pod_is_finished,
    pod_is_terminating,
    set_condition,
    untolerated_taints,
)
from migrator.sim.errors import NotFound
from migrator.sim.store import Event, Store, now_rfc3339
from migrator.sim.world import World

Obj = dict[str, Any]
PodKey = tuple[str, str]
log = structlog.get_logger("migrator.sim.scheduler")

SCHEDULER_NAME = "default-scheduler"


#: kube-scheduler's floors on its search (pkg/scheduler/schedule_one.go): ``minFeasibleNodesToFind``
#: and ``minFeasibleNodesPercentageToFind``.
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5


def feasible_nodes_to_find(total: int) -> int:
    """How many feasible nodes kube-scheduler looks for before it stops filtering, with
    ``percentageOfNodesToScore`` left at its default (adaptive): every node under 100 nodes, else
    50 % less one point per 125 nodes, at least 5 % and at least 100 nodes."""
    if total < MIN_FEASIBLE_NODES:
        return total
    percent = max(50 - total // 125, MIN_FEASIBLE_PERCENT)
    return max(total * percent // 100, MIN_FEASIBLE_NODES)


def node_capacity(node: Obj) -> int:
    status = node.get("status") or {}
    raw = (status.get("allocatable") or status.get("capacity") or {}).get("pods", "110")
    try:
        return int(raw)
    except ValueError:
        return 110


class _Nodes:
    """The nodes of one scheduling pass: listed whole only when a pod's affinity does not name
    its nodes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.total = store.count("nodes")
        self._all: list[Obj] | None = None

    def every(self) -> list[Obj]:
        if self._all is None:
            self._all = self.store.list("nodes")
            self.total = len(self._all)
        return self._all

    def named(self, names: frozenset[str]) -> list[Obj]:
        return [node for name in sorted(names) if (node := self.store.try_get("nodes", None, name)) is not None]


#: a search's feasible nodes (1 for an untolerated PreferNoSchedule taint), why the others are
#: not, and whether it stopped before every node was searched
Filtered = tuple[list[tuple[int, Obj]], Counter[str], bool]


class Scheduler:
    """Binds pods; keeps per-node pod counts from the event stream."""

    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._pending: set[PodKey] = set()
        self._placed: dict[PodKey, tuple[str, str]] = {}
        self._node_pods: Counter[str] = Counter()
        self._owner_pods: Counter[tuple[str, str]] = Counter()
        self._random = config.scheduler_scoring == "random"
        self._next_start = 0   # where the next search over every node begins (round robin)
        self._pass: Coalescer[str] = Coalescer(world, lambda _: self.schedule_pending(), delay=config.latencies.schedule)
        world.on("pods", self._on_pod)
        world.on("nodes", self._on_node)
        for pod in self.store.list("pods"):
            self._track(pod)
        if self._pending:
            self._pass.mark("pass")

    # ------------------------------------------------------------------ bookkeeping
    def _track(self, pod: Obj | None, key: PodKey | None = None) -> None:
        """Idempotently record where ``pod`` sits (``None``: it is gone)."""
        if pod is not None:
            key = (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        assert key is not None
        old = self._placed.pop(key, None)
        if old is not None:
            self._node_pods[old[0]] -= 1
            self._owner_pods[old] -= 1
        self._pending.discard(key)
        if pod is None or pod_is_finished(pod):
            return
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node:
            place = (node, controller_uid(pod) or "")
            self._placed[key] = place
            self._node_pods[node] += 1
            self._owner_pods[place] += 1
        elif not pod_is_terminating(pod) and spec.get("schedulerName", SCHEDULER_NAME) == SCHEDULER_NAME:
            self._pending.add(key)

    def _on_pod(self, event: Event) -> None:
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        self._track(None if event.type == "DELETED" else event.obj, key)
        if self._pending:  # a new pending pod, or room freed for one that waits
            self._pass.mark("pass")

    def _on_node(self, event: Event) -> None:
        if self._pending:
            self._pass.mark("pass")

    # ------------------------------------------------------------------ scheduling
    def schedule_pending(self) -> None:
        """One scheduling pass over every pending pod."""
        if not self._pending:
            return
        nodes = _Nodes(self.store)
        groups: dict[tuple[str, str], list[Obj]] = {}
        for key in sorted(self._pending):
            pod = self.store.try_get("pods", key[0], key[1])
            if pod is None or (pod.get("spec") or {}).get("nodeName"):
                self._track(pod, key)
                continue
            spec = pod.get("spec") or {}
            shape = json.dumps([spec.get("nodeSelector"), (spec.get("affinity") or {}).get("nodeAffinity"),
                                spec.get("tolerations")], sort_keys=True)
            groups.setdefault((shape, controller_uid(pod) or ""), []).append(pod)
        feasible_by_shape: dict[str, Filtered] = {}
        bound = 0
        for (shape, owner), pods in groups.items():
            if shape not in feasible_by_shape:
                feasible_by_shape[shape] = self._filter(pods[0], nodes)
            feasible, reasons, windowed = feasible_by_shape[shape]
            pick = self._placer(owner, feasible)
            for pod in pods:
                node_name = pick(pod)
                if node_name is None and windowed:   # no room in the window: search every node
                    feasible, reasons, windowed = feasible_by_shape[shape] = self._filter(pods[0], nodes, window=False)
                    pick = self._placer(owner, feasible)
                    node_name = pick(pod)
                if node_name is None:
                    self._mark_unschedulable(pod, nodes.total, reasons, len(feasible))
                    continue
                if self._bind(pod, node_name):
                    bound += 1
        if bound:
            log.debug("sim.scheduler.bound", pods=bound, pending=len(self._pending))

    def _placer(self, owner: str, feasible: list[tuple[int, Obj]]) -> Callable[[Obj], str | None]:
        """Where each next pod of ``owner`` goes among ``feasible`` (None: no room left there)."""
        capacity = {node["metadata"]["name"]: node_capacity(node) for _, node in feasible}
        if self._random:
            return lambda pod: self._pick_random(pod, feasible, capacity)
        heap = [self._rank(penalty, node["metadata"]["name"], owner) for penalty, node in feasible]
        heapq.heapify(heap)
        return lambda pod: self._pick(heap, capacity, owner)

    def _rank(self, penalty: int, name: str, owner: str) -> tuple[int, int, int, str]:
        return (penalty, self._owner_pods[(name, owner)], self._node_pods[name], name)

    def _pick(self, heap: list[tuple[int, int, int, str]], capacity: dict[str, int], owner: str) -> str | None:
        while heap:
            penalty, _, _, name = entry = heap[0]
            current = self._rank(penalty, name, owner)
            if self._node_pods[name] >= capacity[name]:
                heapq.heappop(heap)
                continue
            if current != entry:  # counts only grow within a pass: re-file and look again
                heapq.heapreplace(heap, current)
                continue
            return name
        return None

    def _pick_random(self, pod: Obj, feasible: list[tuple[int, Obj]], capacity: dict[str, int]) -> str | None:
        """A uniform pick drawn from the world's seed and the pod's name: the same pod lands on
        the same node whichever pass (and whatever batch) schedules it."""
        roomy = [(penalty, node["metadata"]["name"]) for penalty, node in feasible
                 if self._node_pods[node["metadata"]["name"]] < capacity[node["metadata"]["name"]]]
        if not roomy:
            return None
        best = min(penalty for penalty, _ in roomy)
        meta = pod["metadata"]
        draw = random.Random(f"{self.world.seed}:{meta.get('namespace')}/{meta['name']}")
        return draw.choice(sorted(name for penalty, name in roomy if penalty == best))

    def _filter(self, pod: Obj, nodes: _Nodes, *, window: bool = True) -> Filtered:
        """The feasible nodes for ``pod`` (with 1 for an untolerated ``PreferNoSchedule``), why
        the others are not, and whether the search stopped early (``window``: it may, over every
        node of a cluster of 100 or more)."""
        spec = pod.get("spec") or {}
        tolerations = spec.get("tolerations") or []
        feasible: list[tuple[int, Obj]] = []
        reasons: Counter[str] = Counter()
        named = named_nodes(spec)
        candidates = nodes.every() if named is None else nodes.named(named)
        if len(candidates) < nodes.total:   # kube-scheduler's status for the nodes a PreFilter left out
            reasons["didn't satisfy plugin(s) [NodeAffinity]"] += nodes.total - len(candidates)
        to_find = feasible_nodes_to_find(len(candidates)) if window and named is None else len(candidates)
        if to_find < len(candidates):
            start = self._next_start % len(candidates)
            candidates = candidates[start:] + candidates[:start]
        searched = 0
        for node in candidates:
            if len(feasible) >= to_find:
                break
            searched += 1
            if not node_affinity_matches(spec, node):
                reasons["didn't match Pod's node affinity/selector"] += 1
                continue
            taints = effective_taints(node)
            hard = untolerated_taints(tolerations, taints, ("NoSchedule", "NoExecute"))
            if hard:
                t = hard[0]
                reasons[f"had untolerated taint {{{t.get('key')}: {t.get('value', '')}}}"] += 1
                continue
            soft = untolerated_taints(tolerations, taints, ("PreferNoSchedule",))
            feasible.append((1 if soft else 0, node))
        windowed = searched < len(candidates)
        if windowed:
            self._next_start = (self._next_start + searched) % len(candidates)
        return feasible, reasons, windowed

    def _bind(self, pod: Obj, node_name: str) -> bool:
        meta = pod["metadata"]
        uid = meta["uid"]
        now = now_rfc3339()

        def bind(draft: Obj) -> Obj | None:
            if draft["metadata"]["uid"] != uid or draft["spec"].get("nodeName") \
                    or draft["metadata"].get("deletionTimestamp"):
                return draft
            draft["spec"]["nodeName"] = node_name
            return draft

        def scheduled(draft: Obj) -> Obj | None:
            status = draft.setdefault("status", {})
            conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            status["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                     "lastTransitionTime": now}] + conditions
            return draft

        try:
            updated = self.store.mutate("pods", meta.get("namespace"), meta["name"], bind)
            self._track(updated)
            if updated["spec"].get("nodeName") != node_name or updated["metadata"]["uid"] != uid:
                return False
            self.store.mutate("pods", meta.get("namespace"), meta["name"], scheduled, subresource="status")
        except NotFound:
            self._track(None, (meta.get("namespace", ""), meta["name"]))
            return False
        return True

    def _mark_unschedulable(self, pod: Obj, total: int, reasons: Counter[str], feasible: int) -> None:
        parts = [f"{n} node(s) {why}" for why, n in sorted(reasons.items())]
        if feasible:
            parts.append(f"{feasible} Too many pods")
        message = f"0/{total} nodes are available: " + ", ".join(parts) + "."
        meta = pod["metadata"]
        now = now_rfc3339()

        def mark(draft: Obj) -> Obj | None:
            if draft["spec"].get("nodeName"):
                return draft
            status = draft.setdefault("status", {})
            status.setdefault("phase", "Pending")
            status["conditions"] = set_condition(status.get("conditions") or [], "PodScheduled", "False",
                                                 "Unschedulable", message, now)
            return draft

        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("message") == message:
            return
        try:
            self.store.mutate("pods", meta.get("namespace"), meta["name"], mark, subresource="status")
        except NotFound:
            return
        log.info("sim.scheduler.unschedulable", pod=f"{meta.get('namespace')}/{meta['name']}", message=message)
