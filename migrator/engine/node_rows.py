"""A node's forward steps as rows (``FORWARD``), keyed by the step recorded in its intent.

Each row reads: the step, the phase it runs in, the observation that says it is done (the node
then moves to ``then``), what it sends, the observation that says it cannot succeed, its
timeout, and where each way out leads. Two ways out are not phases: ``blocked`` (the node's
pods cannot all be moved: halt the run or skip the node, per ``drain.on_pdb_blocked``) and
``gate-failed`` (roll the node back when ``rollback.automatic``, else FAILED); the driver in
``engine.steps`` applies them. ``python -m migrator.engine.table`` renders this table.
"""

from __future__ import annotations

from datetime import timedelta

from migrator.engine import policy_steps
from migrator.engine.actions import (
    Action,
    Cordon,
    CreatePod,
    EmitEvent,
    EvictPod,
    LabelNode,
    RestoreNodeState,
    Uncordon,
)
from migrator.engine.node_steps import (
    NodeCursor,
    agent_replaced,
    backing_off_at,
    clean_verify_pod,
    evictable,
    override,
    recycle_left,
    recycle_timeout,
    send_agent_restart,
    send_recycle,
    wake_for_recheck,
)
from migrator.engine.pods import DrainView, drain_view, verify_pod_name
from migrator.engine.probe_gate import Verdict, gate_deadline, gate_round, verdict
from migrator.engine.rows import Row, validate
from migrator.engine.table import check_node_move
from migrator.model.checkpoint import PriorNodeState
from migrator.model.observation import PodFacts
from migrator.model.plan import MIGRATION_LABEL, format_duration
from migrator.model.pod import PodRequest
from migrator.model.states import NodePhase

N = NodePhase
BLOCKED = "blocked"
GATE_FAILED = "gate-failed"
UNOBSERVED = "waiting for the node's pods to be observed"


def _drain_view(c: NodeCursor) -> DrainView | None:
    """The drain's view of the node's pods (None until they are observed)."""
    if "drain" not in c.memo:
        observed = c.ctx.obs.observes_pods_of(c.node.name)
        c.memo["drain"] = drain_view(c.ctx.obs.pods_on(c.node.name), c.plan) if observed else None
    view: DrainView | None = c.memo["drain"]
    return view


# ---------------------------------------------------------------- cordon, drain
def _cordoned(c: NodeCursor) -> str | None:
    return "cordoned" if c.node.unschedulable else None


def _send_cordon(c: NodeCursor) -> list[Action]:
    return [Cordon(node=c.node.name)]


def _drained(c: NodeCursor) -> str | None:
    view = _drain_view(c)
    return "drained" if view is not None and view.drained else None


def _drain_refused(c: NodeCursor) -> str | None:
    view = _drain_view(c)
    if view is None or not view.blocked:
        return None
    pod, why = view.blocked[0]
    return f"drain blocked: {pod.key} {why}"


def _overriding(c: NodeCursor) -> bool:
    rule, since = c.plan.drain.pdb_override, c.intent.blocked_since
    return rule is not None and since is not None and c.now >= since + rule.after


def _drain_timeout(c: NodeCursor) -> timedelta | None:
    view = _drain_view(c)
    if view is None or not view.to_evict or _overriding(c):
        return None
    return c.plan.drain.timeout


def _drain_timeout_error(c: NodeCursor) -> str:
    view = _drain_view(c)
    names = ", ".join(p.key for p in (view.to_evict if view else [])[:5])
    return f"drain timed out after {format_duration(c.plan.drain.timeout)}: still evicting {names}"


