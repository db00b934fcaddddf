"""Prometheus metrics of a run, on a private registry (served with ``--metrics-port``).

Counted on transitions and outcomes, never per loop: nodes by phase, step durations, evictions
by outcome, API retries, rollbacks, API server outages the run waited out.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from prometheus_client import CollectorRegistry, Gauge, Histogram, start_http_server
from prometheus_client import Counter as PCounter

from migrator.model.checkpoint import Checkpoint


class Metrics:
    """The migrator's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.nodes = Gauge("migrator_nodes", "Nodes by migration phase.", ["phase"], registry=self.registry)
        self.step_seconds = Histogram("migrator_step_duration_seconds", "Time a node spent in a phase.",
                                      ["phase"], registry=self.registry,
                                      buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800))
        self.evictions = PCounter("migrator_evictions_total", "Evictions by outcome.", ["outcome"],
                                  registry=self.registry)
        self.actions = PCounter("migrator_actions_total", "Actions executed by kind and outcome.",
                                ["kind", "outcome"], registry=self.registry)
        self.retries = PCounter("migrator_api_retries_total", "API calls retried after a transient error.",
                                registry=self.registry)
        self.rollbacks = PCounter("migrator_rollbacks_total", "Nodes rolled back.", registry=self.registry)
        self.probes = PCounter("migrator_probe_checks_total", "Connectivity checks by purpose (gate, sample) "
                               "and outcome (ok, fail, unknown: the API server did not relay an answer).",
                               ["purpose", "outcome"], registry=self.registry)
        self.api_outages = PCounter("migrator_api_outages_total", "Episodes of the API server unavailable "
                                    "(a turn failed after the port's own retries) that the run waited out.",
                                    registry=self.registry)
        self.api_unavailable_seconds = PCounter("migrator_api_unavailable_seconds_total",
                                                "Seconds the run waited for an unavailable API server.",
                                                registry=self.registry)
        self.api_unavailable = Gauge("migrator_api_unavailable", "1 while the run waits for an unavailable "
                                     "API server, else 0.", registry=self.registry)
        self._seen: dict[str, tuple[str, datetime | None]] = {}   # node -> (phase, phase_started_at)

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def observe_checkpoint(self, cp: Checkpoint) -> None:
        """Update the phase gauge; on each node transition, record the time spent in the old phase."""
        counts = Counter(r.phase.value for r in cp.nodes)
        for phase in {*counts, *(p for p, _ in self._seen.values())}:
            self.nodes.labels(phase=phase).set(counts.get(phase, 0))
        for record in cp.nodes:
            previous = self._seen.get(record.name)
            current = (record.phase.value, record.phase_started_at)
            if previous is not None and previous[0] != current[0]:
                started, ended = previous[1], record.phase_started_at
                if started is not None and ended is not None:
                    self.step_done(previous[0], (ended - started).total_seconds())
                if current[0] == "ROLLED_BACK":
                    self.rollbacks.inc()
            self._seen[record.name] = current

    def step_done(self, phase: str, seconds: float) -> None:
        self.step_seconds.labels(phase=phase).observe(max(seconds, 0.0))
