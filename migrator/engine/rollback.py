"""Putting one node back on Calico: the ``ROLLING_BACK`` stages, as rows (``ROLLBACK``).

A rollback starts automatically when a node's connectivity gate fails, or on call
(``migrator rollback``). Its stages, recorded in the node's intent and each observed before
the next begins:

1. ``cordon`` — keep new pods off the node while its network changes under them;
2. ``unlabel`` — remove the migration label, so the CiliumNodeConfig no longer selects it;
3. ``restart-agent`` — the new agent starts without the per-node migration config;
4. ``restore-cni`` — a node-local pod renames ``*.cilium_bak`` back and removes
   ``05-cilium.conflist`` (the agent keeps that file when ``cni-uninstall`` is false, and the
   kubelet uses the first config by name, so it must go after the restart);
5. ``recycle`` — pods holding Cilium IPs are evicted (PDB-covered) or deleted, and the node's
   DaemonSet pods come back with Calico IPs;
6. ``probe`` — the gate again, now expecting the node's probe pod on Calico;
7. ``restore`` — the node's recorded prior state (cordon, migration label), exactly.

A node whose rollback starts before it was switched (before ``LABELED``) skips every stage but
``unlabel`` and ``restore``. Every stage is idempotent and re-derived from observation after a
crash. The whole rollback has one deadline (``rollback.timeout``, from the move to
``ROLLING_BACK``); missing it, or a stage that cannot succeed, marks the node ``FAILED`` and
leaves it cordoned — a person must look.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from migrator.engine.actions import Action, Cordon, CreatePod, DeletePod, RestoreNodeState, UnlabelNode
from migrator.engine.node_steps import (
    GONE,
    NodeCursor,
    StepContext,
    StepOutcome,
    agent_replaced,
    clean_verify_pod,
    move,
    recycle_left,
    send_agent_restart,
    send_recycle,
)
from migrator.engine.pods import rollback_pod_name
from migrator.engine.probe_gate import gate_deadline, gate_round, verdict
from migrator.engine.rows import Row, advance, validate
from migrator.model.checkpoint import ROLLBACK_STAGES, Intent, PriorNodeState, RollbackStage, truncate_error
from migrator.model.observation import NODE_ACTION_ANNOTATION, PodFacts
from migrator.model.plan import MIGRATION_LABEL, format_duration
from migrator.model.pod import PodRequest
from migrator.model.states import NodePhase

N = NodePhase
AUTOMATIC = "automatic: "      # prefix of the reason of a rollback the forward run started itself
NOT_SWITCHED = (N.PENDING, N.CORDONED, N.DRAINED)
STAGE_NAMED: dict[str, RollbackStage] = {stage: stage for stage in get_args(RollbackStage)}
RESTORE_CNI_SCRIPT = """set -eu
cd /host/etc/cni/net.d
for f in *.cilium_bak; do
  [ -e "$f" ] && mv -f "$f" "${f%.cilium_bak}"
