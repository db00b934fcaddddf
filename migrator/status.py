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
    lines = [head, "", f"{'NODE':{width}}  {'PHASE':15} {'ATTEMPT':7} {'SINCE':6} STEP / LAST ERROR"]
    for r in cp.nodes:
        step = r.intent.step if r.intent is not None else ""
        note = r.last_error or step
        lines.append(f"{r.name:{width}}  {r.phase.value:15} {r.attempt:<7} {_ago(r.phase_started_at, now):6} {note}")
    return "\n".join(lines)