def _drain(c: NodeCursor) -> None:
    """Evict the node's pods (each uid once; PDB-guarded ones as their budgets' room allows)."""
    view = _drain_view(c)
    if view is None:
        c.say(UNOBSERVED)
        return
    plan, now, intent, ctx = c.plan, c.now, c.intent, c.ctx
    rule = plan.drain.pdb_override
    overriding = _overriding(c)
    if rule is not None and intent.blocked_since is not None and not overriding:
        c.wake(intent.blocked_since + rule.after)
    backing_off = not overriding and backing_off_at(intent, now)
    wake_for_recheck(c)
    resend = c.pending.due(now)
    fresh = [p for p in view.to_evict if p.uid not in intent.pods or resend]
    chosen: list[PodFacts] = []
    evictions: list[Action] = []
    forced = 0
    for pod in fresh:
        if overriding and ctx.budgets.guarded(pod):
            override(c, pod)
            forced += 1
        elif evictable(ctx, intent, pod, backing_off=backing_off):
            evictions.append(EvictPod(node=c.node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                      grace_period_seconds=plan.drain.grace_period_seconds))
        else:
            continue
        chosen.append(pod)
    if chosen:
        c.sent(evictions, pods=tuple(dict.fromkeys(c.intent.pods + tuple(p.uid for p in chosen))))
    if backing_off:
        c.wake(intent.not_before)
        if not chosen:
            c.say(f"eviction back-off, {len(view.to_evict)} pods left")
            return
    c.say(f"draining: {len(view.to_evict)} to evict ({forced} by PDB override), {len(view.terminating)} terminating")


# ---------------------------------------------------------------- label (the switch)
def _labelled(c: NodeCursor) -> str | None:
    return f"labelled {MIGRATION_LABEL}=true" if c.node.labels.get(MIGRATION_LABEL) == "true" else None


def _precheck(c: NodeCursor) -> tuple[str, str] | None:
    """In place, before the first label: the node is switched only once its pods could all be
    moved — a bare pod or emptyDir data the drain rules protect blocks it, and a pod whose
    PodDisruptionBudget allows no disruption (and will not once its starting pods are Ready,
    ``DisruptionBudgets.recovers``) is waited for, up to ``drain.timeout``."""
    if "precheck" not in c.memo:
        found: tuple[str, str] | None = None
        if c.record.phase is N.PENDING and c.intent.sent_at is None:
            view = _drain_view(c)
            if view is None:
                found = ("wait", UNOBSERVED)
            elif view.blocked:
                pod, why = view.blocked[0]
                found = ("blocked", f"in-place recycle blocked: {pod.key} {why}")
            else:
                budgets = c.ctx.budgets
                held = next(((p, b) for p in view.to_evict for b in budgets.guarding(p)
                             if not budgets.recovers(b, c.now)), None)
                if held is not None:
                    pod, pdb = held
                    found = ("held", f"{pod.key} is guarded by PodDisruptionBudget {pdb.namespace}/{pdb.name} "
                                     "allowing no disruption")
        c.memo["precheck"] = found
    result: tuple[str, str] | None = c.memo["precheck"]
    return result


def _label_refused(c: NodeCursor) -> str | None:
    found = _precheck(c)
    return found[1] if found is not None and found[0] == "blocked" else None


def _label_timeout(c: NodeCursor) -> timedelta | None:
    found = _precheck(c)
    return c.plan.drain.timeout if found is not None and found[0] == "held" else None


def _label_timeout_error(c: NodeCursor) -> str:
    found = _precheck(c)
    return f"in-place recycle blocked for {format_duration(c.plan.drain.timeout)}: {found[1] if found else ''}"


def _label_hold(c: NodeCursor) -> str | None:
    found = _precheck(c)
    if found is not None and found[0] != "blocked":
        return found[1] if found[0] == "wait" else f"waiting before the switch: {found[1]}"
    if policy_steps.continuous(c.plan) and policy_steps.node_gap(c.plan, c.ctx.obs, c.node.name) is None:
        return policy_steps.gap_wait(c.ctx.obs)
    return None


