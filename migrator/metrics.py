"""Prometheus metrics of a run, on a private registry (served with ``--metrics-port``).

Counted on transitions and outcomes, never per loop: nodes by phase, step durations, evictions
by outcome, API retries, rollbacks, API server outages the run waited out. Beside them, the
state a person alerts on, read from the checkpoint after every turn: the run's phase (a state
set: one series per phase, 1 for the current one), whether it halted, when it last made
progress, since when the longest-waiting node has been in each phase and the plan's time limit
for that phase, and which process holds the run lock.

Every series carries a ``plan`` label (the plan's name, added when the registry is collected),
so the runs of several plans, or one plan's run across resumes in new pods, can be told apart
and joined without relying on the scrape's own labels. Cardinality is bounded by the phases,
the outcome and action kinds, and one lock holder per process.

Times are exported as Unix timestamps (``*_timestamp_seconds``), never as ages: an age computed
by Prometheus (``time() - ...``) keeps growing while a hung run still serves its last values.
A process's series end with it; ``linger`` keeps them served for a while after the run stopped
(``--metrics-linger``) so that a scrape sees how it ended (a Job's pod exits at once otherwise).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog
from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PCounter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from migrator.engine.node_steps import in_place, recycle_timeout
from migrator.model.checkpoint import Checkpoint, NodeRecord, changed_records
from migrator.model.plan import MigrationPlan
from migrator.model.states import NodePhase, RunPhase

log = structlog.get_logger(__name__)


def phase_time_limits(plan: MigrationPlan) -> dict[NodePhase, timedelta]:
    """The plan's longest time a node may spend in each phase before the engine takes the step's
    timeout way out (``engine/node_rows.py``, ``engine/rollback.py``): phases whose step has no
    time limit (the cordon, the uncordon) are not listed. The engine may wait longer only where
    its rows say so: a drain once ``drain.pdb_override`` applies, a probe gate while only checks
    the API server did not relay stand in the way."""
    limits: dict[NodePhase, timedelta] = {
        NodePhase.LABELED: plan.cilium.agent.restart_timeout,
        NodePhase.AGENT_RESTARTED: plan.verify.timeout,
        NodePhase.ROLLING_BACK: plan.rollback.timeout,
    }
    if in_place(plan):
        limits[NodePhase.PENDING] = plan.drain.timeout      # the label waits on budgets that long
    else:
        limits[NodePhase.CORDONED] = plan.drain.timeout
    if plan.recycle.enabled:
        limits[NodePhase.CNI_VERIFIED] = recycle_timeout(plan)
    if plan.probes.enabled:
        limits[NodePhase.PODS_RECYCLED] = plan.probes.checks.deadline
    return limits


class _PlanLabel(Collector):
    """Collects another registry and adds ``plan`` to every sample."""

    def __init__(self, inner: CollectorRegistry, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        plan = self.metrics.plan
        for family in self.inner.collect():
            out = copy.copy(family)
            out.samples = [s._replace(labels={"plan": plan, **s.labels}) for s in family.samples]
            yield out


TURNS_KEPT = 100_000


class Metrics:
    """The migrator's metrics."""

    def __init__(self, plan: str = "") -> None:
        self.plan = plan
        inner = CollectorRegistry()
        self.registry = CollectorRegistry()
        self.registry.register(_PlanLabel(inner, self))
        self.nodes = Gauge("migrator_nodes", "Nodes by migration phase.", ["phase"], registry=inner)
        self.step_seconds = Histogram("migrator_step_duration_seconds", "Time a node spent in a phase.",
                                      ["phase"], registry=inner,
                                      buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800))
        self.turn_seconds = Histogram("migrator_turn_duration_seconds", "Time one turn of the run loop took to "
                                      "observe, decide, save the checkpoint and record the turn (the actions' "
                                      "API calls and the waits excluded).", registry=inner,
                                      buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2))
        self.turns: list[float] = []   # the same durations, for benchmarks (bounded: see turn_done)
        self.evictions = PCounter("migrator_evictions_total", "Evictions by outcome.", ["outcome"], registry=inner)
        self.actions = PCounter("migrator_actions_total", "Actions executed by kind and outcome.",
                                ["kind", "outcome"], registry=inner)
        self.retries = PCounter("migrator_api_retries_total", "API calls retried after a transient error.",
                                registry=inner)
        self.rollbacks = PCounter("migrator_rollbacks_total", "Nodes rolled back.", registry=inner)
        self.probes = PCounter("migrator_probe_checks_total", "Connectivity checks by purpose (gate, sample) "
                               "and outcome (ok, fail, unknown: the API server did not relay an answer).",
                               ["purpose", "outcome"], registry=inner)
        self.api_outages = PCounter("migrator_api_outages_total", "Episodes of the API server unavailable "
                                    "(a turn failed after the port's own retries) that the run waited out.",
                                    registry=inner)
        self.api_unavailable_seconds = PCounter("migrator_api_unavailable_seconds_total",
                                                "Seconds the run waited for an unavailable API server.",
                                                registry=inner)
        self.api_unavailable = Gauge("migrator_api_unavailable", "1 while the run waits for an unavailable "
                                     "API server, else 0.", registry=inner)
        # the run's state, for alerts
        self.run_info = Gauge("migrator_run_info", "1 for the run this process drives: its run_id (stable across "
                              "resumes) and the command's purpose (run, resume, finalize, rollback, canary).",
                              ["run_id", "purpose"], registry=inner)
        self.run_phase = Gauge("migrator_run_phase", "The run's phase: 1 for the current phase, 0 for the others.",
                               ["phase"], registry=inner)
        self.run_halted = Gauge("migrator_run_halted", "1 once the run halted or stopped short (paused, "
                                "interrupted, lock lost: exit 1, `migrator resume` continues), else 0.",
                                registry=inner)
        self.started_at = Gauge("migrator_run_started_timestamp_seconds", "When this process took the run lock "
                                "(Unix time; 0 until then).", registry=inner)
        self.halted_at = Gauge("migrator_run_halted_timestamp_seconds", "When this process's run halted or "
                               "stopped short (Unix time; 0 until then). A halt later than every process start "
                               "of the plan has not been resumed.", registry=inner)
        self.last_progress = Gauge("migrator_last_progress_timestamp_seconds", "When a node or the run last "
                                   "moved to a new phase (Unix time, from the checkpoint).", registry=inner)
        self.phase_oldest = Gauge("migrator_phase_oldest_start_timestamp_seconds", "When the node longest in "
                                  "this phase entered it (Unix time; nodes in flight only, absent when none).",
                                  ["phase"], registry=inner)
        self.phase_limit = Gauge("migrator_phase_timeout_seconds", "The plan's time limit for a node's step in "
                                 "this phase; absent for phases without one.", ["phase"], registry=inner)
        self.lease_info = Gauge("migrator_lease_info", "1 while this process holds the run lock, labelled with "
                                "its holder identity (host/pid/run).", ["holder"], registry=inner)
        self._seen: dict[str, tuple[str, datetime | None]] = {}   # node -> (phase, phase_started_at)
        self._nodes: tuple[NodeRecord, ...] | None = None   # the records last looked at
        self._latest: datetime | None = None   # the latest phase start among them
        self._oldest: set[str] = set()
        self._info: tuple[str, str] | None = None
        self._purpose = ""
        self._linger = 0.0
        for phase in NodePhase:
            self.nodes.labels(phase=phase.value).set(0)
        for run_phase in RunPhase:
            self.run_phase.labels(phase=run_phase.value).set(0)

    def serve(self, port: int, *, linger: float = 0.0) -> None:
        """Serve the registry on ``port``; ``linger`` seconds after the run stops (``linger``)."""
        start_http_server(port, registry=self.registry)
        self._linger = linger

    def bind_plan(self, plan: MigrationPlan) -> None:
        """Label every series with the plan's name and export its phase time limits."""
        self.plan = plan.name
        for phase, limit in phase_time_limits(plan).items():
            self.phase_limit.labels(phase=phase.value).set(limit.total_seconds())

    # ------------------------------------------------------------------ run lifecycle
    def run_started(self, purpose: str, holder: str) -> None:
        """This process took the run lock for ``purpose``."""
        self._purpose = purpose
        self.lease_info.labels(holder=holder).set(1)
        self.run_halted.set(0)
        self.started_at.set_to_current_time()

    def run_stopped(self, *, halted: bool) -> None:
        """The run stopped (``halted``: exit 1, resumable); the lock was released."""
        self.run_halted.set(int(halted))
        if halted:
            self.halted_at.set_to_current_time()
        self.lease_info.clear()
        self.phase_oldest.clear()   # nothing drives these nodes now: no deadline to watch here
        self._oldest.clear()

    def linger(self, stop: threading.Event) -> None:
        """Keep serving (the HTTP server is a daemon thread) for the ``--metrics-linger`` seconds
        after the run stopped, so a scrape sees how it ended; ``stop`` (SIGTERM) ends it early."""
        if self._linger > 0 and not stop.is_set():
            log.info("metrics.linger", seconds=self._linger)
            stop.wait(self._linger)

    # ------------------------------------------------------------------ per turn
    def observe_checkpoint(self, cp: Checkpoint) -> None:
        """Update the gauges from the checkpoint; on each node transition, record the time spent
        in the old phase."""
        counts = cp.census.counts
        for phase in NodePhase:
            self.nodes.labels(phase=phase.value).set(counts.get(phase, 0))
        for run_phase in RunPhase:
            self.run_phase.labels(phase=run_phase.value).set(int(run_phase is cp.run_phase))
        if cp.halted is not None:
            self.run_halted.set(1)
        info = (cp.run_id, self._purpose)
        if info != self._info:
            if self._info is not None:
                self.run_info.remove(*self._info)
            self.run_info.labels(run_id=info[0], purpose=info[1]).set(1)
            self._info = info
        moments = [cp.run_phase_started_at] if cp.run_phase_started_at is not None else []
        oldest: dict[str, datetime] = {}
        for record in map(cp.by_name.__getitem__, cp.census.in_flight):
            started = record.phase_started_at
            if started is not None and (
                    record.phase.value not in oldest or started < oldest[record.phase.value]):
                oldest[record.phase.value] = started
        changed = changed_records(self._nodes, cp.nodes)
        self._nodes = cp.nodes
        for record in changed:   # a phase's start only moves forward: the latest is among the changed
            started = record.phase_started_at
            if started is not None:
                self._latest = started if self._latest is None else max(self._latest, started)
            previous = self._seen.get(record.name)
            current = (record.phase.value, started)
            if previous is not None and previous[0] != current[0]:
                if previous[1] is not None and started is not None:
                    self.step_done(previous[0], (started - previous[1]).total_seconds())
                if current[0] == NodePhase.ROLLED_BACK.value:
                    self.rollbacks.inc()
            self._seen[record.name] = current
        if self._latest is not None:
            moments.append(self._latest)
        if moments:
            self.last_progress.set(max(moments).timestamp())
        for gone in self._oldest - oldest.keys():
            self.phase_oldest.remove(gone)
        for name, since in oldest.items():
            self.phase_oldest.labels(phase=name).set(since.timestamp())
        self._oldest = set(oldest)

    def turn_done(self, seconds: float) -> None:
        self.turn_seconds.observe(seconds)
        if len(self.turns) < TURNS_KEPT:
            self.turns.append(seconds)

    def step_done(self, phase: str, seconds: float) -> None:
        self.step_seconds.labels(phase=phase).observe(max(seconds, 0.0))
