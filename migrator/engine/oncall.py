"""``rollback_run_step``: an on-call rollback of some nodes, or of the whole run.

``migrator rollback`` records a ``RollbackRequest`` in the checkpoint; a live forward run sees
it at its next step boundary and stands aside (``decide`` stops it while one is recorded), then
the rollback process takes the Lease and ``decide`` runs this step until done.

Per node: a node with something to undo starts its rollback once (``engine.rollback``); the
others are left as they are. With ``all``, once every node is terminal: the CiliumNodeConfig
is deleted, a probe sweep of the whole cluster must pass, the policy objects the run applied
(``policy.mode: continuous``: translation and shims) and the probe fleet are removed, and the
run ends ``ROLLED_BACK``. A partial rollback clears the request and leaves a migrating run
paused: ``migrator resume`` continues with the nodes not rolled back.
"""

from __future__ import annotations

from datetime import datetime

from migrator.engine import placement, policy_probe, policy_steps
from migrator.engine.actions import Action, DeleteNodeConfig, RunProbes
from migrator.engine.forward import Step, run_move
from migrator.engine.node_config import node_config_version
from migrator.engine.node_steps import StepContext, StepOutcome
from migrator.engine.pending import RESEND_AFTER, Pending
from migrator.engine.probes import fleet_removal, sweep_checks
from migrator.engine.rollback import begin_rollback, undoable
from migrator.engine.steps import step_node
from migrator.model.checkpoint import Checkpoint, NodeRecord, RollbackRequest, in_flight
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.states import NodePhase, RunPhase

N = NodePhase
NOT_AFTER_FINALIZE = (
    "finalize has run: Calico was removed from the cluster, so a node put back on Calico would have "
    "no working CNI. Reinstall Calico first (its manifests or Helm chart), then roll nodes back by hand "
    "(runbooks/rollback-node.md explains each step)")


def targets(cp: Checkpoint, request: RollbackRequest) -> list[NodeRecord]:
    """The records the request covers, in run order."""
    if request.all:
        return list(cp.nodes)
    wanted = set(request.nodes)
    return [r for r in cp.nodes if r.name in wanted]


def nothing_to_undo(cp: Checkpoint, request: RollbackRequest) -> list[str]:
    """Why each requested node needs nothing (empty when some node has work)."""
    chosen = targets(cp, request)
    if any(undoable(r.phase, r.intent) for r in chosen):
        return []
    return [f"{r.name} is {r.phase.value}" + (" (never started)" if r.phase is N.PENDING else "")
            for r in chosen]


def rollback_run_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime) -> Step:
    """The next checkpoint and actions of the on-call rollback recorded in ``cp``."""
    request = cp.rollback
    if request is None:
        return cp, [], ["no rollback requested"], None
    if request.all and not cp.run_phase.terminal and cp.run_phase is not RunPhase.ROLLING_BACK:
        cp = run_move(cp, RunPhase.ROLLING_BACK, now)
    ctx = StepContext.of(plan, cp, obs, now)
    actions: list[Action] = []
    notes: list[str] = []
    wake: list[datetime] = []
    updates: dict[str, NodeRecord] = {}
    started = list(request.started)
    for record in targets(cp, request):
        out = StepOutcome(record=record)
        if record.name not in started and undoable(record.phase, record.intent) \
                and record.phase is not N.ROLLING_BACK:
            begin_rollback(out, ctx, f"{request.reason} (by {request.by})")
            started.append(record.name)
        elif record.phase is N.ROLLING_BACK:
            if record.name not in started:
                started.append(record.name)
            out = step_node(record, ctx)
        else:
            continue
        if out.record != record:
            updates[record.name] = out.record
        actions.extend(out.actions)
        if out.note:
            notes.append(f"{record.name}: {out.note}")
        if out.wake_at is not None:
            wake.append(out.wake_at)
    request = request.model_copy(update={"started": tuple(started)})
    cp = cp.with_nodes(updates, rollback=request)
    if any(r.phase is N.ROLLING_BACK for r in targets(cp, request)):
        return _step(cp, actions, notes, wake)
    cp, taints = placement.reconcile(plan, cp, obs, now, winding_down=True)
    actions.extend(taints)
    if cp.steered:
        notes.insert(0, f"removing placement taints from {len(cp.steered)} node(s)")
        wake.append(now + RESEND_AFTER)
        return _step(cp, actions, notes, wake)
    rolled = [r.name for r in targets(cp, request) if r.name in started]
    failed = [r.name for r in targets(cp, request) if r.name in started and r.phase is N.FAILED]
    if not request.all:
        cp = cp.model_copy(update={"rollback": None, "requested": "pause" if cp.run_phase in (
            RunPhase.MIGRATING, RunPhase.PAUSED) and any(in_flight(r) or r.phase is N.PENDING for r in cp.nodes)
            else cp.requested})
        if failed:
            cp = cp.model_copy(update={"halted": f"rollback failed on {', '.join(failed)}; see `migrator status`"})
        notes.insert(0, f"rollback finished: {len(rolled) - len(failed)} rolled back, {len(failed)} failed")
        return _step(cp, actions, notes, wake)
    if failed:
        reason = f"rollback failed on {', '.join(failed)}: see `migrator status`; retry with `migrator rollback --all`"
        cp = cp.model_copy(update={"halted": reason, "rollback": request.model_copy(update={"started": tuple(
            n for n in started if n not in failed)})})
        return _step(cp, actions, [reason, *notes], wake)
    return _finish_all(plan, cp, obs, now, actions, notes, wake)


