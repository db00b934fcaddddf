"""An API error is not a network failure: a check the API server did not relay (``unknown``)
never passes, never fails a gate or rolls a node back, never pauses the run or fails a sample,
and an action the API server could not answer is tried again without blaming the node."""

from __future__ import annotations

from datetime import timedelta

from migrator.engine.actions import ActionResult, Cordon, ErrorKind
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.decide import resume_checkpoint
from migrator.engine.node_rows import FORWARD, GATE_FAILED
from migrator.engine.node_steps import NodeCursor, StepContext, StepOutcome
from migrator.engine.probes import gate_checks
from migrator.engine.results import record_results
from migrator.engine.rows import advance
from migrator.model.checkpoint import Intent, NodeRecord
from migrator.model.observation import NodeFacts
from migrator.model.states import NodePhase
from tests.engine.test_probes import CILIUM, PLAN, T0, _cp, _probes, cluster

UNKNOWN = "unknown 0/3: the API server did not relay it: injected fault: code 500"
THROTTLED = "unknown 0/3: the API server did not relay it: too many requests"


def test_an_unknown_check_neither_passes_nor_replaces_a_genuine_failure() -> None:
    record = NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED,
                        intent=Intent(step="probe", failures={"dns": "fail 0/3: i/o timeout"}))
    cp = record_results(_cp(record), [_probes("gate", {"dns": UNKNOWN, "service": THROTTLED, "same-node": "ok 3/3"},
                                              "node-1")], T0)
    intent = cp.by_name["node-1"].intent
    assert intent is not None and intent.passed == ("same-node",)
    assert intent.failures["dns"] == "fail 0/3: i/o timeout"        # the evidence is kept
    assert intent.failures["service"].startswith("unknown")          # waits for the interval
    answered = record_results(cp, [_probes("gate", {"service": "ok 3/3"}, "node-1")], T0).by_name["node-1"].intent
    assert answered is not None and "service" in answered.passed and "service" not in answered.failures


def _past_deadline(failures: dict[str, str]):
    """The forward gate row of node-1, decided after the gate's deadline, everything else passed."""
    obs = cluster(cilium={"node-1", "node-2", "node-3"}, nodes=6)
    gate = gate_checks(PLAN, obs, "node-1", CILIUM, busy=frozenset(), same_node_peer=None)
    passed = tuple(c.name for c in gate.checks if c.name not in failures)
    record = NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED, phase_started_at=T0,
                        intent=Intent(step="probe", sent_at=T0, passed=passed, failures=failures))
    now = T0 + PLAN.probes.checks.deadline + timedelta(seconds=1)
    ctx = StepContext(plan=PLAN, obs=obs, now=now, network=CILIUM, budgets=DisruptionBudgets(obs), busy=frozenset())
    out = StepOutcome(record=record)
    return advance(FORWARD["probe"], NodeCursor(out=out, ctx=ctx, node=NodeFacts(name="node-1"))), out


def test_a_gate_with_only_unanswered_checks_keeps_probing_past_its_deadline() -> None:
    way, out = _past_deadline({"dns": UNKNOWN, "service": THROTTLED})
    assert way is None                                            # not failed, not rolled back
    assert "waiting for the API server to relay 2 check(s)" in out.note
    way, _ = _past_deadline({"dns": "fail 0/3: i/o timeout", "service": THROTTLED})
    assert way is not None and way.kind == "timeout" and way.to == GATE_FAILED   # a genuine failure still fails it


def test_unknown_samples_never_pause_the_run_nor_count_as_answered() -> None:
    idle = [NodeRecord(name=f"node-{i}") for i in (1, 2, 3)]
    cp = _cp(*idle)
    cp = cp.model_copy(update={"sampling": cp.sampling.model_copy(update={"rounds": 1})})
    after = record_results(cp, [_probes("sample", {"node-1->node-2": UNKNOWN, "node-2->node-3": "ok 3/3"})], T0)
    assert after.requested is None and after.sampling.failures == () and after.last_error is None
    assert after.sampling.answered == 0                             # a sweep needs a round answered whole
    whole = record_results(cp, [_probes("sample", {"node-1->node-2": "ok 3/3"})], T0)
    assert whole.sampling.answered == 1


def test_an_action_the_api_server_could_not_answer_is_retried_without_blaming_the_node() -> None:
    record = NodeRecord(name="n1", phase=NodePhase.PENDING, attempt=1, phase_started_at=T0,
                        intent=Intent(step="cordon", sent_at=T0))
    kinds: tuple[ErrorKind, ...] = ("Unavailable", "Throttled")
    for kind in kinds:
        after = record_results(_cp(record), [ActionResult.failure(Cordon(node="n1"), kind, "503", retry_after=2)],
                               T0).node("n1")
        assert after is not None and after.last_error is None and after.intent is not None
        assert after.intent.sent_at is None and after.intent.not_before == T0 + timedelta(seconds=2)
        resumed = resume_checkpoint(_cp(after), T0).node("n1")
        assert resumed is not None and resumed.attempt == 1           # no new attempt: nothing failed
    failed = record_results(_cp(record), [ActionResult.failure(Cordon(node="n1"), "Forbidden", "rbac")], T0).node("n1")
    assert failed is not None and "Forbidden" in (failed.last_error or "")
