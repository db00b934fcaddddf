"""Putting one node back on Calico: the ``ROLLING_BACK`` stages.

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

A node whose rollback starts before it was switched (before ``LABELED``) only needs
``unlabel`` and ``restore``. Every stage is idempotent and re-derived from observation after
a crash. The whole rollback has one deadline (``rollback.timeout``); missing it marks the
node ``FAILED`` and leaves it cordoned — a person must look.
"""

from __future__ import annotations

from migrator.engine.actions import Cordon, CreatePod, DeletePod, RestoreNodeState, UnlabelNode
from migrator.engine.node_steps import (
    StepContext,
    StepOutcome,
    deadline_of,
    due,
    move,
    new_agent,
    recycle_left,
    send_agent_restart,
    send_recycle,
    sent,
    verify_cleanup,
)
from migrator.engine.pods import rollback_pod_name
from migrator.engine.probe_gate import run_gate
from migrator.engine.states import NodePhase
from migrator.model.checkpoint import ROLLBACK_STAGES, Intent, PriorNodeState, RollbackStage, truncate_error
from migrator.model.observation import NODE_ACTION_ANNOTATION, NodeFacts
from migrator.model.plan import MIGRATION_LABEL, format_duration

N = NodePhase
AUTOMATIC = "automatic: "      # prefix of the reason of a rollback the forward run started itself
NOT_SWITCHED = (N.PENDING, N.CORDONED, N.DRAINED)
RESTORE_ONLY: tuple[RollbackStage, ...] = ("unlabel", "restore")
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


def _stages(intent: Intent) -> tuple[RollbackStage, ...]:
    return ROLLBACK_STAGES if intent.switched else RESTORE_ONLY  # type: ignore[return-value]


def rollback_step(out: StepOutcome, ctx: StepContext) -> None:
    """Advance a rolling-back node through as many stages as are already done."""
    plan = ctx.plan
    deadline = deadline_of(out.record, plan.rollback.timeout)
    for _ in range(len(ROLLBACK_STAGES) + 1):
        intent = out.record.intent
        assert intent is not None and intent.stage is not None
        node = ctx.obs.node_by_name.get(out.record.name)
        if node is None:
            move(out, ctx, N.FAILED, "node vanished while rolling back",
                 error=f"node {out.record.name} no longer exists")
            return
        sent_before = len(out.actions)
        try:
            done = STAGES[intent.stage](out, ctx, node)
        except StageFailed as exc:
            del out.actions[sent_before:]
            move(out, ctx, N.FAILED, "rollback failed", error=f"rollback stage {intent.stage}: {exc}")
            return
        if not done:
            if ctx.now >= deadline:
                del out.actions[sent_before:]
                move(out, ctx, N.FAILED, "rollback timed out",
                     error=f"rollback stage {intent.stage} not done within "
                           f"{format_duration(plan.rollback.timeout)}; the node stays cordoned")
                return
            out.wake(deadline)
            out.note = f"rolling back ({intent.stage}): {out.note}" if out.note else f"rolling back ({intent.stage})"
            return
        stages = _stages(intent)
        index = stages.index(intent.stage)
        if index + 1 == len(stages):
            reason = out.record.rollback_reason or "rolled back"
            move(out, ctx, N.ROLLED_BACK, f"rolled back to Calico: {reason}")
            return
        out.record = out.record.model_copy(update={
            "intent": Intent(step="rollback", stage=stages[index + 1], switched=intent.switched)})


class StageFailed(Exception):
    """A stage cannot succeed (the node stays as it is, FAILED)."""


