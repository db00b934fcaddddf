"""The PREFLIGHT gate: a blocking finding halts the run before its first action, a skipped
check lets the run go on (recorded and audited once), warnings never stop anything, and
``resume`` with the finding fixed goes on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from migrator.engine.actions import EnsureNodeConfig
from migrator.engine.decide import Inbox, decide, resume_checkpoint
from migrator.engine.preflight_gate import NOT_GATHERED, preflight_gate, request_skips
from migrator.model.checkpoint import from_configmap_data, to_configmap_data
from migrator.model.findings import Finding, Severity
from migrator.model.states import RunPhase
from tests.engine.loop import make_plan, run, start
from tests.engine.toy import T0, ToyCluster

CLASH = Finding(check="calico.vxlan-port", severity=Severity.BLOCKING,
                message="Calico's VXLAN port 4789 equals cilium-config tunnel-port", fix_command="helm upgrade ...")
OVERLAP = Finding(check="cidr.overlap", severity=Severity.BLOCKING, message="10.245.0.0/16 overlaps 10.0.0.0/8")
NAT = Finding(check="calico.nat-outgoing", severity=Severity.WARNING, message="SNAT across the overlays")
INFO = Finding(check="calico.present", severity=Severity.INFO, message="Calico found")
BY = "ops@laptop/42"


def test_blocking_finding_halts_in_preflight_with_no_action() -> None:
    toy = ToyCluster(workers=2)
    toy.findings = (CLASH, NAT, INFO)
    plan = make_plan()
    cp = start(plan, toy)
    decision = decide(plan, cp, toy.observe(), T0)
    assert decision.actions == ()
    assert decision.checkpoint.run_phase is RunPhase.PREFLIGHT
    assert decision.checkpoint.halted is not None and "calico.vxlan-port" in decision.checkpoint.halted
    assert "cidr.overlap" not in decision.checkpoint.halted
    assert decision.checkpoint.prepare_sent_at is None and decision.checkpoint.node_config_version is None
    assert decision.checkpoint.audit == ()
    assert decision.finished
    again = decide(plan, decision.checkpoint, toy.observe(), T0 + timedelta(seconds=5))
    assert again.actions == () and not again.changed


def test_every_blocking_check_is_named() -> None:
    cp, clear = preflight_gate(start(make_plan(), ToyCluster(workers=1)), (OVERLAP, CLASH, OVERLAP), T0)
    assert not clear
    assert cp.halted is not None and "cidr.overlap, calico.vxlan-port" in cp.halted


def test_findings_not_gathered_halt() -> None:
    toy = ToyCluster(workers=1)
    toy.findings = None
    plan = make_plan()
    decision = decide(plan, start(plan, toy), toy.observe(), T0)
    assert decision.actions == () and decision.checkpoint.halted == NOT_GATHERED


def test_warnings_and_infos_never_block() -> None:
    toy = ToyCluster(workers=2)
    toy.findings = (NAT, INFO)
    plan = make_plan()
    decision = decide(plan, start(plan, toy), toy.observe(), T0)
    assert decision.checkpoint.halted is None
    assert [type(a) for a in decision.actions] == [EnsureNodeConfig]
    cp, _ = run(plan, toy, decision.checkpoint)
    assert cp.run_phase is RunPhase.NODES_DONE and cp.audit == ()


def test_a_skipped_check_lets_the_run_proceed_and_is_audited_once() -> None:
    toy = ToyCluster(workers=2)
    toy.findings = (CLASH, CLASH.model_copy(update={"message": "second clash"}), NAT)
    plan = make_plan()
    cp = request_skips(start(plan, toy), ["calico.vxlan-port", "calico.vxlan-port"], BY, T0)
    assert [(s.check, s.by, s.applied) for s in cp.skipped_checks] == [("calico.vxlan-port", BY, False)]
    decision = decide(plan, cp, toy.observe(), T0)
    assert decision.checkpoint.halted is None
    assert [type(a) for a in decision.actions] == [EnsureNodeConfig]
    assert decision.checkpoint.audit == (
        f"check calico.vxlan-port skipped by {BY} at {T0.isoformat()}: {CLASH.message} (+1 more)",)
    assert decision.checkpoint.skipped_checks[0].applied
    cp = from_configmap_data(to_configmap_data(decision.checkpoint))   # survives the ConfigMap
    assert cp.skipped_checks == decision.checkpoint.skipped_checks
    cp, _ = run(plan, toy, cp, T0 + timedelta(seconds=1))
    assert cp.run_phase is RunPhase.NODES_DONE and cp.halted is None
    assert sum("skipped by" in note for note in cp.audit) == 1


def test_a_skip_does_not_cover_another_check() -> None:
    toy = ToyCluster(workers=1)
    toy.findings = (CLASH, OVERLAP)
    plan = make_plan()
    cp = request_skips(start(plan, toy), ["calico.vxlan-port"], BY, T0)
    decision = decide(plan, cp, toy.observe(), T0)
    assert decision.actions == ()
    assert decision.checkpoint.halted is not None and "cidr.overlap" in decision.checkpoint.halted
    assert "calico.vxlan-port" not in decision.checkpoint.halted.split(";")[0]
    # resumed with the second check skipped as well: each skip is audited once, the run goes on
    cp = request_skips(resume_checkpoint(decision.checkpoint, T0), ["cidr.overlap"], BY, T0)
    decision = decide(plan, cp, toy.observe(), T0 + timedelta(seconds=1))
    assert decision.checkpoint.halted is None and decision.actions
    assert [note.split(" skipped")[0] for note in decision.checkpoint.audit] == [
        "check calico.vxlan-port", "check cidr.overlap"]


def test_resume_after_the_fix_proceeds() -> None:
    toy = ToyCluster(workers=1)
    toy.findings = (CLASH,)
    plan = make_plan()
    halted = decide(plan, start(plan, toy), toy.observe(), T0).checkpoint
    assert halted.halted is not None
    toy.findings = (NAT,)    # a fresh process gathers fresh facts: the port was changed meanwhile
    decision = decide(plan, resume_checkpoint(halted, T0), toy.observe(), T0 + timedelta(seconds=1))
    assert decision.checkpoint.halted is None
    assert [type(a) for a in decision.actions] == [EnsureNodeConfig]


def test_skips_are_recorded_only_before_the_run_is_prepared() -> None:
    toy = ToyCluster(workers=1)
    plan = make_plan()
    cp = start(plan, toy).model_copy(update={"run_phase": RunPhase.MIGRATING})
    assert request_skips(cp, ["cidr.overlap"], BY, T0) is cp


@pytest.mark.parametrize("on_success", ["keep", "rollback"])
def test_a_canary_halted_by_preflight_ends_failed_without_a_rollback(on_success: str) -> None:
    toy = ToyCluster(workers=2)
    toy.findings = (OVERLAP,)
    plan = make_plan(canary={"soak": "1m", "on_success": on_success})
    decision = decide(plan, start(plan, toy), toy.observe(), T0, Inbox(purpose="canary"))
    cp = decision.checkpoint
    assert decision.actions == ()
    assert cp.rollback is None and cp.run_phase is RunPhase.ABORTED
    assert cp.canary is not None and cp.canary.outcome == "failed" and "cidr.overlap" in (cp.canary.reason or "")
