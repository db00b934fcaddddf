"""Render a run's checkpoint for people (table, summary) and for tools (JSON, YAML)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import yaml

from migrator.model.checkpoint import Checkpoint, render_summary


def status_data(cp: Checkpoint) -> dict[str, Any]:
    data = cp.model_dump(mode="json", exclude_none=True)
    data["counts"] = {phase.value: n for phase, n in cp.counts().items()}
    return data


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "-"
    secs = int((now - moment).total_seconds())
    return f"{secs}s" if secs < 120 else (f"{secs // 60}m" if secs < 7200 else f"{secs // 3600}h")


def render_status(cp: Checkpoint, fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps(status_data(cp), indent=2)
    if fmt == "yaml":
        return yaml.safe_dump(status_data(cp), sort_keys=False)
    head = render_summary(cp).rsplit("\nnode lines:", 1)[0].rstrip()
    if fmt == "summary":
        return head
    now = datetime.now(UTC)
    width = max([len(r.name) for r in cp.nodes] + [4])
    if cp.rollback is not None:
        head += f"\nrollback: {'--all' if cp.rollback.all else ', '.join(cp.rollback.nodes)} by {cp.rollback.by}"
    if cp.canary is not None:
        head += f"\ncanary: {cp.canary.outcome}" + (f" ({cp.canary.reason})" if cp.canary.reason else "")
    if cp.skipped_checks:
        head += "\nskipped checks: " + ", ".join(f"{s.check} (by {s.by})" for s in cp.skipped_checks)
    if cp.sampling.failures:
        head += "\nsample failures: " + "; ".join(cp.sampling.failures[:3])
    lines = [head, "", f"{'NODE':{width}}  {'PHASE':15} {'ATTEMPT':7} {'SINCE':6} {'PROBES':12} STEP / LAST ERROR"]
    for r in cp.nodes:
        step: str = r.intent.step if r.intent is not None else ""
        if r.intent is not None and r.intent.stage:
            step += f" ({r.intent.stage})"
        note = r.last_error or r.rollback_reason or step
        probes = (r.probes or "-").split(":", 1)[0][:12]
        lines.append(f"{r.name:{width}}  {r.phase.value:15} {r.attempt:<7} {_ago(r.phase_started_at, now):6} "
                     f"{probes:12} {note}")
    return "\n".join(lines)