def _send_label(c: NodeCursor) -> list[Action]:
    """The switch; under ``policy.mode: continuous`` the node's gap report goes first: into its
    record (persisted with the intent, before the label is sent) and an Event."""
    actions: list[Action] = []
    gap = policy_steps.node_gap(c.plan, c.ctx.obs, c.node.name)
    if gap is not None:
        text = policy_steps.gap_text(gap)
        c.out.record = c.record.model_copy(update={"policy_gap": text})
        actions.append(EmitEvent(node=c.node.name, reason="MigrationPolicyGap", message=text,
                                 type="Warning" if gap.flows else "Normal"))
    return [*actions, LabelNode(node=c.node.name, key=MIGRATION_LABEL, value="true")]


# ---------------------------------------------------------------- agent restart, verification
def _agent_timeout_error(c: NodeCursor) -> str:
    limit = c.plan.cilium.agent.restart_timeout
    return f"no new Ready cilium agent pod on {c.node.name} within {format_duration(limit)}"


def _verify_pod(c: NodeCursor) -> PodFacts | None:
    return c.ctx.obs.pod(c.plan.verify.namespace, verify_pod_name(c.node.name))


def _verified(c: NodeCursor) -> str | None:
    pod = _verify_pod(c)
    if pod is None or pod.deleting or not pod.ip or not pod.ip_in(c.ctx.network) or pod.phase != "Running":
        return None
    return f"verification pod got Cilium IP {pod.ip}"   # kept: the gate dials it as the same-node peer


def _verify_wrong_ip(c: NodeCursor) -> str | None:
    pod = _verify_pod(c)
    if pod is None or pod.deleting or not pod.ip or pod.ip_in(c.ctx.network):
        return None
    return f"verification pod {pod.name} got IP {pod.ip} outside {c.plan.cilium.pod_cidr}"


def _verify_timeout_error(c: NodeCursor) -> str:
    name = verify_pod_name(c.node.name)
    return f"verification pod {name} had no Cilium IP within {format_duration(c.plan.verify.timeout)}"


def _verify(c: NodeCursor) -> None:
    plan = c.plan
    pod = _verify_pod(c)
    if pod is None and c.pending.due(c.now):
        c.sent([CreatePod(node=c.node.name, purpose="verify", pod=PodRequest(
            node_name=c.node.name, namespace=plan.verify.namespace, name=verify_pod_name(c.node.name),
            image=plan.verify.image, args=plan.verify.args,
            labels={"app.kubernetes.io/name": "migrator-verify", "app.kubernetes.io/managed-by": "migrator"}))])
    c.say("verifying" if pod is None or not pod.deleting else "waiting for an old verification pod to go")


# ---------------------------------------------------------------- recycle
def _recycle_off(c: NodeCursor) -> str | None:
    return None if c.plan.recycle.enabled else "recycling disabled by the plan"


def _recycled(c: NodeCursor) -> str | None:
    if not c.ctx.obs.observes_pods_of(c.node.name) or recycle_left(c, to_cilium=True):
        return None
    return "every pod on the node has a Cilium IP"


def _recycle_timeout(c: NodeCursor) -> timedelta | None:
    return recycle_timeout(c.plan) if c.ctx.obs.observes_pods_of(c.node.name) else None


def _recycle_timeout_error(c: NodeCursor) -> str:
    left = recycle_left(c, to_cilium=True)
    return f"pods without a Cilium IP after {format_duration(recycle_timeout(c.plan))}: {', '.join(left[:5])}"


def _recycle(c: NodeCursor) -> None:
    if not c.ctx.obs.observes_pods_of(c.node.name):
        c.say(UNOBSERVED)
        return
    send_recycle(c, to_cilium=True)


# ---------------------------------------------------------------- the connectivity gate
def _probes_off(c: NodeCursor) -> str | None:
    return None if c.plan.probes.enabled else "probes disabled by the plan"


def _forward_gate(c: NodeCursor) -> Verdict:
    peer = _verify_pod(c)
    usable = peer if peer is not None and peer.ready and not peer.deleting else None
    return verdict(c, expect_cilium=True, same_node_peer=usable)


def _gate_passed(c: NodeCursor) -> str | None:
    view = _forward_gate(c)
    if not view.passed:
        return None
    summary = view.summary(c.intent.failures)
    c.out.record = c.record.model_copy(update={"probes": summary})
    return f"connectivity gate passed ({summary})"


