"""The simulated disruption controller: PodDisruptionBudget status from the pods.

The eviction subresource (in the API layer) spends a budget: it decrements
``status.disruptionsAllowed`` and records ``status.disruptedPods[pod] = time``. This
controller recomputes the whole status from the pods that match the selector:

* ``currentHealthy``: pods whose Ready condition is True, that are not being deleted and
  not listed in ``disruptedPods`` (an entry counts until its pod is gone or deleting, or
  until it is two minutes old: the real ``DeletionTimeout``);
* ``expectedPods``: the scale of the pods' controllers (a Deployment's replicas for its
  ReplicaSets, a DaemonSet's desired count, a ReplicaSet's or StatefulSet's replicas), or
  the number of matching pods when an integer ``minAvailable`` is used or a pod has no
  resolvable controller;
* ``desiredHealthy`` from ``minAvailable`` or ``maxUnavailable``, integers or
  percentages of ``expectedPods`` (rounded up, as the real controller does);
* ``disruptionsAllowed = max(0, currentHealthy - desiredHealthy)``, the
  ``DisruptionAllowed`` condition and ``observedGeneration``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import (
    controller_ref,
    pod_is_ready,
    pod_is_terminating,
    set_condition,
)
from migrator.sim.controllers.podfacts import Members
from migrator.sim.errors import BadRequest, NotFound
from migrator.sim.selectors import label_selector_matches, label_selector_requirements, selects_or_not
from migrator.sim.store import Event, now_rfc3339
from migrator.sim.world import World

Obj = dict[str, Any]
Ref = tuple[str | None, str | None, str]   # a controller's kind, name and uid
RESOURCE = "policy/poddisruptionbudgets"
DELETION_TIMEOUT = 120.0  # simulated seconds an eviction keeps a pod counted as disrupted


def _scaled_up(value: Any, total: int) -> int:
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def _parse_time(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (TypeError, ValueError):
        return None


class DisruptionController:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        self._members: dict[tuple[str, str], Members[tuple[bool, Ref | None]]] = {}   # healthy, controller
        world.on(RESOURCE, self._on_pdb)
        world.on("pods", self._on_pod)
        for scaler in ("apps/deployments", "apps/replicasets", "apps/daemonsets", "apps/statefulsets"):
            world.on(scaler, self._on_scaler)

    def _on_pdb(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        ns = event.obj["metadata"].get("namespace", "")
        labels = [event.obj["metadata"].get("labels")]
        if event.old is not None:
            labels.append(event.old["metadata"].get("labels"))
        for pdb in self.store.list(RESOURCE, ns):
            if any(selects_or_not(pdb["spec"].get("selector") or {}, lbl) for lbl in labels):
                key = (ns, pdb["metadata"]["name"])
                members = self._members.get(key)
                if members is not None:
                    try:
                        members.see(event.rv, event.obj, event.type == "DELETED")
                    except BadRequest:   # a selector it refuses: the reconcile says so
                        del self._members[key]
                self._sync.mark(key)

    def _on_scaler(self, event: Event) -> None:
        ns = event.obj["metadata"].get("namespace", "")
        if event.old is not None and (event.old.get("spec") or {}).get("replicas") == \
                (event.obj.get("spec") or {}).get("replicas") and event.resource != "apps/daemonsets":
            return
        for pdb in self.store.list(RESOURCE, ns):
            self._sync.mark((ns, pdb["metadata"]["name"]))

    # ------------------------------------------------------------------ reconcile
    def sync(self, key: tuple[str, str]) -> None:
        pdb = self.store.try_get(RESOURCE, key[0], key[1])
        if pdb is None:
            self._members.pop(key, None)
            return
        spec = pdb.get("spec") or {}
        members = self._selected(key, pdb)
        disrupted, next_expiry = self._live_disruptions(pdb, members)
        healthy = sum(n for (ready, _), n in members.counts.items() if ready) - sum(
            1 for name in disrupted if (named := members.named(name)) is not None and named[1][0])
        min_available = spec.get("minAvailable")
        max_unavailable = spec.get("maxUnavailable")
        if max_unavailable is not None:
            expected = self._expected(key[0], members)
            desired = max(0, expected - _scaled_up(max_unavailable, expected))
        elif isinstance(min_available, str) and min_available.endswith("%"):
            expected = self._expected(key[0], members)
            desired = _scaled_up(min_available, expected)
        else:
            expected = len(members)
            desired = int(min_available) if min_available is not None else 0
        allowed = max(0, healthy - desired)
        now = now_rfc3339()
        conditions = set_condition(list((pdb.get("status") or {}).get("conditions") or []),
                                   "DisruptionAllowed", "True" if allowed > 0 else "False",
                                   "SufficientPods" if allowed > 0 else "InsufficientPods", "", now)
        for c in conditions:
            c["observedGeneration"] = pdb["metadata"].get("generation", 1)
        status: Obj = {"observedGeneration": pdb["metadata"].get("generation", 1),
                       "disruptionsAllowed": allowed, "currentHealthy": healthy,
                       "desiredHealthy": desired, "expectedPods": expected, "conditions": conditions}
        if disrupted:
            status["disruptedPods"] = disrupted
        if next_expiry is not None:
            self.world.call_later(next_expiry, lambda: self._sync.mark(key))
        current = pdb.get("status") or {}
        same = all(current.get(k) == v for k, v in status.items() if k != "conditions") and \
            current.get("disruptedPods", {}) == disrupted and \
            [(c.get("type"), c.get("status")) for c in current.get("conditions") or []] == \
            [(c["type"], c["status"]) for c in conditions]
        if same:
            return

        def write(draft: Obj) -> Obj:
            draft["status"] = status
            return draft

        try:
            self.store.mutate(RESOURCE, key[0], key[1], write, subresource="status")
        except NotFound:
            return

    def _selected(self, key: tuple[str, str], pdb: Obj) -> Members[tuple[bool, Ref | None]]:
        """The pods the budget selects, each as (healthy: Ready and not being deleted, its
        controller); listed again for a new version of the budget, through the store's label
        index when the selector has ``matchLabels``. A selector it refuses raises when a pod is
        tested against it, as before (policy/v1: a null selector selects no pod, ``{}`` every pod
        of the namespace)."""
        version = (pdb["metadata"]["uid"], pdb["metadata"].get("generation"))
        members = self._members.get(key)
        if members is not None and members.version == version:
            return members
        selector = (pdb.get("spec") or {}).get("selector")

        def derive(pod: Obj) -> tuple[bool, Ref | None] | None:
            if not label_selector_matches(selector, pod["metadata"].get("labels")):
                return None
            ref = controller_ref(pod)
            return pod_is_ready(pod) and not pod_is_terminating(pod), \
                (ref.get("kind"), ref.get("name"), ref.get("uid", "")) if ref is not None else None

        try:
            label_selector_requirements(selector or {})
            narrowed = (selector or {}).get("matchLabels") or None
        except BadRequest:
            narrowed = None
        with self.store.lock:
            listed_at = self.store.resource_version
            pods = [] if selector is None else self.store.list("pods", key[0], labels=narrowed)
        members = self._members[key] = Members(version, derive, pods, listed_at)
        return members

    def _live_disruptions(self, pdb: Obj, members: Members[tuple[bool, Ref | None]],
                          ) -> tuple[dict[str, str], float | None]:
        """The ``disruptedPods`` entries still in force, and when the next one expires."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        if not recorded:
            return {}, None
        wall_now = datetime.now(UTC).timestamp()
        live: dict[str, str] = {}
        next_expiry: float | None = None
        for name, stamp in recorded.items():
            named = members.named(name)
            if named is None or pod_is_terminating(named[0]):
                continue
            when = _parse_time(stamp)
            if when is None:
                continue
            age = (wall_now - when) * self.world.time_scale  # simulated seconds
            if age >= DELETION_TIMEOUT:
                continue
            live[name] = stamp
            left = DELETION_TIMEOUT - age
            next_expiry = left if next_expiry is None else min(next_expiry, left)
        return live, next_expiry

    def _expected(self, namespace: str, members: Members[tuple[bool, Ref | None]]) -> int:
        """The scale of the selected pods' controllers, or the number of pods when one of them
        has none, or one that cannot be resolved."""
        refs = {ref for _, ref in members.counts}
        if None in refs:
            return len(members)
        total = 0
        seen: set[str] = set()
        for kind, name, uid in sorted((r for r in refs if r is not None), key=lambda r: tuple(x or "" for x in r)):
            if uid in seen:
                continue
            seen.add(uid)
            scale = self._scale_of(namespace, {"kind": kind, "name": name, "uid": uid}, seen)
            if scale is None:
                return len(members)
            total += scale
        return total

    def _scale_of(self, ns: str, ref: Obj, seen: set[str]) -> int | None:
        kind = ref.get("kind")
        if kind == "ReplicaSet":
            rs = self.store.try_get("apps/replicasets", ns, ref["name"])
            if rs is None:
                return None
            parent = controller_ref(rs)
            if parent and parent.get("kind") == "Deployment":
                if parent["uid"] in seen:
                    return 0
                seen.add(parent["uid"])
                deploy = self.store.try_get("apps/deployments", ns, parent["name"])
                return int(deploy["spec"].get("replicas", 1)) if deploy else None
            return int(rs["spec"].get("replicas", 1))
        if kind == "DaemonSet":
            ds = self.store.try_get("apps/daemonsets", ns, ref["name"])
            return int((ds.get("status") or {}).get("desiredNumberScheduled", 0)) if ds else None
        if kind == "StatefulSet":
            try:
                sts = self.store.try_get("apps/statefulsets", ns, ref["name"])
            except NotFound:
                return None
            return int(sts["spec"].get("replicas", 1)) if sts else None
        return None
