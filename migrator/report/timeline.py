"""The run's timeline file: what happened and when, appended as JSON lines while the run goes on.

The checkpoint holds each node's *current* phase only, and the Kubernetes Events the run emits
expire (kube-apiserver ``--event-ttl``, one hour by default), so the history a report draws
comes from here. ``TimelineRecorder.turn`` is the runner's one hook, called after each turn
whose checkpoint was saved (or unchanged): it compares the node records with the ones it saw
last and appends one line per fact —

- ``session``   a process started driving the run (its purpose: run, resume, canary, ...);
- ``run-phase`` the run moved to another phase;
- ``phase``     a node moved to another phase (its attempt, its last error);
- ``wave``      the nodes one decision started (left ``PENDING`` or began a new attempt);
- ``probe``     a node's connectivity gate has a new outcome;
- ``rollback``  a node got a rollback reason;
- ``pod``       an eviction or pod deletion the turn executed: node, pod, its workload, outcome;
- ``findings``  the preflight findings the run's PREFLIGHT phase gathered, and the skipped checks;
- ``counters``  this process's API actions by kind and outcome, retries, outages (from its
                metrics, cumulative per process; written when they changed, at most every
                ``COUNTERS_EVERY`` seconds, and when the process ends — a killed process loses the
                counts of its last seconds);
- ``end``       the process stopped: exit code and message.

The file is ``migrator-timeline-<run id>.jsonl`` in ``--output-dir``. It is opened in append mode
and each line is flushed when written, so it survives a crash (at worst its last line is cut,
which the reader skips and counts); a resume in the same directory reads the last state back
and appends. A write that fails (disk full, directory gone) is logged once and the run goes on:
the timeline is an account of the run, never a condition of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import structlog

from migrator.clock import Clock, SystemClock
from migrator.engine.actions import ActionResult
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint, NodeRecord, changed_records
from migrator.model.findings import Finding
from migrator.model.observation import ClusterObservation
from migrator.model.states import NodePhase

log = structlog.get_logger("migrator.report.timeline")
COUNTERS_EVERY = 10.0   # seconds between two counters records of one process (a long run has many turns)
PREFIX = "migrator-timeline-"
SUFFIX = ".jsonl"


def timeline_path(directory: Path, run_id: str) -> Path:
    """Where the timeline of run ``run_id`` lives in ``directory``."""
    return Path(directory) / f"{PREFIX}{run_id}{SUFFIX}"


@dataclass(frozen=True)
class _Seen:
    phase: str
    attempt: int
    probes: str | None
    rollback_reason: str | None

    @classmethod
    def of(cls, record: NodeRecord) -> _Seen:
        return cls(record.phase.value, record.attempt, record.probes, record.rollback_reason)


@dataclass
class TimelineRead:
    """The records of one or more timeline files, and what could not be read."""

    records: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_timeline(paths: Iterable[Path]) -> TimelineRead:
    """Every readable record of ``paths``, in file order; unreadable files and lines become problems."""
    out = TimelineRead()
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            out.problems.append(f"timeline {path} could not be read ({exc.strerror or exc})")
            continue
        out.files.append(str(path))
        bad = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("kind"), str) and isinstance(record.get("t"), str):
                out.records.append(record)
            else:
                bad += 1
        if bad:
            out.problems.append(f"timeline {path}: {bad} unreadable line(s) skipped (a line cut by a crash "
                                "is one)")
    return out


def _counters(metrics: Metrics) -> dict[str, Any]:
    """The process's API counters, read from its metrics registry."""
    actions: dict[str, float] = {}
    scalars = {"migrator_api_retries": "retries", "migrator_api_outages": "outages",
               "migrator_api_unavailable_seconds": "unavailable_seconds"}
    out: dict[str, Any] = {"retries": 0, "outages": 0, "unavailable_seconds": 0.0}
    probes: dict[str, float] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            if family.name == "migrator_actions":
                actions[f"{sample.labels['kind']}/{sample.labels['outcome']}"] = sample.value
            elif family.name == "migrator_probe_checks":
                probes[f"{sample.labels['purpose']}/{sample.labels['outcome']}"] = sample.value
            elif family.name in scalars:
                out[scalars[family.name]] = sample.value
    out["actions"] = {k: int(v) for k, v in sorted(actions.items())}
    out["probe_checks"] = {k: int(v) for k, v in sorted(probes.items())}
    out["retries"] = int(out["retries"])
    out["outages"] = int(out["outages"])
    out["unavailable_seconds"] = round(float(out["unavailable_seconds"]), 1)
    return out


