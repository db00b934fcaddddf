"""``step_node``: drive one in-flight node through its rows as far as the observation allows.

The node's forward row is the step recorded in its intent (``engine.node_rows.FORWARD``); a
rolling-back node runs its rollback stage (``engine.rollback.ROLLBACK``). ``rows.advance``
answers which way out of the row was taken; this driver applies it: a phase is a move along the
transition table, ``blocked`` halts the run or skips the node, ``gate-failed`` starts the
node's rollback (``rollback.automatic``) or fails it.
"""

from __future__ import annotations

from migrator.engine.node_rows import BLOCKED, FORWARD, GATE_FAILED
from migrator.engine.node_steps import GONE, NodeCursor, StepContext, StepOutcome, blocked, first_step, move
from migrator.engine.rollback import AUTOMATIC, begin_rollback, rollback_step
from migrator.engine.rows import Way, advance
from migrator.model.checkpoint import Intent, NodeRecord
from migrator.model.states import NodePhase

N = NodePhase


def _apply(out: StepOutcome, ctx: StepContext, way: Way) -> None:
    if way.to == BLOCKED:
        blocked(out, ctx, way.why)
    elif way.to == GATE_FAILED:
        out.record = out.record.model_copy(update={"probes": way.why})
        if ctx.plan.rollback.automatic:
            begin_rollback(out, ctx, AUTOMATIC + f"connectivity gate failed: {way.why}")
        else:
            move(out, ctx, N.FAILED, "connectivity gate failed", error=way.why)
    elif way.kind in ("done", "skipped"):
        target = NodePhase(way.to)   # a skipped node keeps the reason it was skipped
        move(out, ctx, target, way.why, error=out.record.last_error if target is N.SKIPPED else None)
    else:
        step = out.record.intent.step if out.record.intent else "step"
        move(out, ctx, NodePhase(way.to), f"{step} {'timed out' if way.kind == 'timeout' else 'failed'}",
             error=way.why)


def gone(out: StepOutcome, ctx: StepContext) -> None:
    """The node was deleted from the cluster: nothing is left to migrate, undo or restore on
    it, so it ends ``SKIPPED`` with ``GONE`` as its error (``migrator status`` shows why; the
    run goes on with the other nodes). If a node of that name joins again it starts on Calico,
    and ``migrator retry --node`` sends it through the migration afresh."""
    move(out, ctx, N.SKIPPED, GONE, error=GONE)


def _step(record: NodeRecord) -> str | None:
    return record.intent.step if record.intent is not None else None


def step_node(record: NodeRecord, ctx: StepContext) -> StepOutcome:
    """Advance one in-flight node as far as the observation allows (a node no longer in the
    cluster ends ``SKIPPED``, see ``gone``)."""
    out = StepOutcome(record=record)
    for _ in range(len(N) + 2):
        current = out.record
        if current.phase.terminal:
            break
        node = ctx.obs.node_by_name.get(current.name)
        if current.phase is N.UNCORDONED:
            move(out, ctx, N.DONE, "migrated to Cilium")
            break
        if current.phase is N.ROLLING_BACK:
            rollback_step(out, ctx)
        elif node is None:
            gone(out, ctx)
        else:
            assert current.intent is not None, f"in-flight node {current.name} has no step"
            step, first = current.intent.step, first_step(ctx.plan)
            if current.phase is N.PENDING and step in ("cordon", "label") and step != first:
                # the placement changed on resume (a node blocked in place is drained instead)
                out.record = current = current.model_copy(update={"intent": Intent(step=first)})
                step = first
            row = FORWARD[step]
            way = advance(row, NodeCursor(out=out, ctx=ctx, node=node, row=row.step))
            if way is not None:
                _apply(out, ctx, way)
        if out.halt is not None or (out.record.phase is current.phase and _step(out.record) == _step(current)):
            break
    return out
