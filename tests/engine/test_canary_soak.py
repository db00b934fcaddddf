"""The canary soak judges the network only on evidence: rounds the API server did not relay
(every check ``unknown``) neither pass nor fail it; the soak waits for a round answered in full,
and past ``canary.soak + api.outage_tolerance`` without one the canary fails (and is rolled
back) instead of being kept on no evidence."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.canary import canary_step
from migrator.model.checkpoint import CanaryState
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import make_plan, start
from tests.engine.toy import T0, ToyCluster

SOAK = timedelta(minutes=1)


def _soaking(rounds_before: int, rounds: int, answered: int):
    toy = ToyCluster(workers=2)
    plan = make_plan(canary={"soak": "1m", "on_success": "keep"})
    cp = start(plan, toy)
    cp = cp.with_nodes({r.name: r.model_copy(update={"phase": NodePhase.DONE}) for r in cp.nodes},
                       run_phase=RunPhase.SOAKING, run_phase_started_at=T0,
                       canary=CanaryState(soak_until=T0 + SOAK, rounds_before=rounds_before),
                       sampling=cp.sampling.model_copy(update={"rounds": rounds, "answered": answered,
                                                               "last_at": T0}))
    return plan, cp, toy.observe()


def test_a_soak_with_no_round_answered_goes_on_past_its_end() -> None:
    plan, cp, obs = _soaking(rounds_before=2, rounds=6, answered=2)
    after, _actions, notes, _wake = canary_step(plan, cp, obs, T0 + SOAK + timedelta(seconds=5))
    assert after.run_phase is RunPhase.SOAKING and after.canary is not None and after.canary.outcome == "soaking"
    assert after.rollback is None, notes


def test_a_soak_with_a_round_answered_in_full_is_kept() -> None:
    plan, cp, obs = _soaking(rounds_before=2, rounds=6, answered=5)
    after, _actions, _notes, _wake = canary_step(plan, cp, obs, T0 + SOAK + timedelta(seconds=5))
    assert after.canary is not None and after.canary.outcome == "kept"
    assert after.run_phase is RunPhase.NODES_DONE


def test_a_soak_never_answered_fails_after_the_outage_tolerance_and_rolls_back() -> None:
    plan, cp, obs = _soaking(rounds_before=2, rounds=40, answered=2)
    late = T0 + SOAK + plan.api.outage_tolerance + timedelta(seconds=1)
    after, _actions, _notes, _wake = canary_step(plan, cp, obs, late)
    assert after.canary is not None and after.canary.outcome == "failed"
    assert "could not be judged" in (after.canary.reason or "")
    assert after.rollback is not None
