"""The report's facts (``RunReport``) and how they are gathered from a run's sources.

One model feeds both renderings: ``report.json`` is ``RunReport`` itself, ``report.html`` draws
it (``migrator.report.html``), so the two cannot disagree. ``gather`` combines:

- the checkpoint (read from the cluster by ``migrator report``, or the runner's last one when a
  run ends): each node's final phase, attempt, last error, probe outcome, rollback reason and
  audit notes, the run's phase, halt reason, canary outcome, skipped checks and audit;
- the timeline file(s) (``migrator.report.timeline``): the phase history behind the chart,
  waves, evictions and deletions per workload, probe outcomes over time, rollbacks, the
  preflight findings of the run, and the API counters of each process. A node the timeline
  does not cover is drawn from its current phase only, and the report says so;
- the plan, as given.

Kubernetes Events are not read: the run emits one per node transition, but they are the same
facts as the timeline's ``phase`` records and expire an hour after they are written.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from migrator.model.checkpoint import Checkpoint
from migrator.model.plan import MigrationPlan
from migrator.model.states import NodePhase
from migrator.report.timeline import TimelineRead

FORMAT_VERSION = 1
#: Actions that send nothing to the API server (the final Helm values file).
LOCAL_ACTIONS = frozenset({"write-file"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Segment(_Model):
    """A stretch of time a node (or the run) spent in one phase."""

    phase: str = Field(description="The phase.")
    start: datetime = Field(description="When the phase began.")
    end: datetime = Field(description="When the next phase began, or the report's end time.")


class NodeReport(_Model):
    """One node of the run."""

    name: str = Field(description="Node name.")
    phase: str = Field(description="Final (current) phase, from the checkpoint.")
    attempt: int = Field(description="How many times the node was started.")
    last_error: str | None = Field(default=None, description="Last error recorded for the node.")
    probes: str | None = Field(default=None, description="Outcome of its last connectivity gate.")
    rollback_reason: str | None = Field(default=None, description="Why it was rolled back, if it was.")
    audit: tuple[str, ...] = Field(default=(), description="The node's audit notes.")
    segments: tuple[Segment, ...] = Field(default=(), description="Its phases over time.")
    history: bool = Field(description="True when the timeline covers the node; False: current phase only.")


class Wave(_Model):
    """The nodes one decision started."""

    number: int = Field(description="1 for the first wave of the run.")
    at: datetime = Field(description="When the nodes were started.")
    nodes: tuple[str, ...] = Field(description="The nodes started.")


class PodAction(_Model):
    """Evictions or deletions of one workload's pods with one outcome."""

    workload: str = Field(description="Kind/namespace/name of the controller, or 'bare pod'.")
    action: str = Field(description="evict, or delete (why).")
    outcome: str = Field(description="ok, or the error kind (DisruptionBudgetBlocked: refused by a PDB).")
    count: int = Field(description="How many requests.")
    pods: int = Field(description="How many distinct pods.")
    nodes: tuple[str, ...] = Field(description="Nodes the pods ran on.")


class ProbeResult(_Model):
    """A node's connectivity gate outcome."""

    node: str = Field(description="Node name.")
    at: datetime | None = Field(default=None, description="When the outcome was recorded (timeline only).")
    result: str = Field(description="The outcome as the checkpoint records it.")


class Rollback(_Model):
    """A node rolled back, or rolling back."""

    node: str = Field(description="Node name.")
    at: datetime | None = Field(default=None, description="When the reason was recorded (timeline only).")
    reason: str = Field(description="Why.")
    phase: str = Field(description="The node's final phase.")


class ApiCount(_Model):
    """Actions of one kind with one outcome; each is one API request, its retries counted apart."""

    kind: str = Field(description="Action kind, e.g. evict-pod.")
    outcome: str = Field(description="ok, or the error kind.")
    count: int = Field(description="How many, over every process of the run the timeline covers.")


