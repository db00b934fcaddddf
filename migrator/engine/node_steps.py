"""The parts every node machine is built from: the decision's context, one node's outcome,
the cursor the row interpreter runs a node's row with, moves along the transition table, and
the pieces of work shared by the forward steps and the rollback stages (agent restart,
evictions under PodDisruptionBudgets, the recycle, the verification pod's clean-up).

The forward rows live in ``engine.node_rows``, the rollback stages in ``engine.rollback``, and
``engine.steps`` drives a node through them. Non-idempotent work is guarded by the intent: the
agent pod to delete is the recorded uid, evicted pods are recorded by uid, the verification
pod has a deterministic name.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from migrator.engine.actions import Action, DeletePod, EmitEvent, EvictPod
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.ordering import pod_scope
from migrator.engine.pending import RESEND_AFTER, Pending
from migrator.engine.pods import is_agent, owner_key, recycle_view, replaced, verify_pod_name
from migrator.engine.policy_probe import Explained, nothing_explained
from migrator.engine.probes import sampled_suspects
from migrator.engine.table import check_node_move
from migrator.model.checkpoint import (
    Checkpoint,
    Intent,
    IntentStep,
    NodeRecord,
    PolicyBaseline,
    PriorNodeState,
    truncate_error,
)
from migrator.model.observation import ClusterObservation, NodeFacts, PodFacts
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan
from migrator.model.states import NodePhase

AUDIT_LIMIT = 20
N = NodePhase
#: The error recorded on a node deleted from the cluster while the run was going on.
GONE = "node deleted from the cluster during the run"

STEP_OF: dict[NodePhase, IntentStep] = {
    N.PENDING: "cordon", N.CORDONED: "drain", N.DRAINED: "label", N.LABELED: "restart-agent",
    N.AGENT_RESTARTED: "verify", N.CNI_VERIFIED: "recycle", N.PODS_RECYCLED: "probe", N.PROBED: "uncordon",
}
EVENT_OF: dict[NodePhase, tuple[str, Literal["Normal", "Warning"]]] = {
    N.CORDONED: ("MigrationCordoned", "Normal"), N.DRAINED: ("MigrationDrained", "Normal"),
    N.LABELED: ("MigrationLabeled", "Normal"), N.AGENT_RESTARTED: ("MigrationAgentRestarted", "Normal"),
    N.CNI_VERIFIED: ("MigrationVerified", "Normal"), N.PODS_RECYCLED: ("MigrationPodsRecycled", "Normal"),
    N.DONE: ("MigrationCompleted", "Normal"), N.SKIPPED: ("MigrationSkipped", "Warning"),
    N.PROBED: ("MigrationProbed", "Normal"), N.FAILED: ("MigrationFailed", "Warning"),
    N.ROLLING_BACK: ("MigrationRollingBack", "Warning"), N.ROLLED_BACK: ("MigrationRolledBack", "Warning"),
}
#: Moving to these phases removes the node's verification pod (kept as the gate's same-node peer
#: until then; a leftover after a crash goes with the move to DONE).
CLEANS_VERIFY_POD = frozenset({N.PROBED, N.DONE, N.FAILED, N.ROLLING_BACK})


@dataclass(frozen=True)
class StepContext:
    """Inputs shared by every node step of one decision."""

    plan: MigrationPlan
    obs: ClusterObservation
    now: datetime
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    budgets: DisruptionBudgets   # room left in each PDB, spent by this decision's evictions
    busy: frozenset[str] = frozenset()   # nodes in flight: never probe peers
    suspects: frozenset[str] = frozenset()   # nodes in failing sampled pairs: peers of last resort
    policy_baseline: PolicyBaseline | None = None   # the policy probe's table before the run
    explained: Explained = nothing_explained        # flows the current policy gap report explains

    @classmethod
    def of(cls, plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
           explained: Explained = nothing_explained) -> StepContext:
        """The context of one decision over ``cp``: the nodes in flight and the budgets' room."""
        by_name = cp.by_name
        sent_uids = [uid for name in cp.census.evicting for uid in by_name[name].intent.pods]  # type: ignore[union-attr]
        return cls(plan=plan, obs=obs, now=now, network=plan.cilium.network, busy=pod_scope(cp),
                   budgets=DisruptionBudgets(obs, sent=sent_uids),
                   suspects=sampled_suspects(cp.sampling.failures),
                   policy_baseline=cp.policy_baseline, explained=explained)


