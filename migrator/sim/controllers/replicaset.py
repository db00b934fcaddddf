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

from collections import Counter
from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import (
    controller_ref,
    controller_uid,
    owner_reference,
    pod_is_active,
    pod_is_available,
    pod_is_ready,
)
from migrator.sim.controllers.podfactory import PodNames, create_named, delete_pod, pod_from_template
from migrator.sim.controllers.podfacts import Members
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
        self._members: dict[tuple[str, str], Members[tuple[bool, bool, bool]]] = {}   # labelled, ready, available
        world.on("apps/replicasets", self._on_replicaset)
        world.on("pods", self._on_pod)

    def _on_replicaset(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        namespace = event.obj["metadata"].get("namespace", "")
        owners = {ref["name"] for pod in (event.obj, event.old) if pod is not None
                  and (ref := controller_ref(pod)) is not None and ref.get("kind") == "ReplicaSet"}
        for name in owners:
            key = (namespace, name)
            members = self._members.get(key)
            if members is not None:
                members.see(event.rv, event.obj, event.type == "DELETED")
            self._sync.mark(key)

    def _active(self, key: tuple[str, str], rs: Obj) -> Members[tuple[bool, bool, bool]]:
        """The ReplicaSet's active pods (its controller's, not being deleted, not finished), each
        as (labelled, ready, available); listed again for a new version of the ReplicaSet."""
        uid = rs["metadata"]["uid"]
        version = (uid, rs["metadata"].get("generation"))
        members = self._members.get(key)
        if members is None or members.version != version:
            selector = rs["spec"].get("selector")

            def derive(pod: Obj) -> tuple[bool, bool, bool] | None:
                if controller_uid(pod) != uid or not pod_is_active(pod):
                    return None
                return label_selector_matches(selector, pod["metadata"].get("labels")), pod_is_ready(pod), \
                    pod_is_available(pod)

            with self.store.lock:
                listed_at = self.store.resource_version
                pods = self.store.list("pods", key[0], index=("controller-uid", uid))
            members = self._members[key] = Members(version, derive, pods, listed_at)
        return members

    def sync(self, key: tuple[str, str]) -> None:
        rs = self.store.try_get("apps/replicasets", key[0], key[1])
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            self._members.pop(key, None)
            return
        members = self._active(key, rs)
        counts = Counter(members.counts)   # with this reconcile's own creations and deletions
        wanted = int(rs["spec"].get("replicas", 1))
        if len(members) < wanted:
            owner = owner_reference(rs, api_version="apps/v1", kind="ReplicaSet")
            base = pod_from_template(rs["spec"]["template"], namespace=key[0], owner_ref=owner)
            selector = rs["spec"].get("selector")
            for _ in range(wanted - len(members)):  # the store copies each pod: one skeleton serves all
                pod = create_named(self.store, self.names, {**base, "metadata": dict(base["metadata"])},
                                   rs["metadata"]["name"])
                counts[label_selector_matches(selector, pod["metadata"].get("labels")), pod_is_ready(pod),
                       pod_is_available(pod)] += 1
            log.debug("sim.replicaset.scaled_up", rs=f"{key[0]}/{key[1]}", replicas=wanted)
        elif len(members) > wanted:
            for pod in sorted(members.pods(), key=_deletion_rank)[: len(members) - wanted]:
                delete_pod(self.store, pod)
                named = members.named(pod["metadata"]["name"])
                if named is not None:
                    counts[named[1]] -= 1
        status = {
            "replicas": sum(counts.values()),
            "fullyLabeledReplicas": sum(n for (labelled, _, _), n in counts.items() if labelled),
            "readyReplicas": sum(n for (_, ready, _), n in counts.items() if ready),
            "availableReplicas": sum(n for (_, _, available), n in counts.items() if available),
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