class ApiSummary(_Model):
    """What the run sent to the API server, from the processes' own counters."""

    recorded: bool = Field(description="False when no process recorded counters (no timeline).")
    processes: int = Field(description="Processes whose counters are summed (run, resume, ...).")
    actions: tuple[ApiCount, ...] = Field(default=(), description="Write requests by action kind and outcome.")
    retries: int = Field(default=0, description="Requests retried after a transient error (429, 5xx, timeout).")
    outages: int = Field(default=0, description="Episodes of the API server unavailable that the run waited out.")
    unavailable_seconds: float = Field(default=0.0, description="Seconds spent waiting for the API server.")
    probe_checks: dict[str, int] = Field(default_factory=dict, description="Probe checks by purpose/outcome.")


class FindingRow(_Model):
    """A preflight finding of the run."""

    check: str = Field(description="Check ID.")
    severity: str = Field(description="blocking, warning or info.")
    message: str = Field(description="What was found.")
    fix_command: str = Field(default="", description="The command that fixes it.")
    skipped: bool = Field(default=False, description="A blocking finding run past with --skip-check.")


class Overview(_Model):
    """The run at a glance."""

    run_id: str = Field(description="Run identifier (stable across resumes).")
    plan_name: str = Field(description="Plan name.")
    plan_hash: str = Field(description="Identity of the run's plan.")
    run_phase: str = Field(description="The run's phase in the checkpoint.")
    outcome: str = Field(description="How the run stands, in a line.")
    started_at: datetime = Field(description="When the run began.")
    ended_at: datetime = Field(description="The last moment the report knows of.")
    halted: str | None = Field(default=None, description="Why the run halted, if it did.")
    canary: str | None = Field(default=None, description="Canary outcome and reason, for a canary run.")
    counts: dict[str, int] = Field(description="Nodes by final phase.")
    audit: tuple[str, ...] = Field(default=(), description="The run's audit notes.")


class RunReport(_Model):
    """Everything the report shows (``-o report.json`` is this model)."""

    format_version: int = Field(default=FORMAT_VERSION, description="Version of this layout.")
    generated_at: datetime = Field(description="When the report was made.")
    overview: Overview = Field(description="The run at a glance.")
    run_segments: tuple[Segment, ...] = Field(default=(), description="The run's phases over time.")
    nodes: tuple[NodeReport, ...] = Field(description="Every node of the run, in run order.")
    waves: tuple[Wave, ...] = Field(default=(), description="Nodes started together, in order.")
    pods: tuple[PodAction, ...] = Field(default=(), description="Evictions and deletions per workload.")
    probes: tuple[ProbeResult, ...] = Field(default=(), description="Gate outcomes (over time with a timeline).")
    rollbacks: tuple[Rollback, ...] = Field(default=(), description="Rollbacks and their reasons.")
    api: ApiSummary = Field(description="API requests, retries and outages.")
    findings: tuple[FindingRow, ...] = Field(default=(), description="The run's preflight findings.")
    findings_recorded: bool = Field(description="False when no timeline recorded the run's findings.")
    plan_yaml: str = Field(description="The plan, as YAML.")
    sources: tuple[str, ...] = Field(description="Where the facts come from.")
    notes: tuple[str, ...] = Field(default=(), description="What is missing or uncertain, in plain words.")


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _segments(points: list[tuple[datetime, str]], end: datetime) -> tuple[Segment, ...]:
    """Consecutive phases from (start, phase) points; repeats of the same phase merge."""
    points = sorted(points, key=lambda p: p[0])
    merged: list[tuple[datetime, str]] = []
    for at, phase in points:
        if merged and merged[-1][1] == phase:
            continue
        merged.append((at, phase))
    out = []
    for index, (at, phase) in enumerate(merged):
        stop = merged[index + 1][0] if index + 1 < len(merged) else max(end, at)
        out.append(Segment(phase=phase, start=at, end=stop))
    return tuple(out)


def _outcome(cp: Checkpoint, ended: dict[str, Any] | None) -> str:
    if cp.canary is not None and cp.canary.outcome != "soaking":
        return f"canary {cp.canary.outcome}" + (f": {cp.canary.reason}" if cp.canary.reason else "")
    if cp.halted:
        return f"{cp.run_phase.value}, halted: {cp.halted}"
    if ended is not None and ended.get("message"):
        return f"{cp.run_phase.value}: {ended['message']} (exit {ended.get('code')})"
    return cp.run_phase.value