def _finding(f: Finding, skipped: set[str]) -> dict[str, Any]:
    return {"check": f.check, "severity": f.severity.value, "message": f.message, "fix_command": f.fix_command,
            "skipped": f.severity.value == "blocking" and f.check in skipped}


class TimelineRecorder:
    """Appends a run's facts to its timeline file (see the module docstring)."""

    def __init__(self, output_dir: Path, *, process: str, purpose: str, metrics: Metrics | None = None,
                 clock: Clock | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.process = process
        self.purpose = purpose
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.path: Path | None = None
        self.checkpoint: Checkpoint | None = None   # the last one seen (the report's fallback)
        self._file: IO[str] | None = None
        self._failed = False
        self._seen: dict[str, _Seen] = {}
        self._nodes: tuple[NodeRecord, ...] | None = None   # the records last looked at
        self._run_phase: str | None = None
        self._findings: list[dict[str, Any]] | None = None
        self._counters: dict[str, Any] | None = None
        self._counted_at: datetime | None = None

    # ------------------------------------------------------------------ the runner's hook
    def turn(self, cp: Checkpoint | None, results: tuple[ActionResult, ...] = (),
             obs: ClusterObservation | None = None) -> None:
        """Record what changed in this turn: phases, waves, probes, rollbacks, pods, findings, counters.

        Never raises: an account of the run that fails stops being written (logged once), and
        the migration goes on."""
        if cp is None or self._failed:
            return
        try:
            self._turn(cp, results, obs)
        except Exception as exc:  # noqa: BLE001 - the timeline must never stop a migration
            log.warning("report.timeline_failed", error=f"{type(exc).__name__}: {exc}"[:200])
            self.close()
            self._failed = True

    def _turn(self, cp: Checkpoint, results: tuple[ActionResult, ...], obs: ClusterObservation | None) -> None:
        self.checkpoint = cp
        if self._file is None and not self._open(cp):
            return
        now = self.clock.now().isoformat()
        if cp.run_phase.value != self._run_phase:
            self._write({"kind": "run-phase", "t": now, "phase": cp.run_phase.value, "previous": self._run_phase,
                         "halted": cp.halted})
            self._run_phase = cp.run_phase.value
        started: list[str] = []
        changed = changed_records(self._nodes, cp.nodes)
        self._nodes = cp.nodes
        for record in changed:
            seen = self._seen.get(record.name)
            current = _Seen.of(record)
            if seen == current:
                continue
            if seen is None or seen.phase != current.phase:
                self._write({"kind": "phase", "t": now, "node": record.name, "phase": current.phase,
                             "previous": seen.phase if seen else None, "attempt": record.attempt,
                             "since": record.phase_started_at.isoformat() if record.phase_started_at else None,
                             "error": record.last_error})
            if seen is not None and record.phase != NodePhase.PENDING and (
                    seen.phase == NodePhase.PENDING.value or current.attempt > seen.attempt):
                started.append(record.name)
            if current.probes and (seen is None or seen.probes != current.probes):
                self._write({"kind": "probe", "t": now, "node": record.name, "result": current.probes})
            if current.rollback_reason and (seen is None or seen.rollback_reason != current.rollback_reason):
                self._write({"kind": "rollback", "t": now, "node": record.name, "reason": current.rollback_reason})
            self._seen[record.name] = current
        if started:
            self._write({"kind": "wave", "t": now, "nodes": started})
        self._pods(results, obs, now)
        if obs is not None and obs.findings is not None:
            skipped = {s.check for s in cp.skipped_checks}
            findings = [_finding(f, skipped) for f in obs.findings]
            if findings != self._findings:
                self._write({"kind": "findings", "t": now, "findings": findings, "skipped": sorted(skipped)})
                self._findings = findings
        self._count(now, final=False)

    def end(self, code: int, message: str, cp: Checkpoint | None) -> None:
        """The process stops: its last counters and how it ended."""
        if cp is not None:
            self.turn(cp)
        if self._file is None:
            return
        now = self.clock.now().isoformat()
        self._count(now, final=True)
        self._write({"kind": "end", "t": now, "process": self.process, "code": int(code), "message": message})
        self.close()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None

    # ------------------------------------------------------------------ helpers
    def _pods(self, results: tuple[ActionResult, ...], obs: ClusterObservation | None, now: str) -> None:
        owners: dict[str, str] = {}
        if obs is not None:
            for pod in obs.pods:
                if pod.owner_kind and pod.owner_name:
                    owners[pod.uid] = f"{pod.owner_kind}/{pod.namespace}/{pod.owner_name}"
        for result in results:
            action = result.action
            if action.kind not in ("evict-pod", "delete-pod"):
                continue
            uid = getattr(action, "uid", "")
            verb = "evict" if action.kind == "evict-pod" else f"delete ({getattr(action, 'reason', '')})"
            self._write({"kind": "pod", "t": now, "node": action.node, "action": verb,
                         "pod": f"{getattr(action, 'namespace', '')}/{getattr(action, 'name', '')}",
                         "workload": owners.get(uid), "outcome": "ok" if result.ok else (result.error_kind or "Error"),
                         "message": "" if result.ok else result.message[:240]})

    def _count(self, now: str, *, final: bool) -> None:
        if self.metrics is None or self._file is None:
            return
        at = datetime.fromisoformat(now)
        if not final and self._counted_at is not None and (at - self._counted_at).total_seconds() < COUNTERS_EVERY:
            return
        counters = _counters(self.metrics)
        if counters != self._counters:
            self._write({"kind": "counters", "t": now, "process": self.process, **counters})
            self._counters = counters
            self._counted_at = at

    def _open(self, cp: Checkpoint) -> bool:
        if self._failed:
            return False
        path = timeline_path(self.output_dir, cp.run_id)
        previous = read_timeline([path]) if path.exists() else TimelineRead()
        for record in previous.records:   # a resume in the same directory goes on from there
            if record["kind"] == "phase" and isinstance(record.get("node"), str):
                known = self._seen.get(record["node"])
                self._seen[record["node"]] = _Seen(str(record.get("phase")), int(record.get("attempt") or 0),
                                                   known.probes if known else None,
                                                   known.rollback_reason if known else None)
            elif record["kind"] == "probe" and record.get("node") in self._seen:
                node = record["node"]
                self._seen[node] = _Seen(self._seen[node].phase, self._seen[node].attempt, record.get("result"),
                                         self._seen[node].rollback_reason)
            elif record["kind"] == "rollback" and record.get("node") in self._seen:
                node = record["node"]
                self._seen[node] = _Seen(self._seen[node].phase, self._seen[node].attempt, self._seen[node].probes,
                                         record.get("reason"))
            elif record["kind"] == "run-phase":
                self._run_phase = record.get("phase")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:
            self._failed = True
            log.warning("report.timeline_unwritable", path=str(path), error=str(exc)[:200])
            return False
        self.path = path
        self._write({"kind": "session", "t": self.clock.now().isoformat(), "run_id": cp.run_id,
                     "process": self.process, "purpose": self.purpose, "plan": cp.plan_name})
        return True

    def _write(self, record: dict[str, Any]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n")
            self._file.flush()
        except OSError as exc:
            log.warning("report.timeline_write_failed", path=str(self.path), error=str(exc)[:200])
            self.close()
            self._failed = True