@dataclass
class StepOutcome:
    """What one node step produced."""

    record: NodeRecord
    actions: list[Action] = field(default_factory=list)
    note: str = ""
    halt: str | None = None
    wake_at: datetime | None = None
    moved: bool = False
    trace: list[tuple[str, str]] = field(default_factory=list)   # (row, action kind) sent, for tests

    def wake(self, moment: datetime | None) -> None:
        """Ask to be woken at ``moment`` even if nothing changes in the cluster."""
        if moment is not None and (self.wake_at is None or moment < self.wake_at):
            self.wake_at = moment


@dataclass
class NodeCursor:
    """One node's row being run by ``rows.advance``: the outcome built so far, the decision's
    context and the node as observed (``memo`` keeps what a row computed once this decision)."""

    out: StepOutcome
    ctx: StepContext
    node: NodeFacts
    row: str = ""
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def plan(self) -> MigrationPlan:
        return self.ctx.plan

    @property
    def now(self) -> datetime:
        return self.ctx.now

    @property
    def record(self) -> NodeRecord:
        return self.out.record

    @property
    def intent(self) -> Intent:
        intent = self.out.record.intent
        assert intent is not None, f"node {self.out.record.name} has no step in progress"
        return intent

    @property
    def pending(self) -> Pending:
        return Pending(self.intent.sent_at)

    @property
    def started_at(self) -> datetime:
        started = self.out.record.phase_started_at
        assert started is not None, f"node {self.out.record.name} has no phase start"
        return started

    def emit(self, actions: Sequence[Action]) -> None:
        self.out.actions.extend(actions)
        self.out.trace.extend((self.row, a.kind) for a in actions)

    def sent(self, actions: Sequence[Action], **changes: object) -> None:
        """Emit ``actions`` and record the send (and ``changes``) in the intent first."""
        self.emit(actions)
        self.out.record = self.out.record.model_copy(
            update={"intent": self.intent.model_copy(update={"sent_at": self.now, **changes})})
        self.out.wake(self.now + RESEND_AFTER)

    def wake(self, moment: datetime | None) -> None:
        self.out.wake(moment)

    def say(self, note: str) -> None:
        self.out.note = note


def move(out: StepOutcome, ctx: StepContext, target: NodePhase, note: str, error: str | None = None) -> None:
    """Move the node along the table, start the next step's intent, emit the phase's Event."""
    record = out.record
    check_node_move(record.phase, target)
    step = STEP_OF.get(target)
    out.record = record.model_copy(update={
        "phase": target, "phase_started_at": ctx.now,
        "intent": Intent(step=step) if step else None,
        "last_error": truncate_error(error) if error else None})
    out.moved = True
    out.note = note
    if target in EVENT_OF:
        reason, kind = EVENT_OF[target]
        out.actions.append(EmitEvent(node=record.name, reason=reason, type=kind,
                                     message=f"{note} (attempt {record.attempt})"))
    if target in CLEANS_VERIFY_POD:
        clean_verify_pod(out, ctx)


def in_place(plan: MigrationPlan) -> bool:
    """The node is switched first and its pods recycled in place: no cordon, no drain."""
    return plan.placement.strategy == "in-place"


def first_step(plan: MigrationPlan) -> IntentStep:
    """A started node's first step: the label in place, else the cordon."""
    return "label" if in_place(plan) else "cordon"


def start(record: NodeRecord, node: NodeFacts, ctx: StepContext) -> NodeRecord:
    """Start a pending node: remember its prior state and write the first intent."""
    prior = PriorNodeState(unschedulable=node.unschedulable, label=node.labels.get(MIGRATION_LABEL))
    return record.model_copy(update={
        "attempt": record.attempt + 1, "phase_started_at": ctx.now, "prior": prior,
        "intent": Intent(step=first_step(ctx.plan)), "last_error": None})


def begin_restore(out: StepOutcome, reason: str) -> None:
    """Switch the node to restoring its prior state (skip, or abort before the switch); the
    ``restore`` row then puts it back and marks it SKIPPED."""
    out.record = out.record.model_copy(update={
        "intent": Intent(step="restore"), "last_error": truncate_error(reason)})


