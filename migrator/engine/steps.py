"""``step_node``: one node's next step, dispatched on its phase.

The forward steps live in ``engine.node_steps``, the connectivity gate's rounds in
``engine.probe_gate`` and the rollback stages in ``engine.rollback``; this module ties them
together (the gate's failure starts a rollback, so it sits above both).
"""

from __future__ import annotations

from migrator.engine.node_steps import (
    StepContext,
    StepOutcome,
    begin,
    deadline_of,
    drain,
    label,
    move,
    recycle,
    restart_agent,
    restore,
    uncordon,
    verify,
    verify_cleanup,
)
from migrator.engine.pods import verify_pod_name
from migrator.engine.probe_gate import run_gate
from migrator.engine.rollback import AUTOMATIC, begin_rollback, rollback_step
from migrator.model.checkpoint import NodeRecord
from migrator.model.observation import NodeFacts
from migrator.model.states import NodePhase

N = NodePhase


def probe(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    """The connectivity gate: every check passes before the node is handed back."""
    plan = ctx.plan
    if not plan.probes.enabled:
        move(out, ctx, N.PROBED, "probes disabled by the plan")
        out.actions.extend(verify_cleanup(ctx, node.name))
        return
    peer = ctx.obs.pod(plan.verify.namespace, verify_pod_name(node.name))
    deadline = deadline_of(out.record, plan.probes.checks.deadline)
    verdict = run_gate(out, ctx, node, deadline=deadline, expect_cilium=True,
                       same_node_peer=peer if peer is not None and peer.ready and not peer.deleting else None)
    if verdict.passed:
        out.record = out.record.model_copy(update={"probes": verdict.summary})
        move(out, ctx, N.PROBED, f"connectivity gate passed ({verdict.summary})")
        out.actions.extend(verify_cleanup(ctx, node.name))
    elif verdict.failed:
        out.record = out.record.model_copy(update={"probes": verdict.summary})
        out.actions.extend(verify_cleanup(ctx, node.name))
        reason = f"connectivity gate failed: {verdict.summary}"
        if plan.rollback.automatic:
            begin_rollback(out, ctx, AUTOMATIC + reason)
        else:
            move(out, ctx, N.FAILED, "connectivity gate failed", error=verdict.summary)


HANDLERS = {N.PENDING: begin, N.CORDONED: drain, N.DRAINED: label, N.LABELED: restart_agent,
            N.AGENT_RESTARTED: verify, N.CNI_VERIFIED: recycle, N.PODS_RECYCLED: probe, N.PROBED: uncordon}


def step_node(record: NodeRecord, ctx: StepContext) -> StepOutcome:
    """Advance one in-flight node as far as the observation allows."""
    out = StepOutcome(record=record)
    for _ in range(len(N)):
        current = out.record
        if current.phase.terminal:
            break
        node = ctx.obs.node_by_name.get(current.name)
        if current.phase is N.UNCORDONED:
            move(out, ctx, N.DONE, "migrated to Cilium")
            break
        if current.phase is N.ROLLING_BACK:
            rollback_step(out, ctx)
        elif current.intent is not None and current.intent.step == "restore":
            restore(out, ctx)
        elif node is None:
            move(out, ctx, N.FAILED, "node vanished", error=f"node {current.name} no longer exists")
        else:
            HANDLERS[current.phase](out, ctx, node)
        if out.halt is not None or out.record is current or out.record.phase is current.phase:
            break
    return out