def _finish_all(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                now: datetime, actions: list[Action], notes: list[str], wake: list[datetime]) -> Step:
    """Every node is back: delete the CiliumNodeConfig, sweep, remove the fleet, end the run."""
    request = cp.rollback
    assert request is not None
    resend = Pending(request.cleanup_sent_at).due(now)
    ref = plan.cilium.node_config
    version = cp.node_config_version or node_config_version(plan, obs.served_cnc_versions)
    if obs.node_config is not None:
        if resend and version is not None:
            actions.append(DeleteNodeConfig(namespace=ref.namespace, name=ref.name, api_version=version))
            actions.extend(policy_steps.removals(obs))   # every node is on Calico: nothing enforces them now
            cp = cp.model_copy(update={"rollback": request.model_copy(update={"cleanup_sent_at": now})})
        wake.append(now + RESEND_AFTER)
        notes.insert(0, f"every node back on Calico; deleting CiliumNodeConfig {ref.namespace}/{ref.name}")
        return _step(cp, actions, notes, wake)
    if plan.probes.enabled and not request.swept:
        sampling = cp.sampling
        deadline = (cp.run_phase_started_at or now) + plan.rollback.timeout
        last = sampling.last_at
        answered = sampling.rounds > 0 and sampling.answered == sampling.rounds
        if answered and last is not None and not sampling.failures and \
                last >= (request.cleanup_sent_at or request.requested_at):
            request = request.model_copy(update={"swept": True})
            cp = cp.model_copy(update={"rollback": request})
        elif now >= deadline:
            reason = (f"every node is back on Calico but the probe sweep still fails after "
                      f"{format_duration(plan.rollback.timeout)}: {'; '.join(sampling.failures[:3])}")
            return _step(cp.model_copy(update={"halted": reason}), actions, [reason], wake)
        else:
            due = sampling.last_at is None or now >= sampling.last_at + plan.probes.checks.interval
            checks = sweep_checks(plan, obs)
            if due and checks:
                cp = cp.model_copy(update={"sampling": sampling.model_copy(update={
                    "last_at": now, "rounds": sampling.rounds + 1, "failures": ()})})
                actions.append(RunProbes(purpose="sample", checks=checks,
                                         threshold=plan.probes.checks.pass_threshold))
            wake.append(now + plan.probes.checks.interval)
            notes.insert(0, "every node back on Calico; sweeping the cluster with probes"
                         + (f" (failing: {'; '.join(sampling.failures[:2])})" if sampling.failures else ""))
            return _step(cp, actions, notes, wake)
    fleet = [p for p in (*obs.probe_pods, *obs.policy_probe_pods) if not p.deleting] if plan.probes.enabled else []
    left = policy_steps.left_behind(plan, obs)   # the translation and shims the run applied go with it
    if fleet or left is not None:
        if resend:
            if fleet:
                actions.append(fleet_removal(plan))
                actions.extend(policy_probe.removal(plan))
            actions.extend(policy_steps.removals(obs))
            cp = cp.model_copy(update={"rollback": request.model_copy(update={"cleanup_sent_at": now})})
        wake.append(now + (RESEND_AFTER if fleet else policy_steps.POLL))   # policy objects are not watched
        doing = [f"sweep passed; removing the probe fleet ({len(fleet)} pods left)"] if fleet else []
        notes.insert(0, "; ".join(doing + ([left] if left is not None else [])))
        return _step(cp, actions, notes, wake)
    if cp.run_phase is RunPhase.ROLLING_BACK:
        cp = run_move(cp, RunPhase.ROLLED_BACK, now)
    notes.insert(0, "rollback --all finished: every node is on Calico, the CiliumNodeConfig, the policy objects "
                    "the run applied and the probe fleet are gone")
    return _step(cp, actions, notes, wake)


def _step(cp: Checkpoint, actions: list[Action], notes: list[str], wake: list[datetime]) -> Step:
    return cp, actions, notes[:5] or ["rolling back"], min(wake, default=None)


def rollback_finished(cp: Checkpoint) -> bool:
    """The recorded on-call rollback has nothing more to do (or there is none)."""
    if cp.halted is not None:
        return True
    if cp.rollback is None:
        return True
    return cp.rollback.all and cp.run_phase.terminal
