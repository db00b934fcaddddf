"""One node's connectivity gate, round by round, through the node's intent.

Each round sends the checks that have not passed yet (``RunProbes``); ``record_results``
folds the answers into the intent (``passed``, ``failures``). The gate passes when every check
of the current set has passed, and fails when the deadline comes with any still failing. The
check set is recomputed from each observation (``probes.gate_checks``), so peers that start
migrating meanwhile are dropped rather than blamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from migrator.engine.actions import RunProbes
from migrator.engine.node_steps import StepContext, StepOutcome
from migrator.engine.probes import gate_checks
from migrator.model.checkpoint import truncate_error
from migrator.model.observation import NodeFacts, PodFacts

SUMMARY_FAILURES = 3


@dataclass(frozen=True)
class Verdict:
    """Where the gate stands after this decision."""

    passed: bool = False
    failed: bool = False
    summary: str = ""


def _failure_summary(failures: dict[str, str], wanted: list[str], waiting: str | None) -> str:
    if waiting is not None:
        return f"never ran: {waiting}"
    failing = [n for n in wanted if n in failures] or [n for n in wanted]
    shown = "; ".join(f"{n} {failures.get(n, 'no answer yet')}" for n in failing[:SUMMARY_FAILURES])
    more = f" (+{len(failing) - SUMMARY_FAILURES} more)" if len(failing) > SUMMARY_FAILURES else ""
    return truncate_error(f"{len(failing)}/{len(wanted)} checks failing: {shown}{more}")


def run_gate(out: StepOutcome, ctx: StepContext, node: NodeFacts, *, deadline: datetime,
             expect_cilium: bool, same_node_peer: PodFacts | None) -> Verdict:
    """Advance the gate of ``node`` by one decision (sending a round when one is due)."""
    plan, now = ctx.plan, ctx.now
    intent = out.record.intent
    assert intent is not None
    checks, waiting = gate_checks(plan, ctx.obs, node.name, ctx.network, busy=ctx.busy - {node.name},
                                  same_node_peer=same_node_peer, expect_cilium=expect_cilium)
    wanted = [c.name for c in checks]
    if checks and all(name in intent.passed for name in wanted):
        return Verdict(passed=True, summary=f"ok {len(wanted)}/{len(wanted)}")
    if now >= deadline:
        return Verdict(failed=True, summary=_failure_summary(intent.failures, wanted, waiting))
    out.wake(deadline)
    if waiting is not None:
        out.note = waiting
        return Verdict()
    interval = plan.probes.checks.interval
    if intent.sent_at is None or now >= intent.sent_at + interval:
        todo = tuple(c for c in checks if c.name not in intent.passed)
        out.actions.append(RunProbes(node=node.name, purpose="gate", checks=todo,
                                     threshold=plan.probes.checks.pass_threshold))
        out.record = out.record.model_copy(update={"intent": intent.model_copy(update={"sent_at": now})})
        out.wake(now + interval)
    else:
        out.wake(intent.sent_at + interval)
    done = sum(1 for n in wanted if n in intent.passed)
    out.note = f"probing: {done}/{len(wanted)} checks passed" + (
        f", failing: {', '.join(sorted(intent.failures)[:3])}" if intent.failures else "")
    return Verdict()
