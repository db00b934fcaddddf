"""The reconcile loop: lease → checkpoint → observe → decide → persist → execute → repeat.

One process drives a run at a time (the Lease). Each turn observes the cluster from the watch
cache, asks the pure engine (``engine.decide``) for the next checkpoint, actions and whether
to stop, **persists the new checkpoint before executing** (intent first, compare-and-swap on
the ConfigMap's resourceVersion; a 409 means someone else wrote it — ``migrator pause``/
``abort``, or a process that took the Lease over, so check that the Lease is still ours, then
reload and decide again), executes the actions and hands their results to the
next turn's decision through its inbox. It then sleeps until the cache sees a change or the
engine's next deadline, never polling the API. The runner decides nothing itself: what the
process was started for (its purpose) goes into the inbox, and the engine names the stop.

A crash at any point is safe: the checkpoint holds every intent, every action is idempotent,
and ``resume`` observes and decides again instead of replaying anything.

An API server that stays unreachable or failing after the port's own retries (``Unavailable``,
``Throttled`` escaping a turn: observing, saving or reloading the checkpoint, or every action
of the turn) does not end the run: the turn is tried again with the same checkpoint,
resourceVersion and inbox, up to ``api.outage_tolerance`` (``migrator.outage``), then the run
halts with exit 1, resumable. A save whose outcome is unknown needs nothing special: the next
save carries the same resourceVersion, so it goes through if the lost one did not, and is
refused (409, reload: our own write comes back) if it did.

A 403 (``Forbidden``), from observing, saving or an action, ends the run at once: the report is
written and the error goes to the command, which names the missing permission (exit 2). Nothing
is rolled back for it; ``migrator resume`` goes on once RBAC grants it.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import structlog

from migrator.clock import Clock, SystemClock
from migrator.cluster.errors import ClusterError, Conflict, Forbidden, Throttled, Unavailable
from migrator.cluster.lease import LockHeld, LockLost, RunLock, holder_identity
from migrator.cluster.port import ClusterPort, WatchScope
from migrator.cluster.store import CheckpointStore, Versions
from migrator.collector import fewer_collections
from migrator.engine.actions import ActionResult, RunProbes, WriteFile
from migrator.engine.decide import Decision, Inbox, PlanMismatch, Purpose, decide, observe_scope
from migrator.execute import Executor
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint, changed_records
from migrator.model.plan import MigrationPlan
from migrator.observe import Observer
from migrator.outage import API_DOWN, ApiOutage
from migrator.policy_probe_live import Explainer
from migrator.report import write_run_report
from migrator.report.timeline import TimelineRecorder

log = structlog.get_logger("migrator.runner")
RELOAD_EVERY = 2.0       # seconds between checkpoint re-reads while idle (to see pause/abort requests)
MAX_SLEEP = 1.0          # longest wait for a cache change before deciding again


class Exit(IntEnum):
    """Documented exit codes."""

    DONE = 0
    HALTED = 1
    INVALID = 2
    LOCKED = 3


STOP_CODES = {"done": Exit.DONE, "halted": Exit.HALTED, "invalid": Exit.INVALID}


@dataclass
class Outcome:
    code: Exit
    message: str
    checkpoint: Checkpoint | None = None


class Runner:
    """Drives one plan's run (forward or finalize) to a stopping point."""

    def __init__(self, plan: MigrationPlan, port: ClusterPort, *, clock: Clock | None = None,
                 metrics: Metrics | None = None, output_dir: Path | None = None, progress: Any = None,
                 force_takeover: bool = False, operator: str | None = None,
                 skip_checks: tuple[str, ...] = ()) -> None:
        self.plan = plan
        self.port = port
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.metrics.bind_plan(plan)
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
        self.operator = operator or self.lock.identity  # who changed the plan's tuning, in the audit
        self.skip_checks = skip_checks  # --skip-check IDs (engine.preflight_gate), recorded and audited
        self.observer: Observer | None = None  # its preflight findings are printed when the run halts on them
        # waits out an unavailable API server, up to the plan's api.outage_tolerance
        self.outage = ApiOutage(plan.api.outage_tolerance, clock=self.clock, metrics=self.metrics, progress=progress)
        self._stop = threading.Event()
        self._rv: Versions | None = None
        # the run's history for its report (migrator/report): appended each turn, read by `migrator report`
        self.timeline = TimelineRecorder(self.output_dir, process=self.run_id, purpose="run", metrics=self.metrics,
                                         clock=self.clock)

    # ------------------------------------------------------------------ public
    def request_stop(self, *_: Any) -> None:
        """Stop at the next step boundary (SIGTERM/SIGINT handler)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)

    def run(self, purpose: Purpose = "run", *, lock_wait: float = 0.0) -> Outcome:
        """Drive the run for ``purpose`` (run, resume, finalize, rollback or canary) to the
        stopping point the engine names.

        ``lock_wait`` keeps trying for the Lease that long (a rollback waits for the forward run
        to stand aside, or for a dead run's lease to go stale)."""
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
        self.timeline.purpose = purpose
        self.metrics.run_started(purpose, self.lock.identity)
        outcome = Outcome(Exit.HALTED, "stopped")
        try:
            with fewer_collections():   # a full collection would stop every thread for 100s of ms
                outcome = self._run(purpose)
            outcome = self._report(outcome)
        except LockLost as exc:
            outcome = self._report(Outcome(Exit.HALTED, f"stopped: {exc}"))
        except PlanMismatch as exc:
            outcome = Outcome(Exit.INVALID, str(exc))
        except Forbidden as exc:   # a permission the run needs is missing: the command names it (exit 2)
            outcome = self._report(Outcome(Exit.INVALID, f"stopped: refused by the API server: {exc}"))
            raise
        finally:
            self.executor.close()   # the Events still queued go out while the lease is ours
            try:
                self.lock.release()
            except ClusterError as exc:
                log.warning("lease.release_failed", error=str(exc)[:200])
            self.port.close()
            self.metrics.run_stopped(halted=outcome.code == Exit.HALTED)
        self.metrics.linger(self._stop)
        return outcome

    # ------------------------------------------------------------------ loop
    def _run(self, purpose: Purpose) -> Outcome:
        plan = self.plan
        structlog.contextvars.bind_contextvars(run_id=self.run_id, plan=plan.name)
        observer = self.observer = Observer(plan, self.port, output_dir=self.output_dir)
        # the policy probe's gap report at a node's gate, with the translation and shims a continuous run applies
        explainer = Explainer(self.port, plan, objects=observer.policy_objects)
        version = observer.cnc_version
        self.port.start_watching(WatchScope(agent_namespace=plan.cilium.agent.namespace,
                                            node_config_namespace=plan.cilium.node_config.namespace,
                                            node_config_version=version.split("/", 1)[1] if version else None))
        outage = self.outage
        cp: Checkpoint | None = None
        while True:
            try:
                cp, self._rv = self.store.load()
                outage.recovered()
                break
            except API_DOWN as exc:
                if (halt := self._outage(exc, "checkpoint read", None)) is not None:
                    return halt
        takeover = self.lock.taken_over_from if self.force_takeover else None
        inbox = Inbox(purpose=purpose, run_id=self.run_id, by=self.operator, first=True, takeover=takeover,
                      skip_checks=self.skip_checks)
        last_reload = time.monotonic()
        last_reason = ""
        while True:
            self.lock.check()
            if self._stop.is_set():
                return Outcome(Exit.HALTED, "interrupted; state saved — run `migrator resume` to continue", cp)
            where = "observe"
            began = time.perf_counter()
            acting = 0.0
            try:
                scope = observe_scope(plan, cp, purpose)
                obs = observer.observe(scope.pods_of, finalizing=scope.finalizing, preflight=scope.preflight,
                                       policy_objects=scope.policy_objects, handover=scope.handover)
                inbox = replace(inbox, explained=explainer(cp, obs))
                decision: Decision = decide(plan, cp, obs, self.clock.now(), inbox)
                if decision.reason != last_reason:
                    log.info("run.decision",
                             phase=decision.checkpoint.run_phase.value if decision.checkpoint else None,
                             reason=decision.reason[:300], actions=[a.kind for a in decision.actions])
                    last_reason = decision.reason
                results: tuple[ActionResult, ...] = ()
                if decision.changed and decision.checkpoint is not None:
                    where = "checkpoint save"
                    self._save(decision.checkpoint)
                    outage.recovered()
                    if cp is None:
                        log.info("run.started", nodes=len(decision.checkpoint.nodes), where=self.store.where)
                    self._log_transitions(cp, decision.checkpoint)
                # the intent is saved (or unchanged): from here the turn's state moves on
                cp = decision.checkpoint
                if decision.actions:
                    where = "actions"
                    acting = time.perf_counter()
                    results = tuple(self.executor.run(decision.actions))
                    acting = time.perf_counter() - acting
            except Conflict:
                self.lock.confirm()  # the 409 may be a new holder's first save: then stop here
                try:
                    cp, self._rv = self.store.load()
                except API_DOWN as exc:   # the next save meets the same 409 and reloads again
                    if (halt := self._outage(exc, "checkpoint read", cp)) is not None:
                        return halt
                    continue
                outage.recovered()
                log.info("checkpoint.conflict", action="reloaded")
                if cp is None:
                    return Outcome(Exit.HALTED, f"{self.store.where} was deleted while the run was going on")
                inbox = replace(inbox, results=(), first=False)
                continue
            except API_DOWN as exc:
                # Keep the checkpoint, its resourceVersion and the inbox as they were: a save whose
                # outcome is unknown is settled by the compare-and-swap of the next one (applied:
                # 409, reload, our own write comes back; not applied: it goes through).
                if (halt := self._outage(exc, where, cp)) is not None:
                    return halt
                continue
            inbox = replace(inbox, results=results, first=False, takeover=None)
            self.timeline.turn(cp, results, obs)
            if (halt := self._settle(results, cp)) is not None:
                return halt
            if cp is not None:
                self.metrics.observe_checkpoint(cp)
                if self.progress is not None:
                    self.progress.update(cp, decision.reason)
            self.metrics.turn_done(time.perf_counter() - began - acting)
            if decision.stop is not None:
                return Outcome(STOP_CODES[decision.stop.code], decision.stop.message, cp)
            if not decision.actions:
                self._wait(decision.wake_at)
            if (time.monotonic() - last_reload > RELOAD_EVERY or outage.active) and cp is not None:
                last_reload = time.monotonic()
                try:   # the run ConfigMap alone: operators' requests are run-level fields
                    head = self.store.read_run()
                    if head is not None and (head.requested != cp.requested or head.rollback != cp.rollback):
                        fresh, rv = self.store.load()
                        if fresh is None:
                            return Outcome(Exit.HALTED, f"{self.store.where} was deleted while the run was going on")
                        cp, self._rv = fresh, rv
                except API_DOWN as exc:
                    if (halt := self._outage(exc, "checkpoint read", cp)) is not None:
                        return halt
                    continue
                outage.recovered()

    def _outage(self, exc: ClusterError, where: str, cp: Checkpoint | None) -> Outcome | None:
        """A turn failed with an API error: the halt past ``api.outage_tolerance``, else None
        after pausing (a stop request ends the pause early; the loop then honours it)."""
        message = self.outage.failed(exc, where=where)
        if message is not None:
            log.error("api.outage_tolerance_exceeded", since=self.outage.since.isoformat() if self.outage.since
                      else None, **{"for": round(self.outage.unavailable_for(), 1)},
                      tolerance=self.plan.api.outage_tolerance.total_seconds())
            return Outcome(Exit.HALTED, message, cp)
        self._stop.wait(self.outage.pause(exc))
        return None

    def _settle(self, results: tuple[ActionResult, ...], cp: Checkpoint | None) -> Outcome | None:
        """Read the API server's health from the turn's action results: one call that went
        through ends an outage; when every call failed with an API error, that is a failed turn
        (its results still go to the engine, which tries the actions again)."""
        calls = [r for r in results if not isinstance(r.action, (RunProbes, WriteFile))]
        if not calls:
            return None
        down = [r for r in calls if not r.ok and r.error_kind in ("Unavailable", "Throttled")]
        if len(down) < len(calls):
            self.outage.recovered()
            return None
        first = down[0]
        error: ClusterError = (Throttled if first.error_kind == "Throttled" else Unavailable)(
            first.message, retry_after=first.retry_after)
        message = self.outage.failed(error, where="actions")
        if message is not None:
            return Outcome(Exit.HALTED, message, cp)
        self._stop.wait(self.outage.pause(error))
        return None

    def _report(self, outcome: Outcome) -> Outcome:
        """The process ends: close its timeline and write the run's report into the output directory
        (a report that cannot be written is logged; it never changes the outcome)."""
        cp = outcome.checkpoint or self.timeline.checkpoint
        self.timeline.end(int(outcome.code), outcome.message, cp)
        if cp is not None and outcome.code != Exit.LOCKED:
            try:
                path = write_run_report(cp, self.plan, output_dir=self.output_dir, now=self.clock.now())
                log.info("report.written", path=str(path))
            except Exception as exc:  # noqa: BLE001 - the report is an account of the run, never its outcome
                log.warning("report.failed", error=f"{type(exc).__name__}: {exc}"[:200])
        return outcome

    def _save(self, cp: Checkpoint) -> None:
        self._rv = self.store.save(cp, self._rv)

    def _wait(self, wake_at: datetime | None) -> None:
        timeout = MAX_SLEEP
        if wake_at is not None:
            timeout = max(0.0, min(timeout, (wake_at - self.clock.now()).total_seconds()))
        if timeout > 0:
            self.port.wait_for_change(timeout)

    def _log_transitions(self, old: Checkpoint | None, new: Checkpoint) -> None:
        before = old.by_name if old is not None else {}
        for record in changed_records(old.nodes if old is not None else None, new.nodes):
            prev = before.get(record.name)
            if prev is None or prev.phase != record.phase:
                log.info("node.transition", node=record.name, phase=record.phase.value,
                         previous=prev.phase.value if prev else None, attempt=record.attempt,
                         error=record.last_error)
        if old is not None and old.run_phase != new.run_phase:
            log.info("run.transition", phase=new.run_phase.value, previous=old.run_phase.value)
