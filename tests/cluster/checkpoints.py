"""A small, realistic checkpoint for the store tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord, PriorNodeState
from migrator.model.states import NodePhase, RunPhase

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sample_checkpoint() -> Checkpoint:
    return Checkpoint(
        plan_name="example", plan_hash="abc123", run_id="run-1", run_phase=RunPhase.MIGRATING,
        started_at=START,
        nodes=(
            NodeRecord(name="node-1", phase=NodePhase.DONE, attempt=1,
                       phase_started_at=START + timedelta(minutes=3),
                       prior=PriorNodeState(unschedulable=False)),
            NodeRecord(name="node-2", phase=NodePhase.CORDONED, attempt=1,
                       phase_started_at=START + timedelta(minutes=4),
                       intent=Intent(step="drain", pods=("uid-a",)),
                       prior=PriorNodeState(unschedulable=False)),
            NodeRecord(name="node-3"),
        ),
    )
