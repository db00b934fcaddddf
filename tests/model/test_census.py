"""The census a checkpoint derives after replacing some records equals the census of its records
counted afresh, through many random record changes."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from migrator.model.checkpoint import Census, Checkpoint, Intent, NodeRecord
from migrator.model.states import NodePhase

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record(rng: random.Random, name: str) -> NodeRecord:
    phase = rng.choice(list(NodePhase))
    intent = None if phase.terminal or rng.random() < 0.3 else Intent(
        step="drain", pods=tuple(f"{name}-{i}" for i in range(rng.randint(0, 2))))
    return NodeRecord(name=name, phase=phase, intent=intent, attempt=1 if phase is not NodePhase.PENDING else 0)


def test_an_updated_census_equals_one_counted_afresh() -> None:
    rng = random.Random(5)
    names = [f"node-{i}" for i in range(12)]
    cp = Checkpoint(plan_name="p", plan_hash="h", run_id="r", started_at=T0, nodes=tuple(NodeRecord(name=n) for n in names))
    for _ in range(200):
        cp = cp.with_nodes({n: _record(rng, n) for n in rng.sample(names, rng.randint(1, 4))})
        kept, fresh = cp.census, Census.of(cp.nodes)
        assert (kept.in_flight, kept.not_started, kept.counts, kept.evicting) == \
            (fresh.in_flight, fresh.not_started, fresh.counts, fresh.evicting)
    assert fresh.evicting and fresh.evicting == {r.name for r in cp.nodes if r.intent and r.intent.pods}