def gather(cp: Checkpoint, plan: MigrationPlan, timeline: TimelineRead, *, now: datetime,
           checkpoint_source: str, notes: tuple[str, ...] = ()) -> RunReport:
    """The report of ``cp``'s run from the checkpoint, the plan and the timeline records of that run."""
    records = [r for r in timeline.records if _time(r["t"]) is not None]
    sessions = [r for r in records if r["kind"] == "session"]
    other_runs = {r.get("run_id") for r in sessions} - {cp.run_id}
    if other_runs:   # a timeline of another run of this plan: keep only this run's sessions
        keep, mine = [], False
        for r in records:
            if r["kind"] == "session":
                mine = r.get("run_id") == cp.run_id
            if mine:
                keep.append(r)
        records = keep
    notes_list = list(timeline.problems) + list(notes)
    if other_runs:
        notes_list.append(f"timeline records of other runs ({', '.join(sorted(map(str, other_runs)))}) were left out")
    ends = [r for r in records if r["kind"] == "end"]
    last_end = ends[-1] if ends else None
    times = [t for r in records if (t := _time(r["t"])) is not None]
    candidates = [cp.started_at, *([cp.updated_at] if cp.updated_at else []), *times]
    end_time = max(candidates)

    # phases over time
    points: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    run_points: list[tuple[datetime, str]] = []
    for r in records:
        at = _time(r["t"]) or end_time
        if r["kind"] == "phase" and isinstance(r.get("node"), str):
            # a node's first record in a fresh timeline (``previous`` null) may come late: its phase
            # began at ``since`` (whole seconds, from the checkpoint)
            since = _time(r.get("since")) if r.get("previous") is None else None
            points[r["node"]].append((min(at, since) if since else at, str(r.get("phase"))))
        elif r["kind"] == "run-phase":
            run_points.append((at, str(r.get("phase"))))
    nodes = []
    uncovered = []
    for record in cp.nodes:
        history = record.name in points
        node_points = list(points.get(record.name, ()))
        if not history:
            uncovered.append(record.name)
            node_points = [(record.phase_started_at or cp.started_at, record.phase.value)]
        elif (last := max(node_points, key=lambda p: p[0]))[1] != record.phase.value:
            # the checkpoint moved on after the timeline's last word (a turn whose hook never ran)
            node_points.append((max(record.phase_started_at or end_time, last[0]), record.phase.value))
        nodes.append(NodeReport(name=record.name, phase=record.phase.value, attempt=record.attempt,
                                last_error=record.last_error, probes=record.probes,
                                rollback_reason=record.rollback_reason, audit=record.audit,
                                segments=_segments(node_points, end_time), history=history))
    if not run_points:
        run_points = [(cp.run_phase_started_at or cp.started_at, cp.run_phase.value)]

    waves = tuple(Wave(number=i, at=_time(r["t"]) or end_time, nodes=tuple(map(str, r.get("nodes") or ())))
                  for i, r in enumerate((r for r in records if r["kind"] == "wave"), start=1))

    # evictions and deletions per workload
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["kind"] == "pod":
            key = (str(r.get("workload") or "bare pod"), str(r.get("action")), str(r.get("outcome")))
            groups[key].append(r)
    pods = tuple(PodAction(workload=w, action=a, outcome=o, count=len(rows), pods=len({x.get("pod") for x in rows}),
                           nodes=tuple(sorted({str(x.get("node")) for x in rows if x.get("node")})))
                 for (w, a, o), rows in sorted(groups.items()))

    probe_rows = [ProbeResult(node=str(r["node"]), at=_time(r["t"]), result=str(r.get("result")))
                  for r in records if r["kind"] == "probe" and isinstance(r.get("node"), str)]
    recorded_probe = {(p.node, p.result) for p in probe_rows}
    probe_rows += [ProbeResult(node=n.name, result=n.probes) for n in cp.nodes
                   if n.probes and (n.name, n.probes) not in recorded_probe]

    final = {n.name: n.phase.value for n in cp.nodes}
    rollbacks = [Rollback(node=str(r["node"]), at=_time(r["t"]), reason=str(r.get("reason")),
                          phase=final.get(str(r["node"]), "?"))
                 for r in records if r["kind"] == "rollback" and isinstance(r.get("node"), str)]
    seen_rb = {(r.node, r.reason) for r in rollbacks}
    rollbacks += [Rollback(node=n.name, reason=n.rollback_reason, phase=n.phase.value) for n in cp.nodes
                  if n.rollback_reason and (n.name, n.rollback_reason) not in seen_rb]

    api = _api(records)
    findings_records = [r for r in records if r["kind"] == "findings"]
    findings: tuple[FindingRow, ...] = ()
    if findings_records:
        findings = tuple(FindingRow.model_validate(f) for f in findings_records[-1].get("findings") or ())

    if not records:
        notes_list.append("no timeline of this run was found: the chart and tables show the checkpoint's "
                          "current state only (no phase history, waves, evictions, findings or API counts)")
    elif uncovered:
        notes_list.append(f"{len(uncovered)} node(s) are not in the timeline and are drawn from their current "
                          f"phase only: {', '.join(uncovered[:20])}{' …' if len(uncovered) > 20 else ''}")
    if records and not findings_records:
        notes_list.append("the timeline holds no preflight findings (the run's PREFLIGHT phase ran before it "
                          "was recorded, or in another output directory)")
    if records and not last_end and not cp.run_phase.terminal:
        notes_list.append("no process recorded its end: the run may still be going, or its process was killed")

    sources = [checkpoint_source] + [f"timeline {f}" for f in timeline.files] + ["plan"]
    counts = Counter(n.phase.value for n in cp.nodes)
    overview = Overview(
        run_id=cp.run_id, plan_name=cp.plan_name, plan_hash=cp.plan_hash, run_phase=cp.run_phase.value,
        outcome=_outcome(cp, last_end), started_at=cp.started_at, ended_at=end_time, halted=cp.halted,
        canary=(f"{cp.canary.outcome}" + (f": {cp.canary.reason}" if cp.canary.reason else "")) if cp.canary else None,
        counts={p.value: counts[p.value] for p in NodePhase if counts.get(p.value)}, audit=cp.audit)
    return RunReport(
        generated_at=now, overview=overview, run_segments=_segments(run_points, end_time), nodes=tuple(nodes),
        waves=waves, pods=pods, probes=tuple(probe_rows), rollbacks=tuple(rollbacks), api=api,
        findings=findings, findings_recorded=bool(findings_records),
        plan_yaml=yaml.safe_dump(plan.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
        sources=tuple(sources), notes=tuple(notes_list))


def _api(records: list[dict[str, Any]]) -> ApiSummary:
    """The counters of each process (its last record; they are cumulative per process), summed."""
    last: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["kind"] == "counters":
            last[str(r.get("process"))] = r
    if not last:
        return ApiSummary(recorded=False, processes=0)
    actions: Counter[tuple[str, str]] = Counter()
    probes: Counter[str] = Counter()
    retries = outages = 0
    seconds = 0.0
    for r in last.values():
        for key, value in (r.get("actions") or {}).items():
            kind, _, outcome = str(key).partition("/")
            if kind not in LOCAL_ACTIONS:
                actions[(kind, outcome)] += int(value)
        for key, value in (r.get("probe_checks") or {}).items():
            probes[str(key)] += int(value)
        retries += int(r.get("retries") or 0)
        outages += int(r.get("outages") or 0)
        seconds += float(r.get("unavailable_seconds") or 0.0)
    return ApiSummary(recorded=True, processes=len(last),
                      actions=tuple(ApiCount(kind=k, outcome=o, count=c) for (k, o), c in sorted(actions.items())),
                      retries=retries, outages=outages, unavailable_seconds=round(seconds, 1),
                      probe_checks=dict(sorted(probes.items())))
