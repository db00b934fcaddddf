"""``canary_step``: migrate the plan's (canary) nodes, soak under continuous probes, then
keep or roll back by policy.

The forward run is ``forward_step`` unchanged. Once every node is done the run soaks
(``SOAKING``) for ``canary.soak`` with sampling rounds over the whole cluster; then, with
``on_success: keep``, the run goes back to ``NODES_DONE`` with the outcome ``kept``, and with
``on_success: rollback`` (a rehearsal) it rolls everything back. A failure — a sampled pair
failing during the soak, a node rolled back by its gate, any halt of the forward run — rolls
everything back and ends ``failed``. The outcome is in the checkpoint (``canary``) and in the
exit code (0 kept or rehearsed, 1 failed).
"""

from __future__ import annotations

from datetime import datetime

from migrator.engine.forward import Step, forward_step, run_move, sample_round
from migrator.engine.oncall import rollback_run_step
from migrator.model.checkpoint import CanaryState, Checkpoint, RollbackRequest, truncate_error
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.states import RunPhase

CANARY_BY = "migrator canary"


def _roll_back(cp: Checkpoint, now: datetime, outcome: str, reason: str) -> Checkpoint:
    request = RollbackRequest(all=True, requested_at=now, by=CANARY_BY, reason=f"canary {outcome}: {reason}")
    canary = (cp.canary or CanaryState()).model_copy(update={"outcome": outcome, "reason": truncate_error(reason)})
    return cp.model_copy(update={"rollback": request, "canary": canary, "halted": None})


def canary_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime) -> Step:
    """The next step of a canary run (see the module docstring)."""
    assert plan.canary is not None, "migrator canary needs a plan with a canary section"
    if cp.rollback is not None:
        return rollback_run_step(plan, cp, obs, now)
    if cp.halted is not None:
        halted = cp.halted
        return (_roll_back(cp, now, "failed", halted), [], [f"canary failed ({halted}); rolling every canary node back"],
                now)
    if cp.run_phase is RunPhase.SOAKING:
        return _soak(plan, cp, obs, now)
    cp, actions, notes, wake = forward_step(plan, cp, obs, now)
    if cp.halted is not None:
        halted = cp.halted
        return (_roll_back(cp, now, "failed", halted), actions,
                [f"canary failed ({halted}); rolling every canary node back"], now)
    if cp.run_phase is RunPhase.NODES_DONE and cp.canary is None:
        cp = run_move(cp, RunPhase.SOAKING, now).model_copy(update={
            "canary": CanaryState(soak_until=now + plan.canary.soak),
            "sampling": cp.sampling.model_copy(update={"failures": (), "last_at": None})})
        return cp, actions, [f"canary nodes migrated; soaking for {format_duration(plan.canary.soak)}"], now
    return cp, actions, notes, wake


def _soak(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime) -> Step:
    assert plan.canary is not None
    canary = cp.canary or CanaryState(soak_until=now)
    if cp.sampling.failures:
        cp = _roll_back(cp, now, "failed", "pairs failed during the soak: " + "; ".join(cp.sampling.failures[:3]))
        return cp, [], ["canary failed during the soak; rolling back"], now
    if canary.soak_until is not None and now >= canary.soak_until:
        if plan.canary.on_success == "keep":
            cp = run_move(cp, RunPhase.NODES_DONE, now).model_copy(update={"canary": canary.model_copy(update={
                "outcome": "kept", "reason": "soak passed with every sample answered"})})
            return cp, [], ["canary soak passed: the canary nodes stay on Cilium"], None
        cp = _roll_back(cp, now, "rolled-back", "soak passed; canary.on_success is rollback (rehearsal)")
        return cp, [], ["canary soak passed; rolling back as the plan asks"], now
    cp, actions, wake = sample_round(plan, cp, obs, now, frozenset())
    moments = [t for t in (wake, canary.soak_until) if t is not None]
    left = (canary.soak_until - now).total_seconds() if canary.soak_until else 0
    return cp, list(actions), [f"soaking: {int(left)}s left, {cp.sampling.rounds} sampling rounds"], \
        min(moments, default=None)
