"""The run report: one self-contained HTML page (or the same facts as JSON) for a person after a run.

Where its facts come from (details in ``data.py``):

- **the checkpoint** — each node's final phase, attempt, last error, gate outcome, rollback
  reason and audit; the run's phase, halt, canary outcome and audit. ``migrator report`` reads it
  from the cluster; when a run ends, the runner uses the one it holds. It keeps no history, and
  must not (it has to stay small at 5,000 nodes).
- **the timeline file** (``timeline.py``, ``migrator-timeline-<run id>.jsonl`` in ``--output-dir``)
  — appended by the runner at each turn: node and run phase transitions, waves, evictions and
  deletions with the workload they belong to, gate outcomes, rollbacks, the preflight findings of
  the run's PREFLIGHT phase, and each process's API counters (actions by kind and outcome,
  retries, outages, from its metrics). Without it the report shows the current state only and
  says so.
- **the plan** as given.

Kubernetes Events are not read: they repeat the timeline's phase transitions and expire after
an hour on a real cluster (and the port has no call to list them). API requests are the
process's own metrics: each action the engine asked for is one write request, retries are
counted apart; checkpoint saves, lease renewals and reads served by the watch cache are not
counted (the port keeps no per-call count).

When ``run``, ``resume``, ``canary``, ``rollback`` or ``finalize`` ends, the runner writes
``migrator-report-<run id>.html`` into ``--output-dir`` (``write_run_report``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from migrator.model.checkpoint import Checkpoint
from migrator.model.plan import MigrationPlan
from migrator.report.data import RunReport, gather
from migrator.report.html import render_html
from migrator.report.timeline import TimelineRead, read_timeline, timeline_path

REPORT_PREFIX = "migrator-report-"


def report_path(directory: Path, run_id: str, fmt: str = "html") -> Path:
    """Where the report of run ``run_id`` goes in ``directory``."""
    return Path(directory) / f"{REPORT_PREFIX}{run_id}.{fmt}"


def render(report: RunReport, fmt: str) -> str:
    """``report`` as ``html`` or ``json``."""
    if fmt == "json":
        return report.model_dump_json(indent=2) + "\n"
    return render_html(report)


def build(cp: Checkpoint, plan: MigrationPlan, *, timelines: list[Path] | None, output_dir: Path,
          now: datetime, checkpoint_source: str) -> RunReport:
    """The report of ``cp``'s run: the timeline files named, else the one in ``output_dir``."""
    notes: list[str] = []
    if timelines:
        read = read_timeline(timelines)
    else:
        path = timeline_path(output_dir, cp.run_id)
        if path.exists():
            read = read_timeline([path])
        else:
            read = TimelineRead()
            notes.append(f"no timeline file {path.name} in {output_dir} (pass --timeline FILE or the run's "
                         "--output-dir)")
    return gather(cp, plan, read, now=now, checkpoint_source=checkpoint_source, notes=tuple(notes))


def write_run_report(cp: Checkpoint, plan: MigrationPlan, *, output_dir: Path, now: datetime) -> Path:
    """Write the HTML report of ``cp``'s run into ``output_dir`` (when a run ends); its path."""
    report = build(cp, plan, timelines=None, output_dir=output_dir, now=now,
                   checkpoint_source="checkpoint held by the run when it ended")
    path = report_path(output_dir, cp.run_id)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(report, "html"), encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["RunReport", "build", "render", "report_path", "write_run_report"]
