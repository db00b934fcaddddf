"""The simulated DaemonSet controller: one pod per eligible node, rolled on template change.

A node is eligible when the template's ``nodeSelector`` and required node affinity match
and every ``NoSchedule``/``NoExecute`` taint is tolerated, counting the tolerations the
real controller adds to every daemon pod (not-ready, unreachable, unschedulable, the
pressure taints, and network-unavailable for host-network pods). Cordoned and NotReady
nodes therefore still get their CNI agents, as on a real cluster.

Every template the DaemonSet has had is kept as a ControllerRevision (``history``), the
``<name>-<hash>`` whose hash its pods carry. Pods are created bound (``spec.nodeName``, plus the ``metadata.name`` node-affinity term
the real controller writes), owned by the DaemonSet and labelled with
``controller-revision-hash`` (a hash of the template) and ``pod-template-generation``.
A deleted pod is recreated once the old one is gone, never alongside it, so a node never
runs two agents. With ``RollingUpdate`` the controller deletes out-of-date pods while at
most ``maxUnavailable`` nodes lack an available pod; ``kubectl rollout restart`` (an
annotation on the template) is a template change like any other.

Status carries every field ``kubectl rollout status ds/NAME`` reads.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.history import DaemonSetHistory
from migrator.sim.controllers.matching import (
    DAEMON_TOLERATIONS,
    HOST_NETWORK_DAEMON_TOLERATION,
    controller_ref,
    effective_taints,
    node_affinity_matches,
    owner_reference,
    pod_is_available,
    pod_is_finished,
    pod_is_terminating,
    template_hash,
    untolerated_taints,
)
from migrator.sim.controllers.podfactory import PodNames, create_named, delete_pod, pod_from_template
from migrator.sim.errors import NotFound
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.daemonset")


def daemon_tolerations(template_spec: Obj) -> list[Obj]:
    tolerations = list(template_spec.get("tolerations") or [])
    extra = list(DAEMON_TOLERATIONS)
    if template_spec.get("hostNetwork"):
        extra.append(HOST_NETWORK_DAEMON_TOLERATION)
    for tol in extra:
        if tol not in tolerations:
            tolerations.append(dict(tol))
    return tolerations


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


def node_verdict(template_spec: Obj, tolerations: list[Obj], revision: str, node: Obj,
                 pods: list[Obj]) -> NodeVerdict:
    """The reconcile of one node for a DaemonSet: a function of the template (its spec,
    tolerations and revision hash), the Node and the DaemonSet's pods bound to it, nothing else,
    so the controller reuses it while none of them changed (store objects are immutable
    snapshots: a resourceVersion names one content)."""
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


def scaled(value: Any, total: int, *, round_up: bool, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


class DaemonSetController:
    def __init__(self, world: World, config: SimConfig, *, names: PodNames) -> None:
        self.world = world
        self.store = world.store
        self.names = names
        self.history = DaemonSetHistory(self.store)
        #: per DaemonSet uid, per node: the inputs' versions and the node's last verdict
        self._seen: dict[str, dict[str, tuple[tuple[Any, ...], NodeVerdict]]] = {}
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        world.on("apps/daemonsets", self._on_daemonset)
        world.on("pods", self._on_pod)
        world.on("nodes", self._on_node)

    def _on_daemonset(self, event: Event) -> None:
        meta = event.obj["metadata"]
        if event.type == "DELETED":
            self.history.forget(meta["uid"])
            self._seen.pop(meta["uid"], None)
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        ref = controller_ref(event.obj)
        if ref and ref.get("kind") == "DaemonSet":
            self._sync.mark((event.obj["metadata"].get("namespace", ""), ref["name"]))

    def _on_node(self, event: Event) -> None:
        if event.type == "MODIFIED" and event.old is not None and _scheduling_view(event.old) == \
                _scheduling_view(event.obj):
            return
        for ds in self.store.list("apps/daemonsets"):
            self._sync.mark((ds["metadata"]["namespace"], ds["metadata"]["name"]))

    # ------------------------------------------------------------------ reconcile
    def sync(self, key: tuple[str, str]) -> None:
        ds = self.store.try_get("apps/daemonsets", key[0], key[1])
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        uid = ds["metadata"]["uid"]
        template = ds["spec"]["template"]
        tspec = template.get("spec") or {}
        tolerations = daemon_tolerations(tspec)
        revision = template_hash(template)
        nodes = self.store.list("nodes")
        by_node: dict[str, list[Obj]] = {}
        live_hashes: set[str] = set()
        for pod in self.store.list("pods", key[0], index=("controller-uid", uid)):
            by_node.setdefault(pod["spec"].get("nodeName") or "", []).append(pod)
            live_hashes.add(pod["metadata"].get("labels", {}).get("controller-revision-hash", ""))
        self.history.record(ds, revision, live_hashes)

        desired = current = ready = available = updated = misscheduled = 0
        to_create: list[str] = []
        to_delete: list[Obj] = []
        old_ready: list[Obj] = []
        unavailable = 0
        generation = ds["metadata"].get("generation")   # the template's version, with its hash
        seen = self._seen.get(uid, {})
        self._seen[uid] = memo = {}
        for node in nodes:
            name = node["metadata"]["name"]
            pods = by_node.pop(name, [])
            version = (generation, revision, node["metadata"]["resourceVersion"],
                       tuple(p["metadata"]["resourceVersion"] for p in pods))
            known = seen.get(name)
            verdict = known[1] if known is not None and known[0] == version else \
                node_verdict(tspec, tolerations, revision, node, pods)
            memo[name] = (version, verdict)
            misscheduled += verdict.misscheduled
            desired += verdict.desired
            to_delete += verdict.to_delete
            if verdict.create:
                to_create.append(name)
            unavailable += verdict.unavailable
            current += verdict.current
            ready += verdict.available
            available += verdict.available
            updated += verdict.updated
            if verdict.old_ready is not None:
                old_ready.append(verdict.old_ready)
        for pods in by_node.values():  # pods bound to nodes that no longer exist
            to_delete += [p for p in pods if not pod_is_terminating(p)]

        strategy = ds["spec"].get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            max_unavailable = scaled((strategy.get("rollingUpdate") or {}).get("maxUnavailable"),
                                     desired, round_up=False, default=1) or 1
            budget = max(0, max_unavailable - unavailable)
            to_delete += old_ready[:budget]

        for pod in to_delete:
            self._delete_pod(pod)
        if to_create:
            self._create_pods(ds, to_create, revision)
        self._write_status(ds, {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": current,
            "numberReady": ready,
            "numberAvailable": available,
            "numberUnavailable": max(0, desired - available),
            "updatedNumberScheduled": updated,
            "numberMisscheduled": misscheduled,
            "observedGeneration": ds["metadata"].get("generation", 1),
        })

    def _create_pods(self, ds: Obj, node_names: list[str], revision: str) -> None:
        """Create the daemon pods for ``node_names`` from one defaulted skeleton (the store
        copies each pod on create, so the skeleton is shared safely)."""
        template = copy.deepcopy(ds["spec"]["template"])
        spec = template.setdefault("spec", {})
        spec["tolerations"] = daemon_tolerations(spec)
        labels = {"controller-revision-hash": revision,
                  "pod-template-generation": str(ds["metadata"].get("generation", 1))}
        base = pod_from_template(template, namespace=ds["metadata"]["namespace"], labels=labels,
                                 owner_ref=owner_reference(ds, api_version="apps/v1", kind="DaemonSet"))
        base["status"]["conditions"] = [{"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                         "lastTransitionTime": ds["metadata"]["creationTimestamp"]}]
        for node_name in node_names:
            affinity = {**(spec.get("affinity") or {}), "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}]}}}
            pod = {**base, "metadata": dict(base["metadata"]),
                   "spec": {**base["spec"], "nodeName": node_name, "affinity": affinity}}
            create_named(self.store, self.names, pod, ds["metadata"]["name"])

    def _delete_pod(self, pod: Obj) -> None:
        delete_pod(self.store, pod)

    def _write_status(self, ds: Obj, status: Obj) -> None:
        if all((ds.get("status") or {}).get(k) == v for k, v in status.items()):
            return

        def write(draft: Obj) -> Obj:
            draft["status"] = {**(draft.get("status") or {}), **status}
            return draft

        try:
            self.store.mutate("apps/daemonsets", ds["metadata"]["namespace"], ds["metadata"]["name"], write,
                              subresource="status")
        except NotFound:
            return


def _scheduling_view(node: Obj) -> tuple[Any, ...]:
    """What about a node can change where daemon pods run (heartbeats do not)."""
    spec = node.get("spec") or {}
    return (node["metadata"].get("labels"), spec.get("taints"), spec.get("unschedulable"),
            [c.get("status") for c in (node.get("status") or {}).get("conditions") or []
             if c.get("type") == "Ready"])
