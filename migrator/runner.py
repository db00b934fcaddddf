"""The reconcile loop: lease → checkpoint → observe → decide → persist → execute → repeat.

One process drives a run at a time (the Lease). Each iteration observes the cluster from the
watch cache, asks the pure engine for the next checkpoint and actions, **persists the new
checkpoint before executing** (intent first, compare-and-swap on the ConfigMap's
resourceVersion; a 409 means someone else wrote it — ``migrator pause``/``abort`` — so reload
and decide again), executes the actions, folds their outcomes back in and persists again. It
then sleeps until the cache sees a change or the engine's next deadline, never polling the API.

A crash at any point is safe: the checkpoint holds every intent, every action is idempotent,
and ``resume`` observes and decides again instead of replaying anything.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

import structlog

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import ClusterError, Conflict
from migrator.cluster.lease import LockHeld, LockLost, RunLock, holder_identity
from migrator.cluster.port import ClusterPort, WatchScope
from migrator.cluster.store import CheckpointStore
from migrator.engine.canary import decide_canary
from migrator.engine.decide import (
    Decision,
    PlanMismatch,
    decide,
    new_checkpoint,
    pod_scope,
    resume_checkpoint,
)
from migrator.engine.finalize import decide_finalize, finalize_blockers
from migrator.engine.oncall import decide_rollback, rollback_finished
from migrator.engine.preflight_gate import request_skips
from migrator.engine.results import record_results
from migrator.engine.states import NodePhase, RunPhase
from migrator.execute import Executor
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint
from migrator.model.plan import MigrationPlan, plan_hash
from migrator.observe import Observer

log = structlog.get_logger("migrator.runner")
Mode = Literal["forward", "finalize", "rollback", "canary"]
STEPS = {"forward": decide, "finalize": decide_finalize, "rollback": decide_rollback, "canary": decide_canary}
RELOAD_EVERY = 2.0       # seconds between checkpoint re-reads while idle (to see pause/abort requests)
MAX_SLEEP = 1.0          # longest wait for a cache change before deciding again


class Exit(IntEnum):
    """Documented exit codes."""

    DONE = 0
    HALTED = 1
    INVALID = 2
    LOCKED = 3


@dataclass
class Outcome:
    code: Exit
    message: str
    checkpoint: Checkpoint | None = None


class Runner:
    """Drives one plan's run (forward or finalize) to a stopping point."""

    def __init__(self, plan: MigrationPlan, port: ClusterPort, *, clock: Clock | None = None,
                 metrics: Metrics | None = None, output_dir: Path | None = None, progress: Any = None,
                 force_takeover: bool = False, skip_checks: tuple[str, ...] = (), requested_by: str = "") -> None:
        self.plan = plan
        self.port = port
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.output_dir = output_dir or Path.cwd()
        self.progress = progress
        self.force_takeover = force_takeover
        st = plan.state
        self.store = CheckpointStore(port, namespace=st.configmap_namespace, name=st.configmap_name)
        self.run_id = uuid.uuid4().hex[:12]
        self.lock = RunLock(port, identity=holder_identity(self.run_id), namespace=st.lease_namespace,
                            name=st.lease_name, ttl_seconds=max(int(st.lease_duration.total_seconds()), 2),
                            clock=self.clock)
        self.executor = Executor(port, output_dir=self.output_dir, metrics=self.metrics)
        self._stop = threading.Event()
        self._rv: str | None = None
        self.skip_checks, self.requested_by = skip_checks, requested_by  # --skip-check (engine.preflight_gate)
        self.observer: Observer | None = None  # its preflight findings are printed when the run halts on them

    # ------------------------------------------------------------------ public
    def request_stop(self, *_: Any) -> None:
        """Stop at the next step boundary (SIGTERM/SIGINT handler)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def run(self, *, finalize: bool = False, resume: bool = False, start_new: bool = True,
            mode: Mode | None = None, lock_wait: float = 0.0) -> Outcome:
        """Drive the run in ``mode`` (forward, finalize, rollback or canary) to a stopping point.

        ``lock_wait`` keeps trying for the Lease that long (a rollback waits for the forward run
        to stand aside, or for a dead run's lease to go stale)."""
        mode = mode or ("finalize" if finalize else "forward")
        deadline = time.monotonic() + lock_wait
        while True:
            try:
                self.lock.acquire(force_takeover=self.force_takeover)
                break
            except LockHeld as exc:
                if time.monotonic() >= deadline or self._stop.is_set():
                    return Outcome(Exit.LOCKED, str(exc))
                time.sleep(1.0)
        if self.lock.taken_over_from:
            log.warning("run.takeover", previous=self.lock.taken_over_from, audited=self.force_takeover)
        self.lock.keep_alive()
        try:
            return self._run(mode=mode, resume=resume, start_new=start_new)
        except LockLost as exc:
            return Outcome(Exit.HALTED, f"stopped: {exc}")
        except PlanMismatch as exc:
            return Outcome(Exit.INVALID, str(exc))
        finally:
            try:
                self.lock.release()
            except ClusterError as exc:
                log.warning("lease.release_failed", error=str(exc)[:200])
            self.port.close()

    # ------------------------------------------------------------------ loop
    def _run(self, *, mode: Mode, resume: bool, start_new: bool) -> Outcome:  # noqa: C901 - the loop, flat
        finalize = mode == "finalize"
        plan = self.plan
        structlog.contextvars.bind_contextvars(run_id=self.run_id, plan=plan.name)
        observer = self.observer = Observer(plan, self.port, output_dir=self.output_dir)
        version = observer.cnc_version
        self.port.start_watching(WatchScope(agent_namespace=plan.cilium.agent.namespace,
                                            node_config_namespace=plan.cilium.node_config.namespace,
                                            node_config_version=version.split("/", 1)[1] if version else None))
        cp, self._rv = self.store.load()
        now = self.clock.now()
        if mode == "canary" and cp is not None and cp.plan_hash == plan_hash(plan):
            if cp.canary is not None and cp.canary.outcome == "kept" and cp.run_phase is RunPhase.NODES_DONE:
                return Outcome(Exit.DONE, "canary already kept: its nodes run on Cilium (see `migrator status`)", cp)
            if cp.run_phase.terminal:  # a previous canary ended: start a new one in its place
                fresh = new_checkpoint(plan, observer.observe(frozenset()), self.run_id, now)
                self._rv = self.store.save(fresh, self._rv)
                cp = fresh
                log.info("canary.started", nodes=len(cp.nodes), replaced="previous canary")
        if cp is not None and self.lock.taken_over_from and self.force_takeover:
            note = (f"{now.isoformat(timespec='seconds')} lock taken over from {self.lock.taken_over_from} "
                    f"with --force-takeover by {self.lock.identity}")
            cp = cp.model_copy(update={"audit": (*cp.audit, note)[-20:]})
            self._save(cp)
        if mode == "rollback" and (cp is None or cp.rollback is None):
            return Outcome(Exit.DONE, "no rollback recorded: nothing to do", cp)
        if cp is None:
            if finalize or not start_new:
                return Outcome(Exit.INVALID, f"no migration state in {self.store.where}; start with `migrator run`")
            cp = new_checkpoint(plan, observer.observe(frozenset()), self.run_id, now)
            self._rv = self.store.save(cp, None)
            log.info("run.started", nodes=len(cp.nodes), where=self.store.where)
        elif cp.plan_hash != plan_hash(plan):
            raise PlanMismatch(f"{self.store.where} holds the state of plan {cp.plan_name!r} ({cp.plan_hash}); "
                               f"this plan is {plan.name!r} ({plan_hash(plan)}). Use the plan that started the run, "
                               "or delete the state ConfigMap after finalize/abort to start anew.")
        else:
            log.info("run.resumed", run_id=cp.run_id, phase=cp.run_phase.value)
            if resume and (cp.halted or cp.run_phase is RunPhase.PAUSED or cp.requested == "pause"):
                cp = resume_checkpoint(cp, now)
                self._save(cp)
        skipped = request_skips(cp, self.skip_checks, self.requested_by, now)
        if skipped is not cp:
            cp = skipped
            self._save(cp)
        if finalize:
            blockers = finalize_blockers(cp)
            if blockers and cp.run_phase is not RunPhase.FINALIZED:
                return Outcome(Exit.HALTED, "finalize refused: " + "; ".join(blockers[:5]) +
                               (f" (+{len(blockers) - 5} more)" if len(blockers) > 5 else ""), cp)
        last_reload = time.monotonic()
        last_reason = ""
        while True:
            self.lock.check()
            if self._stop.is_set():
                return Outcome(Exit.HALTED, "interrupted; state saved — run `migrator resume` to continue", cp)
            # finalize acts on every node (clean-up pods), so it sees every node's pods
            obs = observer.observe(None if finalize else pod_scope(cp), finalizing=finalize,
                                   preflight=mode in ("forward", "canary") and cp.run_phase is RunPhase.PREFLIGHT)
            now = self.clock.now()
            decision: Decision = STEPS[mode](plan, cp, obs, now)
            if decision.reason != last_reason:
                log.info("run.decision", phase=decision.checkpoint.run_phase.value, reason=decision.reason[:300],
                         actions=[a.kind for a in decision.actions])
                last_reason = decision.reason
            try:
                if decision.changed:
                    self._log_transitions(cp, decision.checkpoint)
                    self._save(decision.checkpoint)
                cp = decision.checkpoint
                if decision.actions:
                    results = self.executor.run(decision.actions)
                    folded = record_results(cp, results, self.clock.now(), plan.drain.retry_interval)
                    if folded != cp:
                        self._save(folded)
                        cp = folded
            except Conflict:
                cp, self._rv = self.store.load()
                log.info("checkpoint.conflict", action="reloaded")
                if cp is None:
                    return Outcome(Exit.HALTED, f"{self.store.where} was deleted while the run was going on")
                continue
            self.metrics.observe_checkpoint(cp)
            if self.progress is not None:
                self.progress.update(cp, decision.reason)
            outcome = self._stopping_point(cp, mode)
            if outcome is not None:
                return outcome
            if not decision.actions:
                self._wait(decision.wake_at)
            if time.monotonic() - last_reload > RELOAD_EVERY:
                last_reload = time.monotonic()
                fresh, rv = self.store.load()
                if fresh is not None and (fresh.requested != cp.requested or fresh.rollback != cp.rollback):
                    cp, self._rv = fresh, rv

    def _save(self, cp: Checkpoint) -> None:
        self._rv = self.store.save(cp, self._rv)

    def _wait(self, wake_at: datetime | None) -> None:
        timeout = MAX_SLEEP
        if wake_at is not None:
            timeout = max(0.0, min(timeout, (wake_at - self.clock.now()).total_seconds()))
        if timeout > 0:
            self.port.wait_for_change(timeout)

    def _stopping_point(self, cp: Checkpoint, mode: Mode) -> Outcome | None:
        if mode == "rollback":
            return _rollback_outcome(cp) if rollback_finished(cp) else None
        if mode == "canary":
            return _canary_outcome(cp)
        if cp.rollback is not None:
            return Outcome(Exit.HALTED, f"an on-call rollback was requested by {cp.rollback.by}: this run stopped "
                                        "at a step boundary so it can proceed", cp)
        finalize = mode == "finalize"
        if cp.halted:
            return Outcome(Exit.HALTED, f"halted: {cp.halted}. Fix the cause, then `migrator resume`", cp)
        phase = cp.run_phase
        if finalize:
            return Outcome(Exit.DONE, "finalized: Calico removed, Cilium is the only CNI", cp) \
                if phase is RunPhase.FINALIZED else None
        if phase in (RunPhase.NODES_DONE, RunPhase.FINALIZING, RunPhase.FINALIZED):
            return Outcome(Exit.DONE, "every node migrated; next: `migrator finalize --yes`", cp)
        if phase is RunPhase.PAUSED:
            return Outcome(Exit.HALTED, "paused at a step boundary; `migrator resume` continues", cp)
        if phase is RunPhase.ABORTED:
            return Outcome(Exit.HALTED, "aborted: no node is in flight; nodes not started stay on Calico", cp)
        return None

    def _log_transitions(self, old: Checkpoint, new: Checkpoint) -> None:
        before = old.by_name
        for record in new.nodes:
            prev = before.get(record.name)
            if prev is None or prev.phase != record.phase:
                log.info("node.transition", node=record.name, phase=record.phase.value,
                         previous=prev.phase.value if prev else None, attempt=record.attempt,
                         error=record.last_error)
        if old.run_phase != new.run_phase:
            log.info("run.transition", phase=new.run_phase.value, previous=old.run_phase.value)


def _rollback_outcome(cp: Checkpoint) -> Outcome:
    if cp.halted:
        return Outcome(Exit.HALTED, f"rollback halted: {cp.halted}", cp)
    rolled = [r.name for r in cp.nodes if r.phase is NodePhase.ROLLED_BACK]
    if cp.run_phase is RunPhase.ROLLED_BACK:
        return Outcome(Exit.DONE, f"rolled back: every node is on Calico ({len(rolled)} rolled back); the "
                                  "CiliumNodeConfig and the probe fleet are gone", cp)
    return Outcome(Exit.DONE, f"rolled back: {', '.join(rolled) or 'none'} on Calico; the run is paused — "
                              "`migrator resume` continues with the other nodes", cp)


def _canary_outcome(cp: Checkpoint) -> Outcome | None:
    canary = cp.canary
    if canary is not None and cp.rollback is None and cp.run_phase is RunPhase.ABORTED:  # preflight_gate.end_canary
        return Outcome(Exit.HALTED, f"canary {canary.outcome}: {canary.reason}", cp)
    if canary is None or canary.outcome == "soaking":
        return None
    if canary.outcome == "kept" and cp.run_phase is RunPhase.NODES_DONE:
        return Outcome(Exit.DONE, f"canary kept: {canary.reason}", cp)
    if cp.halted and cp.rollback is not None:
        return Outcome(Exit.HALTED, f"canary {canary.outcome}, and its rollback halted: {cp.halted}", cp)
    if cp.run_phase is RunPhase.ROLLED_BACK:
        code = Exit.DONE if canary.outcome == "rolled-back" else Exit.HALTED
        return Outcome(code, f"canary {canary.outcome}: {canary.reason}; every canary node is back on Calico", cp)
    return None


def process_identity() -> str:
    return f"{os.uname().nodename}/{os.getpid()}"
