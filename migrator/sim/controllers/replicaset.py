"""The simulated ReplicaSet controller: keeps ``spec.replicas`` active pods.

A pod that is evicted, deleted or finished stops counting at once (a terminating pod is
not active), so its replacement is created straight away and the scheduler places it on
another node: exactly what a drain relies on. Surplus pods are deleted least valuable
first, as the real controller ranks them: unscheduled before scheduled, pending before
running, not ready before ready, then the newest.

Status: ``replicas``, ``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas``
and ``observedGeneration``; the Deployment controller builds its own status from them.
"""

from __future__ import annotations

from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import (
    controller_ref,
    owner_reference,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
)
from migrator.sim.controllers.podfactory import PodNames, create_named, delete_pod, pod_from_template
from migrator.sim.controllers.podfacts import PodFacts
from migrator.sim.errors import NotFound
from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.replicaset")


def _deletion_rank(pod: Obj) -> tuple[int, int, int, str, str]:
    status = pod.get("status") or {}
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(status.get("phase", "Pending"), 0)
    return (1 if pod["spec"].get("nodeName") else 0, phase_rank, 1 if pod_is_ready(pod) else 0,
            _negate(pod["metadata"].get("creationTimestamp", "")), pod["metadata"]["name"])


def _negate(timestamp: str) -> str:
    """Sort newer timestamps first inside an ascending sort."""
    return "".join(chr(0x10FFFF - ord(ch)) if ch.isdigit() else ch for ch in timestamp)


class ReplicaSetController:
    def __init__(self, world: World, config: SimConfig, *, names: PodNames) -> None:
        self.world = world
        self.store = world.store
        self.names = names
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        self._facts: PodFacts[tuple[bool, bool, bool]] = PodFacts()   # labelled, ready, available
        world.on("apps/replicasets", self._on_replicaset)
        world.on("pods", self._on_pod)

    def _on_replicaset(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        ref = controller_ref(event.obj)
        if ref and ref.get("kind") == "ReplicaSet":
            self._sync.mark((event.obj["metadata"].get("namespace", ""), ref["name"]))

    def sync(self, key: tuple[str, str]) -> None:
        rs = self.store.try_get("apps/replicasets", key[0], key[1])
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            self._facts.forget(key)
            return
        pods = self.store.list("pods", key[0], index=("controller-uid", rs["metadata"]["uid"]))
        active = [p for p in pods if pod_is_active(p)]
        wanted = int(rs["spec"].get("replicas", 1))
        if len(active) < wanted:
            owner = owner_reference(rs, api_version="apps/v1", kind="ReplicaSet")
            base = pod_from_template(rs["spec"]["template"], namespace=key[0], owner_ref=owner)
            for _ in range(wanted - len(active)):  # the store copies each pod: one skeleton serves all
                pod = {**base, "metadata": dict(base["metadata"])}
                active.append(create_named(self.store, self.names, pod, rs["metadata"]["name"]))
            log.debug("sim.replicaset.scaled_up", rs=f"{key[0]}/{key[1]}", replicas=wanted)
        elif len(active) > wanted:
            surplus = sorted(active, key=_deletion_rank)[: len(active) - wanted]
            for pod in surplus:
                delete_pod(self.store, pod)
            gone = {p["metadata"]["uid"] for p in surplus}
            active = [p for p in active if p["metadata"]["uid"] not in gone]
        selector = rs["spec"].get("selector")
        facts = self._facts.of(key, (rs["metadata"]["uid"], rs["metadata"].get("generation")), active, lambda p: (
            label_selector_matches(selector, p["metadata"].get("labels")), pod_is_ready(p), pod_is_available(p)))
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(labelled for labelled, _, _ in facts),
            "readyReplicas": sum(ready for _, ready, _ in facts),
            "availableReplicas": sum(available for _, _, available in facts),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if all((rs.get("status") or {}).get(k) == v for k, v in status.items()):
            return

        def write(draft: Obj) -> Obj:
            draft["status"] = {**(draft.get("status") or {}), **status}
            return draft

        try:
            self.store.mutate("apps/replicasets", key[0], key[1], write, subresource="status")
        except NotFound:
            return