done
rm -f 05-cilium.conflist
ls -1
"""


def undoable(phase: NodePhase, intent: Intent | None) -> bool:
    """Whether a node in ``phase`` has anything a rollback could undo."""
    if phase in (N.SKIPPED, N.ROLLED_BACK):
        return False
    return not (phase is N.PENDING and intent is None)


def begin_rollback(out: StepOutcome, ctx: StepContext, reason: str) -> None:
    """Move the node to ROLLING_BACK and run as many stages as the observation allows."""
    record = out.record
    node = ctx.obs.node_by_name.get(record.name)
    prior = record.prior
    if prior is None:  # rolled back before it was started: what we see now is its prior state
        prior = PriorNodeState(unschedulable=bool(node and node.unschedulable),
                               label=node.labels.get(MIGRATION_LABEL) if node else None)
    switched = record.phase not in NOT_SWITCHED
    move(out, ctx, N.ROLLING_BACK, f"rolling back: {reason}")
    first: RollbackStage = "cordon" if switched else "unlabel"
    out.record = out.record.model_copy(update={
        "intent": Intent(step="rollback", stage=first, switched=switched), "prior": prior,
        "rollback_reason": truncate_error(reason), "attempt": out.record.attempt})
    rollback_step(out, ctx)


def rollback_step(out: StepOutcome, ctx: StepContext) -> None:
    """Advance a rolling-back node through as many stages as are already done."""
    for _ in range(len(ROLLBACK_STAGES) + 1):
        intent = out.record.intent
        assert intent is not None and intent.stage is not None
        node = ctx.obs.node_by_name.get(out.record.name)
        if node is None:   # deleted from the cluster: nothing left to put back on Calico
            move(out, ctx, N.SKIPPED, GONE, error=GONE)
            return
        row = ROLLBACK[intent.stage]
        way = advance(row, NodeCursor(out=out, ctx=ctx, node=node, row=f"rollback:{row.step}"))
        if way is None:
            out.note = f"rolling back ({intent.stage}): {out.note}" if out.note else f"rolling back ({intent.stage})"
            return
        if way.kind in ("failed", "timeout"):
            move(out, ctx, N.FAILED, f"rollback {'timed out' if way.kind == 'timeout' else 'failed'}",
                 error=f"rollback stage {intent.stage}: {way.why}")
            return
        if way.to == N.ROLLED_BACK:
            move(out, ctx, N.ROLLED_BACK, f"rolled back to Calico: {out.record.rollback_reason or 'rolled back'}")
            return
        out.record = out.record.model_copy(update={
            "intent": Intent(step="rollback", stage=STAGE_NAMED[way.to], switched=intent.switched)})


def _not_switched(c: NodeCursor) -> str | None:
    return None if c.intent.switched else "the node was never switched"


def _timeout_error(c: NodeCursor) -> str:
    return f"not done within {format_duration(c.plan.rollback.timeout)}; the node stays cordoned"


def _cordoned(c: NodeCursor) -> str | None:
    return "cordoned" if c.node.unschedulable else None


def _unlabelled(c: NodeCursor) -> str | None:
    return None if MIGRATION_LABEL in c.node.labels else f"{MIGRATION_LABEL} removed"


def _restore_pod(c: NodeCursor) -> PodFacts | None:
    return c.ctx.obs.pod(c.plan.verify.namespace, rollback_pod_name(c.node.name))


def _cni_restored(c: NodeCursor) -> str | None:
    pod = _restore_pod(c)
    ours = pod is not None and c.intent.sent_at is not None   # a pod from an earlier attempt proves nothing
    return "Calico's CNI config restored" if ours and pod is not None and pod.phase == "Succeeded" else None


def _remove_restore_pod(c: NodeCursor) -> list[Action]:
    pod = _restore_pod(c)
    if pod is None:
        return []
    return [DeletePod(node=c.node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                      reason="node-action-cleanup")]


def _cni_restore_failed(c: NodeCursor) -> str | None:
    pod = _restore_pod(c)
    if pod is None or c.intent.sent_at is None or pod.phase != "Failed":
        return None
    return f"pod {pod.key} failed; read its log: kubectl -n {pod.namespace} logs {pod.name}"


def _restore_cni(c: NodeCursor) -> None:
    plan, node = c.plan, c.node
    pod = _restore_pod(c)
    if pod is not None and c.intent.sent_at is None:
        if not pod.deleting:
            c.emit(_remove_restore_pod(c))
        c.say("removing an earlier restore pod")
        return
    if pod is None and c.pending.due(c.now):
        c.sent([CreatePod(node=node.name, purpose="node-action", pod=PodRequest(
            node_name=node.name, namespace=plan.verify.namespace, name=rollback_pod_name(node.name),
            image=plan.rollback.image, command=("/bin/sh", "-c", RESTORE_CNI_SCRIPT),
            annotations={NODE_ACTION_ANNOTATION: "restore-calico-cni", "migrator.io/node": node.name},
            labels={"app.kubernetes.io/name": "migrator-rollback", "app.kubernetes.io/managed-by": "migrator"},
            host_network=True, privileged=True, host_path_mounts=(("/etc/cni/net.d", "/host/etc/cni/net.d"),)))])
    c.say("restoring Calico's CNI config on the node")


def _back_on_calico(c: NodeCursor) -> str | None:
    if not c.ctx.obs.observes_pods_of(c.node.name) or recycle_left(c, to_cilium=False):
        return None
    return "every pod on the node has a Calico IP"


def _recycle(c: NodeCursor) -> None:
    if not c.ctx.obs.observes_pods_of(c.node.name):
        c.say("waiting for the node's pods to be observed")
        return
    clean_verify_pod(c.out, c.ctx)   # kept as a probe peer if the run stopped after the switch
    send_recycle(c, to_cilium=False)


def _probes_off(c: NodeCursor) -> str | None:
    return "the node was never switched" if not c.intent.switched else (
        None if c.plan.probes.enabled else "probes disabled by the plan")


def _gate_passed(c: NodeCursor) -> str | None:
    view = verdict(c, expect_cilium=False, same_node_peer=None)
    if not view.passed:
        return None
    summary = view.summary(c.intent.failures)
    c.out.record = c.record.model_copy(update={"probes": f"after rollback {summary}"})
    return f"connectivity on Calico passed ({summary})"


def _gate_failure(c: NodeCursor) -> str:
    return "connectivity after rollback: " + verdict(c, expect_cilium=False, same_node_peer=None).summary(
        c.intent.failures)


def _probe(c: NodeCursor) -> None:
    gate_round(c, verdict(c, expect_cilium=False, same_node_peer=None))


def _prior_label(c: NodeCursor) -> tuple[PriorNodeState, str | None]:
    prior = c.record.prior or PriorNodeState(unschedulable=False)
    # the migration label is never put back as "true": that would switch the node again
    return prior, None if prior.label == "true" else prior.label


def _prior_restored(c: NodeCursor) -> str | None:
    prior, label = _prior_label(c)
    if c.node.unschedulable == prior.unschedulable and c.node.labels.get(MIGRATION_LABEL) == label \
            and c.intent.sent_at is not None:
        return "prior state restored"
    return None


def _send_restore(c: NodeCursor) -> list[Action]:
    prior, label = _prior_label(c)
    return [RestoreNodeState(node=c.node.name, unschedulable=prior.unschedulable,
                             label_key=MIGRATION_LABEL, label_value=label)]


def _limit(c: NodeCursor) -> timedelta:
    return c.plan.rollback.timeout


def _stage(**fields: Any) -> Row[NodeCursor]:
    """A stage row under the rollback's one deadline."""
    return Row(**{"timeout": _limit, "on_timeout": N.FAILED, "timeout_error": _timeout_error,
                  "timeout_doc": "`rollback.timeout` for the whole rollback", **fields})


