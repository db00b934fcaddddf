"""``canary_step``: migrate the plan's (canary) nodes, soak under continuous probes, then
keep or roll back by policy.

The forward run is ``forward_step`` unchanged. Once every node is done the run soaks
(``SOAKING``) for ``canary.soak`` with sampling rounds over the whole cluster; then, with
``on_success: keep``, the run goes back to ``NODES_DONE`` with the outcome ``kept``, and with
``on_success: rollback`` (a rehearsal) it rolls everything back. A failure — a sampled pair
failing during the soak, a node rolled back by its gate, any halt of the forward run — rolls
everything back and ends ``failed``; a halt before anything changed (a blocking preflight
finding) ends the run ABORTED and ``failed``, with nothing to roll back. The outcome is in the checkpoint (``canary``) and in the
exit code (0 kept or rehearsed, 1 failed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from migrator.engine.actions import Action
from migrator.engine.forward import Step, forward_step, run_move, sample_round
from migrator.engine.oncall import rollback_run_step
from migrator.engine.pending import Pending
from migrator.engine.policy_probe import Explained, nothing_explained
from migrator.engine.preflight_gate import end_canary, halted_in_preflight
from migrator.engine.rows import Gathered, Row, advance, validate
from migrator.model.checkpoint import CanaryState, Checkpoint, RollbackRequest, truncate_error
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.states import RunPhase

CANARY_BY = "migrator canary"


def _roll_back(cp: Checkpoint, now: datetime, outcome: str, reason: str) -> Checkpoint:
    request = RollbackRequest(all=True, requested_at=now, by=CANARY_BY, reason=f"canary {outcome}: {reason}")
    canary = (cp.canary or CanaryState()).model_copy(update={"outcome": outcome, "reason": truncate_error(reason)})
    return cp.model_copy(update={"rollback": request, "canary": canary, "halted": None})


def canary_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
                explained: Explained = nothing_explained) -> Step:
    """The next step of a canary run (see the module docstring)."""
    assert plan.canary is not None, "migrator canary needs a plan with a canary section"
    if cp.rollback is not None:
        return rollback_run_step(plan, cp, obs, now)
    if cp.run_phase.terminal:
        return cp, [], [f"canary run {cp.run_phase.value.lower()}"], None
    if cp.halted is not None:
        halted = cp.halted
        return (_roll_back(cp, now, "failed", halted), [], [f"canary failed ({halted}); rolling every canary node back"],
                now)
    if cp.run_phase is RunPhase.SOAKING:
        return _soak(plan, cp, obs, now)
    cp, actions, notes, wake = forward_step(plan, cp, obs, now, explained)
    if halted_in_preflight(cp):   # nothing was changed: no rollback, the canary ends here
        return end_canary(cp, now), actions, [f"canary failed before any change: {cp.halted}"], None
    if cp.halted is not None:
        halted = cp.halted
        return (_roll_back(cp, now, "failed", halted), actions,
                [f"canary failed ({halted}); rolling every canary node back"], now)
    if cp.run_phase is RunPhase.NODES_DONE and cp.canary is None:
        cp = run_move(cp, RunPhase.SOAKING, now).model_copy(update={
            "canary": CanaryState(soak_until=now + plan.canary.soak, rounds_before=cp.sampling.rounds),
            "sampling": cp.sampling.model_copy(update={"failures": (), "last_at": None})})
        return cp, actions, [f"canary nodes migrated; soaking for {format_duration(plan.canary.soak)}"], now
    return cp, actions, notes, wake


@dataclass(kw_only=True)
class SoakCursor(Gathered):
    """The soak being run by ``rows.advance``: sampling rounds over the whole cluster."""

    plan: MigrationPlan
    obs: ClusterObservation
    now: datetime
    cp: Checkpoint

    @property
    def pending(self) -> Pending:
        return Pending(self.cp.sampling.last_at)

    @property
    def started_at(self) -> datetime:
        return self.cp.run_phase_started_at or self.now

    def sent(self, actions: Sequence[Action]) -> None:
        self.actions.extend(actions)


def _soaked(c: SoakCursor) -> str | None:
    """The soak is over, no sample failed (a failure seen at the last moment still fails it) and
    at least one round of the soak was answered in full: checks the API server did not relay
    are unknown, so a soak whose every round had one proves nothing and goes on sampling."""
    canary = c.cp.canary
    if canary is None or canary.soak_until is None or c.now < canary.soak_until or c.cp.sampling.failures:
        return None
    if c.cp.sampling.answered <= canary.rounds_before:
        return None
    return "soak passed: no sampled pair failed, and its rounds were answered"


def _soak_limit(c: SoakCursor) -> timedelta | None:
    """The soak, then up to ``api.outage_tolerance`` more for one round answered in full."""
    until = c.cp.canary.soak_until if c.cp.canary else None
    return None if until is None else until - c.started_at + c.plan.api.outage_tolerance


def _unjudged(c: SoakCursor) -> str:
    return ("the canary could not be judged: no sampling round was relayed in full by the API server "
            f"during the soak and api.outage_tolerance ({format_duration(c.plan.api.outage_tolerance)}) after it")


def _sample_failed(c: SoakCursor) -> str | None:
    failures = c.cp.sampling.failures
    return "pairs failed during the soak: " + "; ".join(failures[:3]) if failures else None


def _sample(c: SoakCursor) -> None:
    c.cp, actions, wake = sample_round(c.plan, c.cp, c.obs, c.now, frozenset())
    c.emit(actions)
    c.wake(wake)
    until = c.cp.canary.soak_until if c.cp.canary else None
    c.wake(until)
    left = (until - c.now).total_seconds() if until else 0
    c.say(f"soaking: {int(left)}s left, {c.cp.sampling.rounds} sampling rounds")


PASSED, FAILED = "passed", "failed"
SOAK: dict[str, Row[SoakCursor]] = {"soak": Row(
    step="soak", runs_in="`SOAKING`", done=_soaked, done_doc="`canary.soak` has passed", work=_sample,
    sends=("run-probes",), failed=_sample_failed, on_failed=FAILED,
    failed_doc="a sampled pod-to-pod pair failed", timeout=_soak_limit, on_timeout=FAILED,
    timeout_doc="`canary.soak` + `api.outage_tolerance` passed with no round answered in full",
    timeout_error=_unjudged, then=PASSED)}
validate("canary soak", SOAK, "soak", frozenset({PASSED, FAILED}))


def _soak(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime) -> Step:
    """The soak row; its way out keeps the canary nodes or rolls them back, per the plan."""
    assert plan.canary is not None
    cursor = SoakCursor(plan=plan, obs=obs, now=now, cp=cp)
    way = advance(SOAK["soak"], cursor)
    cp = cursor.cp
    if way is None:
        return cp, cursor.actions, [cursor.note], cursor.wake_at
    if way.kind in ("failed", "timeout"):
        return _roll_back(cp, now, "failed", way.why), [], [f"canary failed during the soak ({way.why}); rolling back"], now
    if plan.canary.on_success == "keep":
        canary = cp.canary or CanaryState()
        cp = run_move(cp, RunPhase.NODES_DONE, now).model_copy(update={"canary": canary.model_copy(update={
            "outcome": "kept", "reason": way.why})})
        return cp, [], ["canary soak passed: the canary nodes stay on Cilium"], None
    cp = _roll_back(cp, now, "rolled-back", "soak passed; canary.on_success is rollback (rehearsal)")
    return cp, [], ["canary soak passed; rolling back as the plan asks"], now
