"""One node's next step: from its record and a fresh observation to a new record and actions.

Each phase has a handler that (1) checks whether the effect of the step in progress is
observed — then moves the node along the table and starts the next step — or (2) emits the
step's actions, recording them in the intent first, or (3) waits, or fails at the deadline
``phase_started_at + timeout``. Non-idempotent steps are guarded by the intent: the agent pod
to delete is the recorded uid, evicted pods are recorded by uid, the verification pod has a
deterministic name. A single action is re-sent only after ``RESEND_AFTER`` without its effect
showing (the cache is eventually consistent; a crash may have lost the request).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from migrator.engine.actions import (
    Action,
    Cordon,
    CreatePod,
    DeletePod,
    EmitEvent,
    EvictPod,
    LabelNode,
    RestoreNodeState,
    Uncordon,
)
from migrator.engine.budget import DisruptionBudgets
from migrator.engine.ordering import pod_scope
from migrator.engine.pods import drain_view, is_agent, owner_key, recycle_view, replaced, verify_pod_name
from migrator.engine.probes import sampled_suspects
from migrator.engine.states import NodePhase
from migrator.engine.table import check_node_move
from migrator.model.checkpoint import (
    Checkpoint,
    Intent,
    IntentStep,
    NodeRecord,
    PriorNodeState,
    truncate_error,
)
from migrator.model.observation import ClusterObservation, NodeFacts, PodFacts
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan, format_duration

RESEND_AFTER = timedelta(seconds=20)
AUDIT_LIMIT = 20
N = NodePhase

STEP_OF: dict[NodePhase, IntentStep] = {
    N.PENDING: "cordon", N.CORDONED: "drain", N.DRAINED: "label", N.LABELED: "restart-agent",
    N.AGENT_RESTARTED: "verify", N.CNI_VERIFIED: "recycle", N.PODS_RECYCLED: "probe", N.PROBED: "uncordon",
}
EVENT_OF: dict[NodePhase, tuple[str, str]] = {
    N.CORDONED: ("MigrationCordoned", "Normal"), N.DRAINED: ("MigrationDrained", "Normal"),
    N.LABELED: ("MigrationLabeled", "Normal"), N.AGENT_RESTARTED: ("MigrationAgentRestarted", "Normal"),
    N.CNI_VERIFIED: ("MigrationVerified", "Normal"), N.PODS_RECYCLED: ("MigrationPodsRecycled", "Normal"),
    N.DONE: ("MigrationCompleted", "Normal"), N.SKIPPED: ("MigrationSkipped", "Warning"),
    N.PROBED: ("MigrationProbed", "Normal"), N.FAILED: ("MigrationFailed", "Warning"),
    N.ROLLING_BACK: ("MigrationRollingBack", "Warning"), N.ROLLED_BACK: ("MigrationRolledBack", "Warning"),
}


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

    @classmethod
    def of(cls, plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime) -> StepContext:
        """The context of one decision over ``cp``: the nodes in flight and the budgets' room."""
        sent_uids = [uid for r in cp.nodes if r.intent is not None for uid in r.intent.pods]
        return cls(plan=plan, obs=obs, now=now, network=plan.cilium.network, busy=pod_scope(cp),
                   budgets=DisruptionBudgets(obs, sent=sent_uids),
                   suspects=sampled_suspects(cp.sampling.failures))


@dataclass
class StepOutcome:
    """What one node step produced."""

    record: NodeRecord
    actions: list[Action] = field(default_factory=list)
    note: str = ""
    halt: str | None = None
    wake_at: datetime | None = None
    moved: bool = False

    def wake(self, moment: datetime | None) -> None:
        """Ask to be woken at ``moment`` even if nothing changes in the cluster."""
        if moment is not None and (self.wake_at is None or moment < self.wake_at):
            self.wake_at = moment


def due(intent: Intent, now: datetime) -> bool:
    return intent.sent_at is None or now >= intent.sent_at + RESEND_AFTER


def sent(out: StepOutcome, ctx: StepContext, **changes: object) -> None:
    intent = out.record.intent
    assert intent is not None
    out.record = out.record.model_copy(
        update={"intent": intent.model_copy(update={"sent_at": ctx.now, **changes})})
    out.wake(ctx.now + RESEND_AFTER)


