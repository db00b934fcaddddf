"""``decide_canary``: migrate the plan's (canary) nodes, soak under continuous probes, then
keep or roll back by policy.

The forward run is ``decide`` unchanged. Once every node is done the run soaks
(``SOAKING``) for ``canary.soak`` with sampling rounds over the whole cluster; then, with
``on_success: keep``, the run goes back to ``NODES_DONE`` with the outcome ``kept``, and with
``on_success: rollback`` (a rehearsal) it rolls everything back. A failure — a sampled pair
failing during the soak, a node rolled back by its gate, any halt of the forward run — rolls
everything back and ends ``failed``; a halt before anything changed (a blocking preflight
finding) ends the run ABORTED and ``failed``, with nothing to roll back. The outcome is in the
checkpoint (``canary``) and in the exit code (0 kept or rehearsed, 1 failed).
"""

from __future__ import annotations

from datetime import datetime

from migrator.engine.actions import Action
from migrator.engine.decide import Decision, decide, sample_round
from migrator.engine.oncall import decide_rollback
from migrator.engine.preflight_gate import end_canary, halted_in_preflight
from migrator.engine.states import RunPhase
from migrator.engine.table import check_run_move
from migrator.model.checkpoint import CanaryState, Checkpoint, RollbackRequest, truncate_error, utc
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration

CANARY_BY = "migrator canary"


def _roll_back(cp: Checkpoint, now: datetime, outcome: str, reason: str) -> Checkpoint:
    request = RollbackRequest(all=True, requested_at=now, by=CANARY_BY, reason=f"canary {outcome}: {reason}")
    canary = (cp.canary or CanaryState()).model_copy(update={"outcome": outcome, "reason": truncate_error(reason)})
    return cp.model_copy(update={"rollback": request, "canary": canary, "halted": None})


def decide_canary(plan: MigrationPlan, checkpoint: Checkpoint, obs: ClusterObservation,
                  now: datetime) -> Decision:
    """The next step of a canary run (see the module docstring)."""
    assert plan.canary is not None, "migrator canary needs a plan with a canary section"
    now = utc(now)
    cp = checkpoint
    if cp.rollback is not None:
        return decide_rollback(plan, cp, obs, now)
    if cp.run_phase is RunPhase.SOAKING:
        return _soak(plan, checkpoint, obs, now)
    decision = decide(plan, cp, obs, now)
    cp = decision.checkpoint
    if halted_in_preflight(cp):  # nothing was changed: no rollback, the canary ends here
        return Decision(end_canary(cp, now), decision.actions, f"canary failed before any change: {cp.halted}", True)
    if cp.halted is not None:
        halted = cp.halted
        cp = _roll_back(cp, now, "failed", halted)
        return Decision(cp, decision.actions, f"canary failed ({halted}); rolling every canary node back", True)
    if cp.run_phase is RunPhase.NODES_DONE and cp.canary is None:
        check_run_move(cp.run_phase, RunPhase.SOAKING)
        cp = cp.model_copy(update={"run_phase": RunPhase.SOAKING, "run_phase_started_at": now,
                                   "canary": CanaryState(soak_until=now + plan.canary.soak),
                                   "sampling": cp.sampling.model_copy(update={"failures": (), "last_at": None})})
        return Decision(cp, decision.actions, f"canary nodes migrated; soaking for "
                        f"{format_duration(plan.canary.soak)}", True, now)
    return decision


def _soak(plan: MigrationPlan, checkpoint: Checkpoint, obs: ClusterObservation, now: datetime) -> Decision:
    assert plan.canary is not None
    cp = checkpoint
    canary = cp.canary or CanaryState(soak_until=now)
    if cp.sampling.failures:
        cp = _roll_back(cp, now, "failed", "pairs failed during the soak: " + "; ".join(cp.sampling.failures[:3]))
        return Decision(cp, (), "canary failed during the soak; rolling back", True, now)
    if canary.soak_until is not None and now >= canary.soak_until:
        if plan.canary.on_success == "keep":
            check_run_move(cp.run_phase, RunPhase.NODES_DONE)
            cp = cp.model_copy(update={"run_phase": RunPhase.NODES_DONE, "run_phase_started_at": now,
                                       "canary": canary.model_copy(update={
                                           "outcome": "kept", "reason": "soak passed with every sample answered"})})
            return Decision(cp, (), "canary soak passed: the canary nodes stay on Cilium", True)
        cp = _roll_back(cp, now, "rolled-back", "soak passed; canary.on_success is rollback (rehearsal)")
        return Decision(cp, (), "canary soak passed; rolling back as the plan asks", True, now)
    cp, actions, wake = sample_round(plan, cp, obs, now, frozenset())
    moments = [t for t in (wake, canary.soak_until) if t is not None]
    left = (canary.soak_until - now).total_seconds() if canary.soak_until else 0
    more: list[Action] = list(actions)
    return Decision(cp, tuple(more), f"soaking: {int(left)}s left, {cp.sampling.rounds} sampling rounds",
                    cp != checkpoint, min(moments, default=None))


def canary_exit_ok(cp: Checkpoint) -> bool:
    """True when the canary passed (kept, or rolled back by policy after passing)."""
    return cp.canary is not None and cp.canary.outcome in ("kept", "rolled-back")
