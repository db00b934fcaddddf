"""The simulated Job controller: pods until enough succeed, then ``Complete``.

Pods run to completion only where the kubelet makes them (the node runtime finishes pods
that carry the node-action annotation; the Job controller never decides an outcome).
The controller keeps ``parallelism`` pods running until ``completions`` have succeeded,
replaces failed pods until ``backoffLimit`` is exceeded, and writes ``active``,
``ready``, ``succeeded``, ``failed``, ``startTime``, ``completionTime`` and the
``SuccessCriteriaMet``/``Complete`` or ``FailureTarget``/``Failed`` conditions, in that
order, as Kubernetes 1.31+ does. ``ttlSecondsAfterFinished`` deletes a finished Job (its
pods go through garbage collection). Counts never go down when finished pods are
removed, which is what the real controller's pod-tracking finalizers guarantee.
"""

from __future__ import annotations

from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import (
    controller_ref,
    owner_reference,
    pod_is_ready,
    pod_is_terminating,
)
from migrator.sim.controllers.podfactory import PodNames, create_named, delete_pod, pod_from_template
from migrator.sim.errors import NotFound
from migrator.sim.store import Event, now_rfc3339
from migrator.sim.world import World

Obj = dict[str, Any]
RESOURCE = "batch/jobs"
log = structlog.get_logger("migrator.sim.job")


def _finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


class JobController:
    def __init__(self, world: World, config: SimConfig, *, names: PodNames) -> None:
        self.world = world
        self.store = world.store
        self.names = names
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        world.on(RESOURCE, self._on_job)
        world.on("pods", self._on_pod)

    def _on_job(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        ref = controller_ref(event.obj)
        if ref and ref.get("kind") == "Job":
            self._sync.mark((event.obj["metadata"].get("namespace", ""), ref["name"]))

    def sync(self, key: tuple[str, str]) -> None:
        job = self.store.try_get(RESOURCE, key[0], key[1])
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        status = dict(job.get("status") or {})
        pods = self.store.list("pods", key[0], index=("controller-uid", job["metadata"]["uid"]))
        phases = [(p.get("status") or {}).get("phase") for p in pods]
        active = [p for p, ph in zip(pods, phases, strict=True)
                  if ph not in ("Succeeded", "Failed") and not pod_is_terminating(p)]
        succeeded = max(int(status.get("succeeded", 0)), phases.count("Succeeded"))
        failed = max(int(status.get("failed", 0)), phases.count("Failed"))
        completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
        now = now_rfc3339()
        outcome = _finished(job)
        if outcome is None:
            if succeeded >= completions:
                outcome = "Complete"
            elif failed > backoff_limit:
                outcome = "Failed"
        if outcome is not None:
            for pod in active:
                delete_pod(self.store, pod)
            active = []
        elif not spec.get("suspend"):
            want = min(parallelism, completions - succeeded)
            owner = owner_reference(job, api_version="batch/v1", kind="Job")
            labels = {"batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                      "batch.kubernetes.io/job-name": key[1],
                      "controller-uid": job["metadata"]["uid"], "job-name": key[1]}
            for _ in range(want - len(active)):
                pod = pod_from_template(spec["template"], namespace=key[0], labels=labels, owner_ref=owner)
                active.append(create_named(self.store, self.names, pod, key[1]))
        new: Obj = {**status, "active": len(active), "ready": sum(pod_is_ready(p) for p in active),
                    "succeeded": succeeded, "failed": failed,
                    "terminating": sum(1 for p in pods if pod_is_terminating(p))}
        new.setdefault("startTime", now)
        new.setdefault("uncountedTerminatedPods", {})
        for field in ("active", "succeeded", "failed"):
            if not new[field]:
                new.pop(field)
        if outcome is not None and _finished(job) is None:
            if outcome == "Complete":
                new["completionTime"] = now
                reasons = [("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                           ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")]
            else:
                reasons = [("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                           ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
            new["conditions"] = list(status.get("conditions") or []) + [
                {"type": t, "status": "True", "reason": r, "message": m, "lastProbeTime": now,
                 "lastTransitionTime": now} for t, r, m in reasons]
            log.info("sim.job.finished", job=f"{key[0]}/{key[1]}", outcome=outcome, succeeded=succeeded,
                     failed=failed)
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None:
                self.world.call_later(float(ttl), lambda: self._expire(key, job["metadata"]["uid"]))
        if new == status:
            return

        def write(draft: Obj) -> Obj:
            draft["status"] = new
            return draft

        try:
            self.store.mutate(RESOURCE, key[0], key[1], write, subresource="status")
        except NotFound:
            return

    def _expire(self, key: tuple[str, str], uid: str) -> None:
        try:
            self.store.delete(RESOURCE, key[0], key[1], uid=uid)
        except NotFound:
            return
        except Exception as exc:  # a newer Job of the same name: not ours to delete
            log.debug("sim.job.ttl_skipped", job=f"{key[0]}/{key[1]}", error=str(exc))