def move(out: StepOutcome, ctx: StepContext, target: NodePhase, note: str,
          error: str | None = None) -> None:
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
        out.actions.append(EmitEvent(node=record.name, reason=reason, type=kind,  # type: ignore[arg-type]
                                     message=f"{note} (attempt {record.attempt})"))


def in_place(plan: MigrationPlan) -> bool:
    """The node is switched first and its pods recycled in place: no cordon, no drain."""
    return plan.placement.strategy == "in-place"


def start(record: NodeRecord, node: NodeFacts, ctx: StepContext) -> NodeRecord:
    """Start a pending node: remember its prior state and write the first intent."""
    prior = PriorNodeState(unschedulable=node.unschedulable, label=node.labels.get(MIGRATION_LABEL))
    return record.model_copy(update={
        "attempt": record.attempt + 1, "phase_started_at": ctx.now, "prior": prior,
        "intent": Intent(step="label" if in_place(ctx.plan) else "cordon"), "last_error": None})


def deadline_of(record: NodeRecord, timeout: timedelta) -> datetime:
    assert record.phase_started_at is not None
    return record.phase_started_at + timeout


def _blocked(out: StepOutcome, ctx: StepContext, reason: str) -> None:
    """Drain cannot finish: halt the run or skip the node, per the plan."""
    out.record = out.record.model_copy(update={"last_error": truncate_error(reason)})
    if ctx.plan.drain.on_pdb_blocked == "halt":
        out.halt = f"node {out.record.name}: {reason}"
        out.note = out.halt
    else:
        begin_restore(out, ctx, reason)


def begin_restore(out: StepOutcome, ctx: StepContext, reason: str) -> None:
    """Switch the node to restoring its prior state (skip or abort before the switch)."""
    out.record = out.record.model_copy(update={
        "intent": Intent(step="restore"), "last_error": truncate_error(reason)})
    restore(out, ctx)


def restore(out: StepOutcome, ctx: StepContext) -> None:
    """Put the node back as it was, then mark it SKIPPED."""
    record = out.record
    node = ctx.obs.node_by_name.get(record.name)
    prior = record.prior or PriorNodeState(unschedulable=False)
    reason = record.last_error or "skipped"
    assert record.intent is not None
    restored = node is None or (node.unschedulable == prior.unschedulable
                                and node.labels.get(MIGRATION_LABEL) == prior.label)
    # Conclude only after our own restore was sent once: a cordon sent just before may not
    # show in the observation yet, and the restore (sent last) is what must win.
    if restored and (node is None or record.intent.sent_at is not None):
        move(out, ctx, N.SKIPPED, f"skipped, prior state restored: {reason}", error=reason)
        return
    if due(record.intent, ctx.now):
        out.actions.append(RestoreNodeState(node=record.name, unschedulable=prior.unschedulable,
                                            label_key=MIGRATION_LABEL, label_value=prior.label))
        sent(out, ctx)
    out.note = "restoring prior node state"