def blocked(out: StepOutcome, ctx: StepContext, reason: str) -> None:
    """The node's pods cannot all be moved: halt the run or skip the node, per the plan."""
    out.record = out.record.model_copy(update={"last_error": truncate_error(reason)})
    if ctx.plan.drain.on_pdb_blocked == "halt":
        out.halt = f"node {out.record.name}: {reason}"
        out.note = out.halt
    else:
        begin_restore(out, reason)


def verify_cleanup(ctx: StepContext, node: str) -> list[Action]:
    """Delete the node's verification pod if it is still there."""
    pod = ctx.obs.pod(ctx.plan.verify.namespace, verify_pod_name(node))
    if pod is None or pod.deleting:
        return []
    return [DeletePod(node=node, namespace=pod.namespace, name=pod.name, uid=pod.uid, reason="verify-cleanup")]


def clean_verify_pod(out: StepOutcome, ctx: StepContext) -> None:
    """Remove the node's verification pod, once per decision."""
    name = out.record.name
    if not any(isinstance(a, DeletePod) and a.reason == "verify-cleanup" and a.node == name for a in out.actions):
        out.actions.extend(verify_cleanup(ctx, name))


def backing_off_at(intent: Intent, now: datetime) -> bool:
    return intent.not_before is not None and now < intent.not_before


#: After a budget's refusal, while the observed budget still shows no room, the server is asked
#: again only this long after the back-off ends: it decides on the same ``disruptionsAllowed``
#: the engine watches, so the room showing wakes the engine at once, and this re-ask is only a
#: safety net for an observation that stopped changing — not a poll by every waiting node.
UNSEEN_ROOM_RECHECK = timedelta(seconds=30)


def recheck_at(intent: Intent) -> datetime | None:
    """When a node refused by a budget asks the server again even though no room shows."""
    if intent.blocked_since is None:
        return None
    return (intent.not_before or intent.blocked_since) + UNSEEN_ROOM_RECHECK


def wake_for_recheck(c: NodeCursor) -> None:
    again = recheck_at(c.intent)
    if again is not None and again > c.now:
        c.wake(again)


def evictable(ctx: StepContext, intent: Intent, pod: PodFacts, *, backing_off: bool) -> bool:
    """Whether this decision sends ``pod``'s eviction (or recycle delete).

    A pod a PodDisruptionBudget guards goes when the observed room of its budgets allows (this
    decision spends it, so two nodes never race for the last unit) — even while its node backs
    off after a budget's 429, since the room is back as soon as the replacement is Ready.
    Without room it is asked once (the server's word, and the message an operator reads), then
    again only at ``recheck_at`` while the budget's room has not changed for as long — and
    never when the room was there and our own evictions took it (a sure refusal). Other pods,
    and every pod during a back-off that no budget caused (the API server throttling), wait the
    back-off out.
    """
    if not ctx.budgets.guarded(pod):
        return not backing_off
    if backing_off and intent.blocked_since is None:
        return False
    if ctx.budgets.take(pod):
        return True
    if backing_off or ctx.budgets.contended(pod):
        return False
    again = recheck_at(intent)
    return again is None or (ctx.now >= again and not ctx.budgets.moving(pod, ctx.now, UNSEEN_ROOM_RECHECK))


def override(c: NodeCursor, pod: PodFacts) -> None:
    """Delete a PDB-blocked pod under the plan's audited override: audit note + Warning event."""
    pdb_override = c.plan.drain.pdb_override
    assert pdb_override is not None
    text = (f"{c.now.isoformat()} pdb-override delete {pod.key} approved_by="
            f"{pdb_override.approved_by}: {pdb_override.reason}")
    notes = (*c.record.audit, truncate_error(text))
    c.out.record = c.record.model_copy(update={"audit": notes[-AUDIT_LIMIT:]})
    c.emit([DeletePod(node=c.record.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                      reason="pdb-override", grace_period_seconds=c.plan.drain.grace_period_seconds),
            EmitEvent(node=c.record.name, reason="MigrationPdbOverride", type="Warning", message=text)])


def new_agent(c: NodeCursor) -> PodFacts | None:
    """The Ready agent pod that replaced the one recorded in the intent, once there is one."""
    intent = c.record.intent
    if intent is None or intent.agent_uid is None:
        return None
    agent = c.plan.cilium.agent
    return next((p for p in c.ctx.obs.agent_pods(c.node.name, agent.namespace, agent.selector)
                 if p.uid != intent.agent_uid and not p.deleting and p.ready and p.phase == "Running"), None)


