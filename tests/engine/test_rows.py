"""The row tables and their interpreter.

Every action a row declares is sent by the interpreter in some run, and no row sends an action
it does not declare: the scenarios below drive the forward steps (drain and in place, an
abort's restore), an on-call rollback of every node, finalize, and both connectivity gates, with
``rows.advance`` wrapped to attribute each emitted action to the row that was running.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

import pytest

from migrator.engine import canary as canary_module
from migrator.engine import finalize as finalize_module
from migrator.engine import policy_probe, rows, steps
from migrator.engine import rollback as rollback_module
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.canary import SOAK, SoakCursor
from migrator.engine.decide import Inbox, decide, new_checkpoint, request
from migrator.engine.finalize import FINALIZE, FinalizeCursor
from migrator.engine.node_rows import FORWARD
from migrator.engine.node_steps import NodeCursor, StepContext, StepOutcome
from migrator.engine.results import record_results
from migrator.engine.rollback import ROLLBACK
from migrator.engine.rows import Row, RowError, validate
from migrator.model.checkpoint import (
    CanaryState,
    FinalizeProgress,
    HandoverProgress,
    Intent,
    NodeRecord,
    PolicyBaseline,
    RollbackRequest,
)
from migrator.model.states import NodePhase, RunPhase
from tests.engine.loop import iterate, make_plan, run, start
from tests.engine.policy_toy import PolicyToy
from tests.engine.test_policy_probe import SECTION as POLICY
from tests.engine.test_policy_probe import pods as policy_pods
from tests.engine.test_probes import CILIUM, PLAN, cluster
from tests.engine.toy import T0, ToyCluster

TABLES: dict[str, dict[str, Row]] = {"forward": FORWARD, "rollback": ROLLBACK, "finalize": FINALIZE,
                                     "canary": SOAK}
Seen = dict[tuple[str, str], set[str]]


def _table_of(cursor: object) -> str:
    if isinstance(cursor, NodeCursor):
        return "rollback" if cursor.row.startswith("rollback:") else "forward"
    return "canary" if isinstance(cursor, SoakCursor) else "finalize"


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Seen]:
    """Actions emitted while each row ran (events excluded: moves emit those, not rows)."""
    found: Seen = defaultdict(set)
    real = rows.advance

    def recording(row: Row, cursor):  # noqa: ANN001, ANN202
        actions = cursor.out.actions if isinstance(cursor, NodeCursor) else cursor.actions
        before = len(actions)
        way = real(row, cursor)
        after = cursor.out.actions if isinstance(cursor, NodeCursor) else cursor.actions
        found[(_table_of(cursor), row.step)].update(a.kind for a in after[before:] if a.kind != "emit-event")
        return way

    for module in (steps, rollback_module, finalize_module, canary_module):
        monkeypatch.setattr(module, "advance", recording)
    yield found


def _drive(plan, toy, cp, now, purpose):  # noqa: ANN001, ANN202
    """A process of ``purpose`` until the engine names its stop, results handed back each turn."""
    results: list = []
    for turn in range(300):
        decision = decide(plan, cp, toy.observe(), now, Inbox(purpose=purpose, results=tuple(results),
                                                              first=turn == 0))
        cp = decision.checkpoint
        results = [toy.apply(a) for a in decision.actions]
        toy.settle()
        if decision.stop is not None:
            return cp
        now += timedelta(seconds=1)
    raise AssertionError(decision.reason)


def _roll_back_everything(plan, toy, cp, now):  # noqa: ANN001, ANN202
    cp = cp.model_copy(update={"rollback": RollbackRequest(all=True, requested_at=now, by="test")})
    return _drive(plan, toy, cp, now, "rollback")


def _gate_rounds() -> None:
    """One decision of each gate row (the toy has no network; the probes' fixture has)."""
    obs = cluster(cilium={"node-1", "node-2"}, nodes=6)
    ctx = StepContext(plan=PLAN, obs=obs, now=T0, network=CILIUM, budgets=DisruptionBudgets(obs))
    forward = NodeRecord(name="node-1", phase=NodePhase.PODS_RECYCLED, phase_started_at=T0,
                         intent=Intent(step="probe"))
    steps.step_node(forward, ctx)
    back = NodeRecord(name="node-3", phase=NodePhase.ROLLING_BACK, phase_started_at=T0,
                      intent=Intent(step="rollback", stage="probe", switched=True))
    out = StepOutcome(record=back)
    rollback_module.rollback_step(out, ctx)
    cp = new_checkpoint(PLAN, obs, "run-1", T0)
    fleet = FinalizeCursor(plan=PLAN, obs=obs, now=T0, cp=cp, progress=FinalizeProgress(step="remove-probes"))
    finalize_module.advance(FINALIZE["remove-probes"], fleet)
    soaking = cp.model_copy(update={"canary": CanaryState(soak_until=T0 + timedelta(minutes=5))})
    canary_module.advance(SOAK["soak"], SoakCursor(plan=PLAN, obs=obs, now=T0, cp=soaking))
    # the policy probe's rows: its table after finalize, then its removal
    with_policy = PLAN.model_copy(update={"probes": PLAN.probes.model_copy(update={"policy": POLICY})})
    policy_obs = obs.model_copy(update={"policy_probe_pods": policy_pods()})
    judged = cp.model_copy(update={"policy_baseline": PolicyBaseline(
        spec=policy_probe.spec_digest(POLICY), table="1" * len(policy_probe.flow_keys(POLICY)))})
    for step in ("policy-table", "remove-policy-probe"):
        finalize_module.advance(FINALIZE[step], FinalizeCursor(plan=with_policy, obs=policy_obs, now=T0, cp=judged,
                                                               progress=FinalizeProgress(step=step)))


def test_every_row_sends_what_it_declares_and_nothing_else(seen: Seen) -> None:
    toy = ToyCluster(workers=3, apps_per_node=2)
    plan = make_plan(concurrency={"max_unavailable": 2}, finalize={"apply_configmap": True})
    cp, now = run(plan, toy, start(plan, toy))
    assert cp.run_phase is RunPhase.NODES_DONE
    rolled = _roll_back_everything(plan, toy, cp, now)
    assert rolled.run_phase is RunPhase.ROLLED_BACK and not toy.cilium_nodes

    toy = ToyCluster(workers=2)
    in_place = make_plan(placement={"strategy": "in-place"}, finalize={"apply_configmap": True})
    cp, now = run(in_place, toy, start(in_place, toy))
    assert _drive(in_place, toy, cp, now, "finalize").run_phase is RunPhase.FINALIZED

    toy = ToyCluster(workers=2)   # after a routing hand-over, native routing: every agent at once
    native = make_plan(routing={"handover": True, "native_routing": True}, finalize={"apply_configmap": True})
    cp, now = run(native, toy, start(native, toy))
    cp = cp.model_copy(update={"handover": HandoverProgress(state="done")})
    assert _drive(native, toy, cp, now, "finalize").run_phase is RunPhase.FINALIZED

    toy = PolicyToy(workers=2)   # policy continuity: the gap's Event, the shims' and Calico policies' removal
    continuous = make_plan(policy={"mode": "continuous"}, finalize={"apply_configmap": True})
    cp, now = run(continuous, toy, start(continuous, toy))
    assert _drive(continuous, toy, cp, now, "finalize").run_phase is RunPhase.FINALIZED

    toy = ToyCluster(workers=3)   # an abort restores a cordoned node
    aborting = make_plan(concurrency={"max_unavailable": 2}, drain={"timeout": "10m"})
    toy.add_pdb("web", allowed=0)
    toy.blocked.add("shop/web-node-2-0")
    cp, now = start(aborting, toy), T0
    while cp.node("node-2").phase is not NodePhase.CORDONED:
        cp, _ = iterate(aborting, toy, cp, now)
        now += timedelta(seconds=1)
    cp, _ = run(aborting, toy, request(cp, "abort"), now)
    assert cp.node("node-2").phase is NodePhase.SKIPPED

    toy = ToyCluster(workers=2)   # a PDB override deletes the blocked pod
    toy.add_pdb("web", allowed=0)
    toy.blocked.add("shop/web-node-1-0")
    override = make_plan(drain={"timeout": "5m", "pdb_override": {
        "reason": "web is being replaced anyway", "approved_by": "alice", "after": "20s"}})
    assert run(override, toy, start(override, toy), limit=300)[0].node("node-1").phase is NodePhase.DONE

    toy = ToyCluster(workers=1)   # a crash loses the verification pod's removal with the move to PROBED
    cp, now = start(plan, toy), T0
    while True:
        cp, _ = iterate(plan, toy, cp, now, execute=False)
        if cp.node("node-1").phase is NodePhase.PROBED:
            break                         # the crash: this decision's actions never ran
        cp = record_results(cp, [toy.apply(a) for a in _.actions], now)
        toy.settle()
        now += timedelta(seconds=1)
    cp, _ = run(plan, toy, cp, now + timedelta(seconds=25))
    assert not [k for k in toy.pods if "migrator-verify" in k]

    _gate_rounds()
    missing = [f"{t}:{step} never sent {kind}" for t, table in TABLES.items() for step, row in table.items()
               for kind in row.sends if kind not in seen[(t, step)]]
    undeclared = [f"{t}:{step} sent {sorted(kinds - set(TABLES[t][step].sends))}"
                  for (t, step), kinds in seen.items() if kinds - set(TABLES[t][step].sends)]
    assert (missing, undeclared) == ([], [])


def test_a_row_that_never_sends_is_caught(seen: Seen, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above fails when the interpreter drops a row's batch."""
    silent = {**FORWARD, "uncordon": Row(**{**FORWARD["uncordon"].__dict__, "send": lambda c: []})}
    monkeypatch.setattr(steps, "FORWARD", silent)
    toy = ToyCluster(workers=1)
    plan = make_plan()
    cp, now = start(plan, toy), T0
    for _ in range(40):
        cp, _ = iterate(plan, toy, cp, now)
        now += timedelta(seconds=1)
    assert "uncordon" not in seen[("forward", "uncordon")]
    assert cp.node("node-1").phase is NodePhase.PROBED   # waiting for an uncordon nobody sends


def test_validation_rejects_broken_tables() -> None:
    def done(_: object) -> str | None:
        return None

    def send(_: object) -> list:
        return []

    ok = {"a": Row(step="a", done=done, done_doc="", send=send, then="b"),
          "b": Row(step="b", done=done, done_doc="", send=send, then="end")}
    validate("ok", ok, "a", frozenset({"end"}))
    with pytest.raises(RowError, match="unknown"):
        validate("dangling", {**ok, "b": Row(step="b", done=done, done_doc="", send=send, then="nowhere")},
                 "a", frozenset({"end"}))
    with pytest.raises(RowError, match="unreachable"):
        validate("island", {**ok, "c": Row(step="c", done=done, done_doc="", send=send, then="end")},
                 "a", frozenset({"end"}))
    with pytest.raises(RowError, match="never reach an end"):
        validate("loop", {"a": Row(step="a", done=done, done_doc="", send=send, then="b"),
                          "b": Row(step="b", done=done, done_doc="", send=send, then="a")}, "a", frozenset({"end"}))
    with pytest.raises(RowError, match="timeout without a way out"):
        validate("limit", {"a": Row(step="a", done=done, done_doc="", send=send, then="end",
                                    timeout=lambda c: timedelta(1))}, "a", frozenset({"end"}))
    with pytest.raises(RowError, match="exactly one"):
        validate("idle", {"a": Row(step="a", done=done, done_doc="", then="end")}, "a", frozenset({"end"}))


def test_pending_resends_only_after_the_delay() -> None:
    from migrator.engine.pending import RESEND_AFTER, Pending
    assert Pending(None).due(T0)
    assert not Pending(T0).due(T0 + RESEND_AFTER - timedelta(seconds=1))
    assert Pending(T0).due(T0 + RESEND_AFTER)
    assert Pending(T0).wake_at(T0 + timedelta(seconds=1)) == T0 + RESEND_AFTER
    assert Pending(None).wake_at(T0) == T0 + RESEND_AFTER