def _gate_failure(c: NodeCursor) -> str:
    return _forward_gate(c).summary(c.intent.failures)


def _probe(c: NodeCursor) -> None:
    gate_round(c, _forward_gate(c))


# ---------------------------------------------------------------- uncordon, restore
def _uncordoned(c: NodeCursor) -> str | None:
    prior = c.record.prior
    if prior is not None and prior.unschedulable:
        return "left cordoned: it was cordoned before the migration"
    return None if c.node.unschedulable else "uncordoned"


def _send_uncordon(c: NodeCursor) -> list[Action]:
    """The uncordon, with the verification pod's removal again first (a crash may have lost it)."""
    clean_verify_pod(c.out, c.ctx)
    return [Uncordon(node=c.node.name)]


def _prior(c: NodeCursor) -> PriorNodeState:
    return c.record.prior or PriorNodeState(unschedulable=False)


def _restored(c: NodeCursor) -> str | None:
    """Concluded only after our own restore was sent once: a cordon sent just before may not
    show in the observation yet, and the restore (sent last) is what must win."""
    prior, node = _prior(c), c.node
    if c.intent.sent_at is None or node.unschedulable != prior.unschedulable \
            or node.labels.get(MIGRATION_LABEL) != prior.label:
        return None
    return f"skipped, prior state restored: {c.record.last_error or 'skipped'}"


def _send_restore(c: NodeCursor) -> list[Action]:
    prior = _prior(c)
    return [RestoreNodeState(node=c.node.name, unschedulable=prior.unschedulable,
                             label_key=MIGRATION_LABEL, label_value=prior.label)]


ROWS: tuple[Row[NodeCursor], ...] = (
    Row(step="cordon", runs_in="`PENDING` (drain, steer)", done=_cordoned, done_doc="node observed unschedulable",
        send=_send_cordon, sends=("cordon",), doing="cordoning", then=N.CORDONED),
    Row(step="drain", runs_in="`CORDONED`", done=_drained, done_doc="no evictable pod left on the node",
        work=_drain, sends=("evict-pod", "delete-pod"),
        failed=_drain_refused, on_failed=BLOCKED, failed_doc="a pod the drain rules protect (bare pod, emptyDir)",
        timeout=_drain_timeout, on_timeout=BLOCKED, timeout_error=_drain_timeout_error,
        timeout_doc="`drain.timeout` while pods remain to evict (none once `drain.pdb_override` applies)",
        then=N.DRAINED),
    Row(step="label", runs_in="`DRAINED`; `PENDING` (in-place)", done=_labelled,
        done_doc=f"`{MIGRATION_LABEL}=true` observed on the node",
        send=_send_label, sends=("label-node",), doing="labelling",
        hold=_label_hold, hold_doc="in place, a pod's PodDisruptionBudget allows no disruption; or, with "
                                   "`policy.mode: continuous`, the node's gap report is not observed yet (it is "
                                   "recorded and sent as an Event with the label)",
        failed=_label_refused, on_failed=BLOCKED, failed_doc="in place: a pod the drain rules protect",
        timeout=_label_timeout, on_timeout=BLOCKED, timeout_error=_label_timeout_error,
        timeout_doc="in place: `drain.timeout` while a budget holds a pod", then=N.LABELED),
    Row(step="restart-agent", runs_in="`LABELED`", done=agent_replaced,
        done_doc="a new agent pod (not the recorded uid) is Ready", work=send_agent_restart, sends=("delete-pod",),
        timeout=lambda c: c.plan.cilium.agent.restart_timeout, on_timeout=N.FAILED,
        timeout_error=_agent_timeout_error, timeout_doc="`cilium.agent.restart_timeout`", then=N.AGENT_RESTARTED),
    Row(step="verify", runs_in="`AGENT_RESTARTED`", done=_verified,
        done_doc="verification pod Running with an IP in the Cilium CIDR", work=_verify, sends=("create-pod",),
        failed=_verify_wrong_ip, on_failed=N.FAILED, failed_doc="verification pod got an IP outside the Cilium CIDR",
        timeout=lambda c: c.plan.verify.timeout, on_timeout=N.FAILED, timeout_error=_verify_timeout_error,
        timeout_doc="`verify.timeout`", then=N.CNI_VERIFIED),
    Row(step="recycle", runs_in="`CNI_VERIFIED`", done=_recycled,
        done_doc="every pod on the node has a Cilium IP, replacements Ready",
        skip=_recycle_off, skip_doc="`recycle.enabled` is false", work=_recycle, sends=("evict-pod", "delete-pod"),
        timeout=_recycle_timeout, on_timeout=N.FAILED, timeout_error=_recycle_timeout_error,
        timeout_doc="`recycle.timeout` (+ `drain.timeout` in place)", then=N.PODS_RECYCLED),
    Row(step="probe", runs_in="`PODS_RECYCLED`", done=_gate_passed,
        done_doc="every connectivity check passed from the node's probe pods",
        skip=_probes_off, skip_doc="`probes.enabled` is false", work=_probe, sends=("run-probes",),
        timeout=lambda c: gate_deadline(_forward_gate(c), c.plan.probes.checks.deadline), on_timeout=GATE_FAILED,
        timeout_error=_gate_failure,
        timeout_doc="`probes.checks.deadline` (none while only checks the API server did not relay stand in the way)",
        then=N.PROBED),
    Row(step="uncordon", runs_in="`PROBED`", done=_uncordoned,
        done_doc="node observed schedulable (or it was cordoned before us)",
        send=_send_uncordon, sends=("uncordon", "delete-pod"), doing="uncordoning", then=N.UNCORDONED),
    Row(step="restore", runs_in="any phase before `LABELED` (skip, abort)", done=_restored,
        done_doc="the node's prior cordon and label observed, after our restore was sent",
        send=_send_restore, sends=("restore-node-state",), doing="restoring prior node state", then=N.SKIPPED),
)
FORWARD: dict[str, Row[NodeCursor]] = {row.step: row for row in ROWS}

