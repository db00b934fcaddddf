"""The simulated Deployment controller: one ReplicaSet per template, rolled by strategy.

Each pod template gets its own ReplicaSet named ``<deployment>-<pod-template-hash>``,
with the hash as a label on the ReplicaSet, its selector and its pods. When the template
changes (``kubectl set image``, ``kubectl rollout restart``), ``RollingUpdate`` scales the
new ReplicaSet up within ``maxSurge`` and the old ones down while at least
``replicas - maxUnavailable`` pods stay available (defaults 25 % / 25 %); ``Recreate``
empties the old ReplicaSets first. The ``deployment.kubernetes.io/revision`` annotation
counts templates.

Status (``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
``unavailableReplicas``, ``observedGeneration`` and the ``Available``/``Progressing``
conditions) is what ``kubectl rollout status deploy/NAME`` reads.
"""

from __future__ import annotations

import copy
from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.daemonset import scaled
from migrator.sim.controllers.matching import controller_ref, owner_reference, set_condition, template_hash
from migrator.sim.errors import AlreadyExists, NotFound
from migrator.sim.store import Event, now_rfc3339
from migrator.sim.world import World

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.deployment")
REVISION = "deployment.kubernetes.io/revision"


class DeploymentController:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        world.on("apps/deployments", self._on_deployment)
        world.on("apps/replicasets", self._on_replicaset)

    def _on_deployment(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_replicaset(self, event: Event) -> None:
        ref = controller_ref(event.obj)
        if ref and ref.get("kind") == "Deployment":
            self._sync.mark((event.obj["metadata"].get("namespace", ""), ref["name"]))

    # ------------------------------------------------------------------ reconcile
    def sync(self, key: tuple[str, str]) -> None:
        deploy = self.store.try_get("apps/deployments", key[0], key[1])
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return
        uid = deploy["metadata"]["uid"]
        owned = [rs for rs in self.store.list("apps/replicasets", key[0])
                 if (controller_ref(rs) or {}).get("uid") == uid]
        spec = deploy["spec"]
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec["template"])
        new_rs = next((rs for rs in owned
                       if rs["metadata"].get("labels", {}).get("pod-template-hash") == pod_hash), None)
        old = [rs for rs in owned if rs is not new_rs]
        if spec.get("paused"):
            self._write_status(deploy, new_rs, owned)
            return
        if new_rs is None:
            new_rs = self._create_replicaset(deploy, pod_hash, owned, replicas=0 if old else replicas)
            owned.append(new_rs)
        strategy = spec.get("strategy") or {}
        if strategy.get("type", "RollingUpdate") == "Recreate":
            self._recreate(new_rs, old, replicas)
        else:
            rolling = strategy.get("rollingUpdate") or {}
            surge = scaled(rolling.get("maxSurge"), replicas, round_up=True, default=max(1, -(-replicas // 4)))
            unavailable = scaled(rolling.get("maxUnavailable"), replicas, round_up=False, default=replicas // 4)
            if surge == 0 and unavailable == 0:
                unavailable = 1
            self._roll(new_rs, old, replicas, surge, unavailable)
        self._write_status(deploy, new_rs, [self.store.try_get("apps/replicasets", key[0], rs["metadata"]["name"])
                                            or rs for rs in owned])

    def _roll(self, new_rs: Obj, old: list[Obj], replicas: int, surge: int, unavailable: int) -> None:
        total_spec = sum(_spec_replicas(rs) for rs in [new_rs, *old])
        new_spec = _spec_replicas(new_rs)
        if not old:
            if new_spec != replicas:
                self._scale(new_rs, replicas)
            return
        if new_spec < replicas:
            room = replicas + surge - total_spec
            if room > 0:
                self._scale(new_rs, min(replicas, new_spec + room))
        if new_spec > replicas:
            self._scale(new_rs, replicas)
        available = sum(_available(rs) for rs in [new_rs, *old])
        can_remove = available - (replicas - unavailable)
        for rs in sorted(old, key=lambda r: r["metadata"]["creationTimestamp"]):
            current = _spec_replicas(rs)
            if current == 0:
                continue
            unhealthy = max(0, current - _available(rs))
            take = min(current, unhealthy + max(0, can_remove))
            if take <= 0:
                continue
            can_remove -= max(0, take - unhealthy)
            self._scale(rs, current - take)

    def _recreate(self, new_rs: Obj, old: list[Obj], replicas: int) -> None:
        running_old = 0
        for rs in old:
            if _spec_replicas(rs):
                self._scale(rs, 0)
            running_old += int((rs.get("status") or {}).get("replicas", 0))
        if running_old == 0 and _spec_replicas(new_rs) != replicas:
            self._scale(new_rs, replicas)

    def _create_replicaset(self, deploy: Obj, pod_hash: str, owned: list[Obj], *, replicas: int) -> Obj:
        meta = deploy["metadata"]
        template = copy.deepcopy(deploy["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy(deploy["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        revision = 1 + max((int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned),
                           default=0)
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision),
                                "deployment.kubernetes.io/desired-replicas": str(deploy["spec"].get("replicas", 1))},
                "ownerReferences": [owner_reference(deploy, api_version="apps/v1", kind="Deployment")],
            },
            "spec": {"replicas": replicas, "selector": selector, "template": template,
                     "minReadySeconds": deploy["spec"].get("minReadySeconds", 0)},
        }
        try:
            created = self.store.create("apps/replicasets", rs)
        except AlreadyExists:
            created = self.store.get("apps/replicasets", meta["namespace"], rs["metadata"]["name"])

        def annotate(draft: Obj) -> Obj:
            draft["metadata"].setdefault("annotations", {})[REVISION] = str(revision)
            return draft

        # through status, as the deployment controller does: a new generation would be a spec change
        self.store.mutate("apps/deployments", meta["namespace"], meta["name"], annotate, subresource="status")
        log.info("sim.deployment.replicaset_created", deployment=f"{meta['namespace']}/{meta['name']}",
                 replicaset=created["metadata"]["name"], revision=revision)
        return created

    def _scale(self, rs: Obj, replicas: int) -> None:
        def scale(draft: Obj) -> Obj:
            draft["spec"]["replicas"] = replicas
            return draft

        try:
            self.store.mutate("apps/replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"], scale)
        except NotFound:
            return

    def _write_status(self, deploy: Obj, new_rs: Obj | None, owned: list[Obj]) -> None:
        spec = deploy["spec"]
        replicas = int(spec.get("replicas", 1))
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
        available = sum(_available(rs) for rs in owned)
        updated = int(((new_rs or {}).get("status") or {}).get("replicas", 0)) if new_rs else 0
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = scaled(rolling.get("maxUnavailable"), replicas, round_up=False, default=replicas // 4)
        now = now_rfc3339()
        conditions = list((deploy.get("status") or {}).get("conditions") or [])
        if available >= replicas - max_unavailable:
            conditions = set_condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                       "Deployment has minimum availability.", now, probe_times=True)
        else:
            conditions = set_condition(conditions, "Available", "False", "MinimumReplicasUnavailable",
                                       "Deployment does not have minimum availability.", now, probe_times=True)
        rs_name = (new_rs or {}).get("metadata", {}).get("name", "")
        complete = updated == replicas and total == replicas and available >= replicas
        if complete:
            conditions = set_condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                                       f'ReplicaSet "{rs_name}" has successfully progressed.', now,
                                       probe_times=True)
        else:
            conditions = set_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                                       f'ReplicaSet "{rs_name}" is progressing.', now, probe_times=True)
        status: Obj = {"observedGeneration": deploy["metadata"].get("generation", 1), "replicas": total,
                       "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                       "unavailableReplicas": max(0, replicas - available)}
        current = deploy.get("status") or {}
        same_conditions = [(c["type"], c["status"], c["reason"]) for c in current.get("conditions") or []] == \
            [(c["type"], c["status"], c["reason"]) for c in conditions]
        if same_conditions and all(current.get(k) == v for k, v in status.items()):
            return
        status["conditions"] = conditions

        def write(draft: Obj) -> Obj:
            draft["status"] = {**(draft.get("status") or {}), **status}
            return draft

        try:
            self.store.mutate("apps/deployments", deploy["metadata"]["namespace"], deploy["metadata"]["name"],
                              write, subresource="status")
        except NotFound:
            return


def _spec_replicas(rs: Obj) -> int:
    return int(rs["spec"].get("replicas", 1))


def _available(rs: Obj) -> int:
    return int((rs.get("status") or {}).get("availableReplicas", 0))