def agent_replaced(c: NodeCursor) -> str | None:
    fresh = new_agent(c)
    return None if fresh is None else f"agent {fresh.name} restarted and Ready"


def send_agent_restart(c: NodeCursor) -> None:
    """Delete the node's agent pod once (its uid goes into the intent first); re-send if unseen."""
    agent = c.plan.cilium.agent
    intent, node = c.intent, c.node
    if intent.agent_uid is None:
        current = c.ctx.obs.agent_pod(node.name, agent.namespace, agent.selector)
        if current is None:
            c.say("waiting for a cilium agent pod on the node")
            return
        c.sent([DeletePod(node=node.name, namespace=current.namespace, name=current.name,
                          uid=current.uid, reason="agent-restart")], agent_uid=current.uid)
        c.say(f"restarting agent {current.name}")
        return
    old = next((p for p in c.ctx.obs.agent_pods(node.name, agent.namespace, agent.selector)
                if p.uid == intent.agent_uid), None)
    if old is not None and not old.deleting and c.pending.due(c.now):
        c.sent([DeletePod(node=node.name, namespace=old.namespace, name=old.name,
                          uid=old.uid, reason="agent-restart")])
    c.say("waiting for the new agent pod to be Ready")


def recycle_timeout(plan: MigrationPlan) -> timedelta:
    """In place, the recycle does the drain's work too (PDBs may make it wait as long)."""
    return plan.recycle.timeout + (plan.drain.timeout if in_place(plan) else timedelta(0))


def recycle_left(c: NodeCursor, *, to_cilium: bool) -> list[str]:
    """Pods (and awaited replacements) still on the wrong network; empty once settled."""
    key = f"left:{to_cilium}"
    if key not in c.memo:
        pods = c.ctx.obs.pods_on(c.node.name)
        view = recycle_view(pods, c.plan, c.ctx.network, to_cilium=to_cilium)
        waiting = [o for o in c.intent.owners if not replaced(o, pods, c.ctx.network, to_cilium=to_cilium)]
        c.memo[key] = [p.key for p in view.to_recycle + view.terminating] + waiting
    left: list[str] = c.memo[key]
    return left


def send_recycle(c: NodeCursor, *, to_cilium: bool) -> None:
    """Evict the node's pods still on the wrong network, each uid once (DaemonSet pods are deleted:
    their controller recreates them on the node, and no PDB guards them)."""
    plan, now, ctx, node = c.plan, c.now, c.ctx, c.node
    intent = c.intent
    view = recycle_view(ctx.obs.pods_on(node.name), plan, ctx.network, to_cilium=to_cilium)
    backing_off = backing_off_at(intent, now)
    if backing_off:
        c.wake(intent.not_before)
    wake_for_recheck(c)
    resend = c.pending.due(now)
    fresh = [p for p in view.to_recycle
             if not is_agent(p, plan) and (p.uid not in intent.pods or resend)
             and evictable(ctx, intent, p, backing_off=backing_off)]
    if backing_off and not fresh:
        c.say("recycle back-off")
        return
    actions: list[Action] = []
    for pod in fresh:
        if not pod.daemonset or ctx.obs.pdbs_covering(pod):
            actions.append(EvictPod(node=node.name, namespace=pod.namespace, name=pod.name,
                                    uid=pod.uid, grace_period_seconds=plan.drain.grace_period_seconds))
        else:
            actions.append(DeletePod(node=node.name, namespace=pod.namespace, name=pod.name,
                                     uid=pod.uid, reason="recycle" if to_cilium else "rollback"))
    if fresh:
        owners = tuple(dict.fromkeys(intent.owners + tuple(
            k for p in fresh if p.daemonset and (k := owner_key(p)) is not None)))
        uids = tuple(dict.fromkeys(intent.pods + tuple(p.uid for p in fresh)))
        c.sent(actions, pods=uids, owners=owners)
    wrong = "Calico" if to_cilium else "Cilium"
    c.say(f"recycling: {len(view.to_recycle)} pods with {wrong} IPs, {len(view.terminating)} terminating")