def _cordon(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    if node.unschedulable:
        return True
    if due(out.record.intent, ctx.now):  # type: ignore[arg-type]
        out.actions.append(Cordon(node=node.name))
        sent(out, ctx)
    out.note = "cordoning"
    return False


def _unlabel(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    if MIGRATION_LABEL not in node.labels:
        return True
    if due(out.record.intent, ctx.now):  # type: ignore[arg-type]
        out.actions.append(UnlabelNode(node=node.name, key=MIGRATION_LABEL))
        sent(out, ctx)
    out.note = f"removing {MIGRATION_LABEL}"
    return False


def _restart_agent(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    if new_agent(out.record.intent, ctx, node) is not None:
        return True
    send_agent_restart(out, ctx, node)
    return False


def _restore_cni(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    plan = ctx.plan
    intent = out.record.intent
    assert intent is not None
    name = rollback_pod_name(node.name)
    pod = ctx.obs.pod(plan.verify.namespace, name)
    if pod is not None and intent.sent_at is None:
        # a pod from an earlier attempt: it proves nothing about this one; remove it first
        if not pod.deleting:
            out.actions.append(DeletePod(node=node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                         reason="node-action-cleanup"))
        out.note = "removing an earlier restore pod"
        return False
    if pod is not None and pod.phase == "Succeeded":
        out.actions.append(DeletePod(node=node.name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                     reason="node-action-cleanup"))
        return True
    if pod is not None and pod.phase == "Failed":
        raise StageFailed(f"pod {pod.key} failed; read its log: kubectl -n {pod.namespace} logs {pod.name}")
    if pod is None and due(intent, ctx.now):
        out.actions.append(CreatePod(
            node=node.name, purpose="node-action", pod=dict(
                node_name=node.name, namespace=plan.verify.namespace, name=name,
                image=plan.rollback.image, command=("/bin/sh", "-c", RESTORE_CNI_SCRIPT),
                annotations={NODE_ACTION_ANNOTATION: "restore-calico-cni", "migrator.io/node": node.name},
                labels={"app.kubernetes.io/name": "migrator-rollback", "app.kubernetes.io/managed-by": "migrator"},
                host_network=True, privileged=True, host_path_mounts=(("/etc/cni/net.d", "/host/etc/cni/net.d"),))))
        sent(out, ctx)
    out.note = "restoring Calico's CNI config on the node"
    return False


def _recycle(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    if not ctx.obs.observes_pods_of(node.name):
        out.note = "waiting for the node's pods to be observed"
        return False
    out.actions.extend(verify_cleanup(ctx, node.name))  # kept as a probe peer if we stopped after the switch
    if not recycle_left(out, ctx, node, to_cilium=False):
        return True
    send_recycle(out, ctx, node, to_cilium=False)
    return False


def _probe(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    if not ctx.plan.probes.enabled:
        return True
    deadline = deadline_of(out.record, ctx.plan.rollback.timeout)
    verdict = run_gate(out, ctx, node, deadline=deadline, expect_cilium=False, same_node_peer=None)
    if verdict.failed:
        raise StageFailed(f"connectivity after rollback: {verdict.summary}")
    if verdict.passed:
        out.record = out.record.model_copy(update={"probes": f"after rollback {verdict.summary}"})
    return verdict.passed


def _restore(out: StepOutcome, ctx: StepContext, node: NodeFacts) -> bool:
    record = out.record
    intent = record.intent
    assert intent is not None
    prior = record.prior or PriorNodeState(unschedulable=False)
    # the migration label is never put back as "true": that would switch the node again
    label = None if prior.label == "true" else prior.label
    if (node.unschedulable == prior.unschedulable and node.labels.get(MIGRATION_LABEL) == label
            and intent.sent_at is not None):
        return True
    if due(intent, ctx.now):
        out.actions.append(RestoreNodeState(node=node.name, unschedulable=prior.unschedulable,
                                            label_key=MIGRATION_LABEL, label_value=label))
        sent(out, ctx)
    out.note = "restoring the node's prior state"
    return False


STAGES = {"cordon": _cordon, "unlabel": _unlabel, "restart-agent": _restart_agent, "restore-cni": _restore_cni,
          "recycle": _recycle, "probe": _probe, "restore": _restore}
