"""One node's connectivity gate, round by round, through the node's intent.

Each round sends the checks that have not passed yet (``RunProbes``); ``record_results``
folds the answers into the intent (``passed``, ``failures``). A failing check is dialled again
only after the plan's interval; a check never dialled yet (a peer that stopped being busy since
the last round, or a spare after a peer failed) goes at once, so a node that passed everything
it was asked does not wait an interval because the set grew. The gate passes when every check
of the current set has passed, and fails when the deadline comes with any still failing. The
check set is recomputed from each observation (``probes.gate_checks``), so peers that start
migrating meanwhile are dropped rather than blamed.

A check the API server did not relay (``unknown``: see ``execute.Executor._dial``) is no
evidence about the network: it is kept in ``failures`` only so that it waits for the interval
like a failing check, a genuine failure recorded before it is kept instead, and it never makes
a spare peer necessary. While every check standing in the way is unknown the gate has no
deadline (``gate_deadline``): it keeps dialling and says that it waits for answers, so an API
server that fails pods/proxy never fails a gate or rolls a node back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from migrator.engine import policy_probe
from migrator.engine.actions import RunProbes
from migrator.engine.node_steps import NodeCursor
from migrator.engine.probes import Gate, gate_checks, unknown
from migrator.model.checkpoint import truncate_error
from migrator.model.observation import PodFacts

SUMMARY_FAILURES = 3


@dataclass(frozen=True)
class Verdict:
    """Where the gate stands in this decision."""

    gate: Gate
    passed: bool
    blocking: tuple[str, ...]
    settled: int
    unanswered: tuple[str, ...] = ()   # blocking checks whose last outcome is unknown (API errors)

    @property
    def no_evidence(self) -> bool:
        """Nothing in the way is a genuine failure: only checks the API server did not relay."""
        return bool(self.unanswered) and len(self.unanswered) == len(self.blocking)

    def summary(self, failures: dict[str, str]) -> str:
        """One line for the node's record: the pass count, or what still fails."""
        if self.passed:
            return f"ok {self.settled}/{len(self.gate.checks)}"
        if self.gate.waiting is not None:
            return f"never ran: {self.gate.waiting}"
        shown = "; ".join(f"{self.gate.shown(n)} {failures.get(n, 'no answer yet')}"
                          for n in self.blocking[:SUMMARY_FAILURES])
        more = f" (+{len(self.blocking) - SUMMARY_FAILURES} more)" if len(self.blocking) > SUMMARY_FAILURES else ""
        return truncate_error(f"{len(self.blocking)} check(s) failing: {shown}{more}")


def verdict(c: NodeCursor, *, expect_cilium: bool, same_node_peer: PodFacts | None) -> Verdict:
    """The gate of the cursor's node against this observation (computed once per decision)."""
    if "gate" not in c.memo:
        gate = gate_checks(c.plan, c.ctx.obs, c.node.name, c.ctx.network, busy=c.ctx.busy - {c.node.name},
                           same_node_peer=same_node_peer, expect_cilium=expect_cilium, suspects=c.ctx.suspects)
        if expect_cilium:
            gate = _with_policy(c, gate)
        ok, blocking = gate.verdict(set(c.intent.passed))
        settled = sum(1 for check in gate.checks if check.name in c.intent.passed)
        unanswered = tuple(n for n in blocking if unknown(c.intent.failures.get(n)))
        c.memo["gate"] = Verdict(gate=gate, passed=bool(gate.checks) and ok, blocking=tuple(blocking),
                                 settled=settled, unanswered=unanswered)
    found: Verdict = c.memo["gate"]
    return found


def _with_policy(c: NodeCursor, gate: Gate) -> Gate:
    """The forward gate plus the policy probe's table, each flow expecting its verdict before the
    run unless the current gap report explains it (``StepContext.explained``)."""
    section, baseline = c.plan.probes.policy, c.ctx.policy_baseline
    if section is None or baseline is None or not baseline.complete or gate.waiting is not None:
        return gate
    extra = policy_probe.gate_checks(c.ctx.obs, section, baseline, c.ctx.explained)
    if isinstance(extra, str):
        return Gate(waiting=extra)
    return Gate(checks=gate.checks + extra, need=gate.need, names=policy_probe.flow_names(section, extra))


def gate_deadline(view: Verdict, deadline: timedelta) -> timedelta | None:
    """The gate's deadline for this decision: none while only unanswered checks stand in the
    way (an API error is never evidence about the network)."""
    return None if view.no_evidence else deadline


def gate_round(c: NodeCursor, view: Verdict) -> None:
    """Send the round of checks that is due: failing checks after the plan's interval, checks
    never dialled at once."""
    plan, now, intent = c.plan, c.now, c.intent
    if view.gate.waiting is not None:
        c.say(view.gate.waiting)
        return
    interval = plan.probes.checks.interval
    next_round = now if intent.sent_at is None else intent.sent_at + interval
    retry = now >= next_round
    genuine = {name for name, outcome in intent.failures.items() if not unknown(outcome)}
    todo = view.gate.todo(set(intent.passed), genuine)
    if not retry:  # only failing checks wait for the interval; never-dialled ones go now
        todo = tuple(t for t in todo if t.name not in intent.failures)
    if todo:
        c.emit([RunProbes(node=c.node.name, purpose="gate", checks=todo,
                          threshold=plan.probes.checks.pass_threshold)])
    if retry:
        c.out.record = c.record.model_copy(update={"intent": intent.model_copy(update={"sent_at": now})})
        c.wake(now + interval)
    else:
        c.wake(next_round)
    checks = view.gate.checks
    failing = sorted(genuine)
    c.say(f"probing: {len(checks) - len(view.blocking)}/{len(checks)} checks settled" + (
        f", failing: {', '.join(view.gate.shown(n) for n in failing[:3])}" if failing else "") + (
        f", waiting for the API server to relay {len(view.unanswered)} check(s)" if view.unanswered else ""))
