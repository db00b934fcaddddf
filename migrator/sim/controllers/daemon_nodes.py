"""What each node contributes to a DaemonSet's reconcile, kept between reconciles.

The DaemonSet controller reconciles over every node: where a daemon pod should run, which pods
to delete or create, and the status counts. A node's part is a function of the template, the
Node and the DaemonSet's pods bound to it, nothing else (``node_verdict``); store objects are
immutable snapshots named by their resourceVersion, so a verdict holds while those versions do.

``Tally`` keeps every node's verdict, the counts summed over them, the nodes whose verdict asks
for an action and the names of vanished nodes that still have pods. A reconcile then recomputes
only the nodes whose Node or pods changed since the last one (the controller learns which from
the store's events), and still repeats every pending action on each reconcile, as a full pass
does, so an action that did not take is tried again. A new version of the template (its
generation or hash), or a node added or removed, starts from a full pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migrator.sim.controllers.matching import (
    effective_taints,
    node_affinity_matches,
    pod_is_available,
    pod_is_finished,
    pod_is_terminating,
    untolerated_taints,
)

Obj = dict[str, Any]
COUNTS = ("misscheduled", "desired", "current", "available", "unavailable", "updated")


def node_should_run(template_spec: Obj, tolerations: list[Obj], node: Obj) -> tuple[bool, bool]:
    """``(should_run, should_continue_running)`` for a daemon pod on ``node``."""
    if not node_affinity_matches(template_spec, node):
        return False, False
    taints = effective_taints(node)
    if untolerated_taints(tolerations, taints, ("NoExecute",)):
        return False, False
    return not untolerated_taints(tolerations, taints, ("NoSchedule",)), True


@dataclass(frozen=True)
class NodeVerdict:
    """What one node contributes to a DaemonSet's reconcile: its pods to delete (in the order
    they go), whether a pod is to be created there, the status counts, and its out-of-date
    available pod (a rolling update's candidate)."""

    to_delete: tuple[Obj, ...] = ()
    create: bool = False
    misscheduled: bool = False
    desired: bool = False
    current: bool = False
    available: bool = False
    unavailable: bool = False
    updated: bool = False
    old_ready: Obj | None = None

    @property
    def acts(self) -> bool:
        return bool(self.to_delete) or self.create or self.old_ready is not None


def node_verdict(template_spec: Obj, tolerations: list[Obj], revision: str, node: Obj,
                 pods: list[Obj]) -> NodeVerdict:
    """The reconcile of one node for a DaemonSet, from the template (its spec, tolerations and
    revision hash), the Node and the DaemonSet's pods bound to it (sorted by name)."""
    should_run, should_continue = node_should_run(template_spec, tolerations, node)
    live = [p for p in pods if not pod_is_terminating(p)]
    to_delete = [p for p in live if pod_is_finished(p)]
    live = sorted((p for p in live if not pod_is_finished(p)),
                  key=lambda p: (p["metadata"]["creationTimestamp"], p["metadata"]["name"]))
    misscheduled = bool(live) and not should_run
    if not should_continue:
        return NodeVerdict(to_delete=tuple(to_delete + live), misscheduled=misscheduled)
    if not should_run and not live:
        return NodeVerdict(to_delete=tuple(to_delete), misscheduled=misscheduled)
    to_delete += live[1:]
    if not live:
        return NodeVerdict(to_delete=tuple(to_delete), misscheduled=misscheduled, desired=should_run,
                           create=should_run and len(pods) == len([p for p in pods if pod_is_finished(p)]),
                           unavailable=True)   # create: nothing left terminating on the node
    pod = live[0]
    is_available = pod_is_available(pod)
    updated = pod["metadata"].get("labels", {}).get("controller-revision-hash") == revision
    if not updated and not is_available:
        to_delete.append(pod)  # out of date and not serving: replace it right away
    return NodeVerdict(to_delete=tuple(to_delete), misscheduled=misscheduled, desired=should_run, current=True,
                       available=is_available, unavailable=not is_available, updated=updated,
                       old_ready=pod if not updated and is_available else None)


def _version(node: Obj, pods: list[Obj]) -> tuple[str, tuple[str, ...]]:
    return node["metadata"]["resourceVersion"], tuple(p["metadata"]["resourceVersion"] for p in pods)


@dataclass
class Tally:
    """One DaemonSet's verdicts per node between reconciles, for one version of its template
    (``shape``: uid, generation and template hash)."""

    shape: tuple[str, Any, str]
    template_spec: Obj
    tolerations: list[Obj]
    verdicts: dict[str, tuple[tuple[str, tuple[str, ...]], NodeVerdict]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    acting: set[str] = field(default_factory=set)     # nodes whose verdict asks for an action
    orphans: set[str] = field(default_factory=set)    # names of vanished nodes that had pods

    @property
    def revision(self) -> str:
        return self.shape[2]

    def full(self, nodes: list[Obj], by_node: dict[str, list[Obj]],
             previous: Tally | None = None) -> None:
        """Every node's verdict (``by_node``: the DaemonSet's pods per node name, in name order;
        the entries of existing nodes are taken out, vanished nodes' are left). Verdicts of the
        ``previous`` tally for the same template are reused where nothing changed."""
        reuse = previous.verdicts if previous is not None and previous.shape == self.shape else {}
        for node in nodes:
            name = node["metadata"]["name"]
            self._set(name, node, by_node.pop(name, []), reuse.get(name))
        self.orphans = set(by_node)

    def update(self, dirty: set[str], node_of: Callable[[str], Obj | None],
               pods_on: Callable[[str], list[Obj]]) -> None:
        """Recompute the ``dirty`` nodes (those whose Node or pods changed)."""
        for name in dirty:
            node = node_of(name)
            if node is None:   # not a node (any more): its pods, if any, are deleted
                if name in self.verdicts:
                    self._drop(name)
                (self.orphans.add if pods_on(name) else self.orphans.discard)(name)
                continue
            self.orphans.discard(name)
            self._set(name, node, pods_on(name), self.verdicts.get(name))

    def actions(self, pods_on: Callable[[str], list[Obj]]) -> tuple[list[Obj], list[str], list[Obj]]:
        """``(to_delete, to_create, old_ready)`` in node order, then the pods of vanished nodes
        (in the order of their names' first pod), as a full pass lists them."""
        to_delete: list[Obj] = []
        to_create: list[str] = []
        old_ready: list[Obj] = []
        for name in sorted(self.acting):
            verdict = self.verdicts[name][1]
            to_delete += verdict.to_delete
            if verdict.create:
                to_create.append(name)
            if verdict.old_ready is not None:
                old_ready.append(verdict.old_ready)
        stray: list[Obj] = []
        for name in sorted(self.orphans):
            pods = pods_on(name)
            if not pods:
                self.orphans.discard(name)
            stray += pods
        stray.sort(key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"]))
        groups: dict[str, list[Obj]] = {}
        for pod in stray:
            groups.setdefault(pod["spec"].get("nodeName") or "", []).append(pod)
        for pods in groups.values():
            to_delete += [p for p in pods if not pod_is_terminating(p)]
        return to_delete, to_create, old_ready

    def _set(self, name: str, node: Obj, pods: list[Obj],
             known: tuple[tuple[str, tuple[str, ...]], NodeVerdict] | None) -> None:
        version = _version(node, pods)
        if known is not None and known[0] == version:
            verdict = known[1]
        else:
            verdict = node_verdict(self.template_spec, self.tolerations, self.revision, node, pods)
        if name in self.verdicts:
            self._drop(name)
        self.verdicts[name] = (version, verdict)
        for count in COUNTS:
            self.counts[count] += getattr(verdict, count)
        if verdict.acts:
            self.acting.add(name)

    def _drop(self, name: str) -> None:
        _, verdict = self.verdicts.pop(name)
        for count in COUNTS:
            self.counts[count] -= getattr(verdict, count)
        self.acting.discard(name)