ROWS: tuple[Row[NodeCursor], ...] = (
    _stage(step="cordon", done=_cordoned, done_doc="node observed unschedulable", skip=_not_switched,
        skip_doc="the node was never switched", send=lambda c: [Cordon(node=c.node.name)], sends=("cordon",),
        doing="cordoning", then="unlabel"),
    _stage(step="unlabel", done=_unlabelled, done_doc=f"`{MIGRATION_LABEL}` absent from the node",
        send=lambda c: [UnlabelNode(node=c.node.name, key=MIGRATION_LABEL)], sends=("unlabel-node",),
        doing=f"removing {MIGRATION_LABEL}", then="restart-agent"),
    _stage(step="restart-agent", done=agent_replaced, done_doc="a new agent pod (not the recorded uid) is Ready",
        skip=_not_switched, skip_doc="the node was never switched", work=send_agent_restart, sends=("delete-pod",),
        then="restore-cni"),
    _stage(step="restore-cni", done=_cni_restored, done_doc="our restore pod Succeeded (then removed)",
        on_done=_remove_restore_pod, skip=_not_switched, skip_doc="the node was never switched",
        work=_restore_cni, sends=("create-pod", "delete-pod"), failed=_cni_restore_failed,
        on_failed=N.FAILED, failed_doc="the restore pod Failed", then="recycle"),
    _stage(step="recycle", done=_back_on_calico, done_doc="every pod on the node has a Calico IP, replacements Ready",
        skip=_not_switched, skip_doc="the node was never switched", work=_recycle,
        sends=("evict-pod", "delete-pod"), then="probe"),
    _stage(step="probe", done=_gate_passed, done_doc="every check passes with the node's probe pod on Calico",
        skip=_probes_off, skip_doc="never switched, or `probes.enabled` is false", work=_probe,
        sends=("run-probes",), then="restore", timeout_error=_gate_failure,
        timeout=lambda c: gate_deadline(verdict(c, expect_cilium=False, same_node_peer=None), _limit(c))),
    _stage(step="restore", done=_prior_restored, done_doc="the node's prior cordon and label observed, after our restore",
        send=_send_restore, sends=("restore-node-state",), doing="restoring the node's prior state",
        then=N.ROLLED_BACK),
)
ROLLBACK: dict[str, Row[NodeCursor]] = {row.step: row for row in ROWS}
validate("rollback stages", ROLLBACK, ("cordon", "unlabel"), frozenset({N.ROLLED_BACK.value, N.FAILED.value}))
if tuple(ROLLBACK) != ROLLBACK_STAGES:
    raise RuntimeError(f"rollback rows {tuple(ROLLBACK)} differ from the recorded stages {ROLLBACK_STAGES}")
