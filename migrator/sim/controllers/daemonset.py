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
from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.daemon_nodes import Tally
from migrator.sim.controllers.history import DaemonSetHistory
from migrator.sim.controllers.matching import (
    DAEMON_TOLERATIONS,
    HOST_NETWORK_DAEMON_TOLERATION,
    controller_ref,
    controller_uid,
    owner_reference,
    template_hash,
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
        self._tallies: dict[tuple[str, str], Tally] = {}   # per DaemonSet: its nodes' verdicts
        self._dirty: dict[tuple[str, str], set[str]] = {}  # per DaemonSet: nodes changed since its reconcile
        self._stale: set[tuple[str, str]] = set()           # DaemonSets whose next reconcile is a full pass
        self._revisions: dict[str, tuple[int, str]] = {}     # per DaemonSet uid: its generation's template hash
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        world.on("apps/daemonsets", self._on_daemonset)
        world.on("pods", self._on_pod)
        world.on("nodes", self._on_node)

    def _on_daemonset(self, event: Event) -> None:
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        if event.type == "DELETED":
            self.history.forget(meta["uid"])
            self._revisions.pop(meta["uid"], None)
            self._tallies.pop(key, None)
            self._dirty.pop(key, None)
        self._sync.mark(key)   # its template's version is the tally's shape: a new one starts a full pass

    def _on_pod(self, event: Event) -> None:
        ns = event.obj["metadata"].get("namespace", "")
        for obj in (event.obj, event.old) if event.old is not None else (event.obj,):
            ref = controller_ref(obj)
            if ref and ref.get("kind") == "DaemonSet":   # the node of the pod's old and new version
                self._dirty.setdefault((ns, ref["name"]), set()).add(obj["spec"].get("nodeName") or "")
        ref = controller_ref(event.obj)
        if ref and ref.get("kind") == "DaemonSet":
            self._sync.mark((ns, ref["name"]))

    def _on_node(self, event: Event) -> None:
        if event.type == "MODIFIED" and event.old is not None and _scheduling_view(event.old) == \
                _scheduling_view(event.obj):
            return   # nothing a verdict reads changed
        for ds in self.store.list("apps/daemonsets"):
            key = (ds["metadata"]["namespace"], ds["metadata"]["name"])
            if event.type == "MODIFIED":
                self._dirty.setdefault(key, set()).add(event.obj["metadata"]["name"])
            else:   # a node came or went: the next reconcile is a full pass
                self._stale.add(key)
            self._sync.mark(key)

    # ------------------------------------------------------------------ reconcile
    def _revision(self, ds: Obj) -> str:
        """The hash of the DaemonSet's template, worked out once per generation: the API server
        moves ``metadata.generation`` on every change to its spec, the template's included."""
        meta = ds["metadata"]
        generation, kept = meta.get("generation"), self._revisions.get(meta["uid"])
        if kept is not None and kept[0] == generation:
            return kept[1]
        revision = template_hash(ds["spec"]["template"])
        if isinstance(generation, int):
            self._revisions[meta["uid"]] = (generation, revision)
        return revision

    def sync(self, key: tuple[str, str]) -> None:
        ds = self.store.try_get("apps/daemonsets", key[0], key[1])
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        uid = ds["metadata"]["uid"]
        template = ds["spec"]["template"]
        tspec = template.get("spec") or {}
        revision = self._revision(ds)
        shape = (uid, ds["metadata"].get("generation"), revision)
        tally = self._tallies.get(key)
        dirty = self._dirty.pop(key, set())
        ns = key[0]

        def pods_on(node: str) -> list[Obj]:
            if node:
                return [p for p in self.store.list("pods", ns, index=("nodeName", node)) if controller_uid(p) == uid]
            return [p for p in self.store.list("pods", ns, index=("controller-uid", uid)) if not p["spec"].get("nodeName")]

        if tally is None or tally.shape != shape or key in self._stale:
            self._stale.discard(key)
            by_node: dict[str, list[Obj]] = {}
            live_hashes: set[str] = set()
            for pod in self.store.list("pods", ns, index=("controller-uid", uid)):
                by_node.setdefault(pod["spec"].get("nodeName") or "", []).append(pod)
                live_hashes.add(pod["metadata"].get("labels", {}).get("controller-revision-hash", ""))
            self.history.record(ds, revision, live_hashes)
            fresh = Tally(shape, tspec, daemon_tolerations(tspec))
            fresh.full(self.store.list("nodes"), by_node, tally)
            self._tallies[key] = tally = fresh
        else:
            if not self.history.is_current(ds, revision):
                self.history.record(ds, revision, {
                    pod["metadata"].get("labels", {}).get("controller-revision-hash", "")
                    for pod in self.store.list("pods", ns, index=("controller-uid", uid))})
            tally.update(dirty, lambda name: self.store.try_get("nodes", None, name), pods_on)
        to_delete, to_create, old_ready = tally.actions(pods_on)
        counts = tally.counts
        desired, unavailable = counts["desired"], counts["unavailable"]

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
            "currentNumberScheduled": counts["current"],
            "numberReady": counts["available"],
            "numberAvailable": counts["available"],
            "numberUnavailable": max(0, desired - counts["available"]),
            "updatedNumberScheduled": counts["updated"],
            "numberMisscheduled": counts["misscheduled"],
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