def begin(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    """A started node's first step: the cordon, or (in-place) the label."""
    if in_place(ctx.plan):
        label_in_place(out, ctx, node)
    else:
        cordon(out, ctx, node)


def label_in_place(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    """Label a node that stays schedulable, once its pods could all be evicted.

    The pods are recycled after the switch; a bare pod or emptyDir data that the plan's drain
    rules protect would be lost then, so it blocks the node here, before anything changed. A pod
    whose PodDisruptionBudget allows no disruption, and will not once its starting pods are
    Ready (``DisruptionBudgets.recovers``), is waited for, up to ``drain.timeout``,
    then the node is halted on or skipped as ``drain.on_pdb_blocked`` says: a node is never
    switched while its pods could not be moved onto Cilium.
    """
    intent = out.record.intent
    assert intent is not None
    if intent.sent_at is None and node.labels.get(MIGRATION_LABEL) != "true":
        if not ctx.obs.observes_pods_of(node.name):
            out.note = "waiting for the node's pods to be observed"
            return
        view = drain_view(ctx.obs.pods_on(node.name), ctx.plan)
        if view.blocked:
            pod, why = view.blocked[0]
            _blocked(out, ctx, f"in-place recycle blocked: {pod.key} {why}")
            return
        held = next(((p, b) for p in view.to_evict for b in ctx.budgets.guarding(p)
                     if not ctx.budgets.recovers(b, ctx.now)), None)
        if held is not None:
            pod, pdb = held
            why = f"{pod.key} is guarded by PodDisruptionBudget {pdb.namespace}/{pdb.name} allowing no disruption"
            deadline = deadline_of(out.record, ctx.plan.drain.timeout)
            if ctx.now >= deadline:
                _blocked(out, ctx, f"in-place recycle blocked for {format_duration(ctx.plan.drain.timeout)}: "
                                   f"{why}")
                return
            out.wake(deadline)
            out.note = f"waiting before the switch: {why}"
            return
    label(out, ctx, node)


def cordon(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    if node.unschedulable:
        move(out, ctx, N.CORDONED, "cordoned")
        return
    assert out.record.intent is not None
    if due(out.record.intent, ctx.now):
        out.actions.append(Cordon(node=node.name))
        sent(out, ctx)
    out.note = "cordoning"


def drain(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    plan, now, record = ctx.plan, ctx.now, out.record
    intent = record.intent
    assert intent is not None
    if not ctx.obs.observes_pods_of(node.name):
        out.note = "waiting for the node's pods to be observed"
        return
    view = drain_view(ctx.obs.pods_on(node.name), plan)
    if view.drained:
        move(out, ctx, N.DRAINED, "drained")
        return
    if view.blocked:
        pod, why = view.blocked[0]
        _blocked(out, ctx, f"drain blocked: {pod.key} {why}")
        return
    deadline = deadline_of(record, plan.drain.timeout)
    override = plan.drain.pdb_override
    overriding = (override is not None and intent.blocked_since is not None
                  and now >= intent.blocked_since + override.after)
    if now >= deadline and view.to_evict and not overriding:
        names = ", ".join(p.key for p in view.to_evict[:5])
        _blocked(out, ctx, f"drain timed out after {format_duration(plan.drain.timeout)}: "
                           f"still evicting {names}")
        return
    out.wake(deadline)
    if override is not None and intent.blocked_since is not None and not overriding:
        out.wake(intent.blocked_since + override.after)
    backing_off = not overriding and backing_off_at(intent, now)
    wake_for_recheck(out, intent, now)
    resend = due(intent, now)
    fresh = [p for p in view.to_evict if p.uid not in intent.pods or resend]
    chosen: list[PodFacts] = []
    forced = 0
    for pod in fresh:
        if overriding and ctx.budgets.guarded(pod):
            _override(out, ctx, pod)
            forced += 1
        elif evictable(ctx, intent, pod, backing_off=backing_off):
            out.actions.append(EvictPod(node=node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                        grace_period_seconds=plan.drain.grace_period_seconds))
        else:
            continue
        chosen.append(pod)
    if chosen:
        uids = tuple(dict.fromkeys(intent.pods + tuple(p.uid for p in chosen)))
        sent(out, ctx, pods=uids)
    if backing_off:
        out.wake(intent.not_before)
        if not chosen:
            out.note = f"eviction back-off, {len(view.to_evict)} pods left"
            return
    out.note = (f"draining: {len(view.to_evict)} to evict ({forced} by PDB override), "
                f"{len(view.terminating)} terminating")


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


def wake_for_recheck(out: StepOutcome, intent: Intent, now: datetime) -> None:
    again = recheck_at(intent)
    if again is not None and again > now:
        out.wake(again)


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


def _override(out: StepOutcome, ctx: StepContext, pod: PodFacts) -> None:
    """Delete a PDB-blocked pod under the plan's audited override: audit note + Warning event."""
    override = ctx.plan.drain.pdb_override
    assert override is not None
    text = (f"{ctx.now.isoformat()} pdb-override delete {pod.key} approved_by="
            f"{override.approved_by}: {override.reason}")
    notes = (*out.record.audit, truncate_error(text))
    out.record = out.record.model_copy(update={"audit": notes[-AUDIT_LIMIT:]})
    out.actions.append(DeletePod(node=out.record.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                 reason="pdb-override",
                                 grace_period_seconds=ctx.plan.drain.grace_period_seconds))
    out.actions.append(EmitEvent(node=out.record.name, reason="MigrationPdbOverride", type="Warning",
                                 message=text))


def label(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    if node.labels.get(MIGRATION_LABEL) == "true":
        move(out, ctx, N.LABELED, f"labelled {MIGRATION_LABEL}=true")
        return
    assert out.record.intent is not None
    if due(out.record.intent, ctx.now):
        out.actions.append(LabelNode(node=node.name, key=MIGRATION_LABEL, value="true"))
        sent(out, ctx)
    out.note = "labelling"


def restart_agent(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    agent = ctx.plan.cilium.agent
    fresh = new_agent(out.record.intent, ctx, node)
    if fresh is not None:
        move(out, ctx, N.AGENT_RESTARTED, f"agent {fresh.name} restarted and Ready")
        return
    deadline = deadline_of(out.record, agent.restart_timeout)
    if ctx.now >= deadline:
        move(out, ctx, N.FAILED, "agent restart failed",
             error=f"no new Ready cilium agent pod on {node.name} within {format_duration(agent.restart_timeout)}")
        return
    out.wake(deadline)
    send_agent_restart(out, ctx, node)


def new_agent(intent: Intent | None, ctx: StepContext, node: NodeFacts) -> PodFacts | None:
    """The Ready agent pod that replaced the one recorded in the intent, once there is one."""
    if intent is None or intent.agent_uid is None:
        return None
    agent = ctx.plan.cilium.agent
    return next((p for p in ctx.obs.agent_pods(node.name, agent.namespace, agent.selector)
                 if p.uid != intent.agent_uid and not p.deleting and p.ready and p.phase == "Running"), None)


def send_agent_restart(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    """Delete the node's agent pod once (its uid goes into the intent first); re-send if unseen."""
    agent = ctx.plan.cilium.agent
    intent = out.record.intent
    assert intent is not None
    if intent.agent_uid is None:
        current = ctx.obs.agent_pod(node.name, agent.namespace, agent.selector)
        if current is None:
            out.note = "waiting for a cilium agent pod on the node"
            return
        out.actions.append(DeletePod(node=node.name, namespace=current.namespace, name=current.name,
                                     uid=current.uid, reason="agent-restart"))
        sent(out, ctx, agent_uid=current.uid)
        out.note = f"restarting agent {current.name}"
        return
    old = next((p for p in ctx.obs.agent_pods(node.name, agent.namespace, agent.selector)
                if p.uid == intent.agent_uid), None)
    if old is not None and not old.deleting and due(intent, ctx.now):
        out.actions.append(DeletePod(node=node.name, namespace=old.namespace, name=old.name,
                                     uid=old.uid, reason="agent-restart"))
        sent(out, ctx)
    out.note = "waiting for the new agent pod to be Ready"


def verify(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    plan = ctx.plan
    intent = out.record.intent
    assert intent is not None
    name = verify_pod_name(node.name)
    pod = ctx.obs.pod(plan.verify.namespace, name)
    cleanup = [] if pod is None or pod.deleting else [
        DeletePod(node=node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                  reason="verify-cleanup")]
    if pod is not None and not pod.deleting and pod.ip:
        if pod.ip_in(ctx.network) and pod.phase == "Running":
            # kept: the connectivity gate dials it as the probe pod's same-node peer
            move(out, ctx, N.CNI_VERIFIED, f"verification pod got Cilium IP {pod.ip}")
            return
        if not pod.ip_in(ctx.network):
            move(out, ctx, N.FAILED, "verification failed",
                  error=f"verification pod {name} got IP {pod.ip} outside {plan.cilium.pod_cidr}")
            out.actions.extend(cleanup)
            return
    deadline = deadline_of(out.record, plan.verify.timeout)
    if ctx.now >= deadline:
        move(out, ctx, N.FAILED, "verification timed out",
              error=f"verification pod {name} had no Cilium IP within {format_duration(plan.verify.timeout)}")
        out.actions.extend(cleanup)
        return
    out.wake(deadline)
    if pod is None and due(intent, ctx.now):
        out.actions.append(CreatePod(
            node=node.name, purpose="verify", pod=dict(
                node_name=node.name, namespace=plan.verify.namespace, name=name,
                image=plan.verify.image, args=plan.verify.args,
                labels={"app.kubernetes.io/name": "migrator-verify",
                        "app.kubernetes.io/managed-by": "migrator"})))
        sent(out, ctx)
    out.note = "verifying" if pod is None or not pod.deleting else "waiting for an old verification pod to go"


def recycle(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    plan = ctx.plan
    if not plan.recycle.enabled:
        move(out, ctx, N.PODS_RECYCLED, "recycling disabled by the plan")
        return
    if not ctx.obs.observes_pods_of(node.name):
        out.note = "waiting for the node's pods to be observed"
        return
    left = recycle_left(out, ctx, node, to_cilium=True)
    if not left:
        move(out, ctx, N.PODS_RECYCLED, "every pod on the node has a Cilium IP")
        return
    timeout = recycle_timeout(plan)
    deadline = deadline_of(out.record, timeout)
    if ctx.now >= deadline:
        move(out, ctx, N.FAILED, "recycle timed out",
             error=f"pods without a Cilium IP after {format_duration(timeout)}: {', '.join(left[:5])}")
        return
    out.wake(deadline)
    send_recycle(out, ctx, node, to_cilium=True)


def recycle_timeout(plan: MigrationPlan) -> timedelta:
    """In place, the recycle does the drain's work too (PDBs may make it wait as long)."""
    return plan.recycle.timeout + (plan.drain.timeout if in_place(plan) else timedelta(0))


def recycle_left(out: StepOutcome, ctx: StepContext, node: NodeFacts, *, to_cilium: bool) -> list[str]:
    """Pods (and awaited replacements) still on the wrong network; empty once settled."""
    pods = ctx.obs.pods_on(node.name)
    view = recycle_view(pods, ctx.plan, ctx.network, to_cilium=to_cilium)
    intent = out.record.intent
    assert intent is not None
    waiting = [o for o in intent.owners if not replaced(o, pods, ctx.network, to_cilium=to_cilium)]
    return [p.key for p in view.to_recycle + view.terminating] + waiting


def send_recycle(out: StepOutcome, ctx: StepContext, node: NodeFacts, *, to_cilium: bool) -> None:
    """Evict the node's pods still on the wrong network, each uid once (DaemonSet pods are deleted:
    their controller recreates them on the node, and no PDB guards them)."""
    plan, now = ctx.plan, ctx.now
    intent = out.record.intent
    assert intent is not None
    view = recycle_view(ctx.obs.pods_on(node.name), plan, ctx.network, to_cilium=to_cilium)
    backing_off = backing_off_at(intent, now)
    if backing_off:
        out.wake(intent.not_before)
    wake_for_recheck(out, intent, now)
    resend = due(intent, now)
    fresh = [p for p in view.to_recycle
             if not is_agent(p, plan) and (p.uid not in intent.pods or resend)
             and evictable(ctx, intent, p, backing_off=backing_off)]
    if backing_off and not fresh:
        out.note = "recycle back-off"
        return
    for pod in fresh:
        if not pod.daemonset or ctx.obs.pdbs_covering(pod):
            out.actions.append(EvictPod(node=node.name, namespace=pod.namespace, name=pod.name,
                                        uid=pod.uid, grace_period_seconds=plan.drain.grace_period_seconds))
        else:
            out.actions.append(DeletePod(node=node.name, namespace=pod.namespace, name=pod.name,
                                         uid=pod.uid, reason="recycle" if to_cilium else "rollback"))
    if fresh:
        owners = tuple(dict.fromkeys(intent.owners + tuple(
            k for p in fresh if p.daemonset and (k := owner_key(p)) is not None)))
        uids = tuple(dict.fromkeys(intent.pods + tuple(p.uid for p in fresh)))
        sent(out, ctx, pods=uids, owners=owners)
    wrong = "Calico" if to_cilium else "Cilium"
    out.note = f"recycling: {len(view.to_recycle)} pods with {wrong} IPs, {len(view.terminating)} terminating"


def verify_cleanup(ctx: StepContext, node: str) -> list[Action]:
    """Delete the node's verification pod if it is still there."""
    pod = ctx.obs.pod(ctx.plan.verify.namespace, verify_pod_name(node))
    if pod is None or pod.deleting:
        return []
    return [DeletePod(node=node, namespace=pod.namespace, name=pod.name, uid=pod.uid, reason="verify-cleanup")]


def uncordon(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> None:
    entered = out.record.phase_started_at
    if entered is not None and entered < ctx.now and due(out.record.intent, ctx.now):  # type: ignore[arg-type]
        out.actions.extend(verify_cleanup(ctx, node.name))  # a leftover after a crash
    prior = out.record.prior
    if prior is not None and prior.unschedulable:
        move(out, ctx, N.UNCORDONED, "left cordoned: it was cordoned before the migration")
        return
    if not node.unschedulable:
        move(out, ctx, N.UNCORDONED, "uncordoned")
        return
    assert out.record.intent is not None
    if due(out.record.intent, ctx.now):
        out.actions.append(Uncordon(node=node.name))
        sent(out, ctx)
    out.note = "uncordoning"