#: Where a way out of a row leads when it is not a row: the phases whose step is a row follow it.
FOLLOW = {N.CORDONED.value: "drain", N.DRAINED.value: "label", N.LABELED.value: "restart-agent",
          N.AGENT_RESTARTED.value: "verify", N.CNI_VERIFIED.value: "recycle", N.PODS_RECYCLED.value: "probe",
          N.PROBED.value: "uncordon"}
ENDS = frozenset({N.UNCORDONED.value, N.FAILED.value, N.SKIPPED.value, BLOCKED, GATE_FAILED})
validate("node steps", FORWARD, ("cordon", "label", "restore"), ENDS, FOLLOW)

#: The phases each row runs in (its moves are checked against the transition table).
RUNS_IN: dict[str, tuple[NodePhase, ...]] = {
    "cordon": (N.PENDING,), "drain": (N.CORDONED,), "label": (N.PENDING, N.DRAINED), "restart-agent": (N.LABELED,),
    "verify": (N.AGENT_RESTARTED,), "recycle": (N.CNI_VERIFIED,), "probe": (N.PODS_RECYCLED,),
    "uncordon": (N.PROBED,), "restore": (N.PENDING, N.CORDONED)}
#: Ways out that only one of a row's phases can take (in place, the label's pre-checks).
ONLY_FROM = {("label", "failed"): (N.PENDING,), ("label", "timeout"): (N.PENDING,)}
_LEADS = {BLOCKED: (N.SKIPPED,), GATE_FAILED: (N.ROLLING_BACK, N.FAILED)}
for _step, _row in FORWARD.items():
    for _kind, _target in _row.ways.items():
        for _source in ONLY_FROM.get((_step, _kind), RUNS_IN[_step]):
            for _phase in _LEADS[_target] if _target in _LEADS else (NodePhase(_target),):
                check_node_move(_source, _phase)
