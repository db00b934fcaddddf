"""The forward run at run level: prepare the cluster, then start and step nodes.

PREFLIGHT → (no blocking preflight finding; CiliumNodeConfig ensured and observed) PREPARED → (probe fleet Ready) MIGRATING →
every node terminal → NODES_DONE. A ``pause`` request stops new starts and becomes PAUSED once
no node is in flight; ``abort`` also restores nodes that are not yet switched (cordoned or
being cordoned: uncordon if we cordoned, mark SKIPPED), removes the policy objects the run
applied (``policy.mode: continuous``) and ends in ABORTED. Halting (a blocked
drain with ``on_pdb_blocked: halt``, more failed nodes than ``max_failures``, more automatic
rollbacks than ``rollback.halt_after``, no served CiliumNodeConfig version) sets
``checkpoint.halted``: nothing further is decided until a resume clears it. A node deleted
from the cluster, started or not, ends ``SKIPPED`` with its reason (``steps.gone``) and the
run goes on with the others; it neither halts the run nor counts as a failure.
"""

from __future__ import annotations

from datetime import datetime

from migrator.engine import placement, policy_probe, policy_steps
from migrator.engine.actions import Action, ApplyObject, EnsureNodeConfig, RunProbes
from migrator.engine.gates import start_gate
from migrator.engine.node_config import node_config_spec, node_config_version
from migrator.engine.node_steps import GONE, StepContext, StepOutcome, begin_restore, start
from migrator.engine.ordering import pod_scope, startable
from migrator.engine.pending import RESEND_AFTER, Pending
from migrator.engine.policy_probe import Explained, nothing_explained
from migrator.engine.preflight_gate import preflight_gate
from migrator.engine.probes import fleet_manifests, fleet_missing, sample_pairs
from migrator.engine.rollback import AUTOMATIC
from migrator.engine.steps import gone, step_node
from migrator.engine.table import check_run_move
from migrator.model.checkpoint import Checkpoint, NodeRecord, in_flight
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.states import NodePhase, RunPhase

Step = tuple[Checkpoint, list[Action], list[str], datetime | None]


def run_move(cp: Checkpoint, target: RunPhase, now: datetime) -> Checkpoint:
    """Move the run along the run table."""
    check_run_move(cp.run_phase, target)
    return cp.model_copy(update={"run_phase": target, "run_phase_started_at": now})


def _prepare(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
             now: datetime) -> tuple[Checkpoint, list[Action], str, datetime | None]:
    version = cp.node_config_version or node_config_version(plan, obs.served_cnc_versions)
    if version is None:
        reason = (f"CiliumNodeConfig {plan.cilium.node_config.api_version} is not served "
                  f"(served: {list(obs.served_cnc_versions) or 'none'}); install Cilium ≥ 1.13")
        return cp.model_copy(update={"halted": reason}), [], reason, None
    selector, defaults = node_config_spec(plan)
    ref = plan.cilium.node_config
    current = obs.node_config
    config_ok = current is not None and current.node_selector == selector and current.defaults == defaults
    applies, awaited = policy_steps.to_apply(plan, obs)   # the translation exists before any node switches
    if config_ok and awaited is None:
        cp = run_move(cp, RunPhase.PREPARED, now)
        return _ready_fleet(plan, cp, obs, now)
    cp = cp.model_copy(update={"node_config_version": version})
    pending = Pending(cp.prepare_sent_at)
    if pending.due(now):
        actions: list[Action] = [] if config_ok else [EnsureNodeConfig(
            namespace=ref.namespace, name=ref.name, api_version=version, node_selector=selector, defaults=defaults)]
        actions += applies
        cp = cp.model_copy(update={"prepare_sent_at": now})
        note = f"ensuring CiliumNodeConfig {ref.namespace}/{ref.name}" if not config_ok else (awaited or "")
        return cp, actions, note, now + (policy_steps.POLL if awaited else RESEND_AFTER)
    return cp, [], awaited if config_ok and awaited else "waiting for the CiliumNodeConfig to be observed", \
        min(pending.wake_at(now), now + policy_steps.POLL) if awaited else pending.wake_at(now)


def _ready_fleet(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                 now: datetime) -> tuple[Checkpoint, list[Action], str, datetime | None]:
    """PREPARED → MIGRATING once the probe fleet runs Ready on every Ready node of the run."""
    if not plan.probes.enabled:
        return run_move(cp, RunPhase.MIGRATING, now), [], "CiliumNodeConfig in place (probes disabled)", None
    missing = fleet_missing(obs, plan, cp.order)
    if not missing:
        cp, baseline_actions, waiting, baseline_wake = _policy_baseline(plan, cp, obs, now)
        if waiting is not None:
            return cp, baseline_actions, waiting, baseline_wake
        return run_move(cp, RunPhase.MIGRATING, now), [], "CiliumNodeConfig and probe fleet in place", None
    started = cp.run_phase_started_at or now
    if now >= started + plan.probes.ready_timeout:
        reason = (f"probe fleet not Ready within {format_duration(plan.probes.ready_timeout)} on "
                  f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}: check "
                  f"kubectl -n {plan.probes.namespace} get pods -o wide")
        return cp.model_copy(update={"halted": reason}), [], reason, None
    actions: list[Action] = []
    if Pending(cp.fleet_sent_at).due(now):
        actions = [ApplyObject(manifest=m) for m in fleet_manifests(plan)]
        cp = cp.model_copy(update={"fleet_sent_at": now})
    wake = min(now + RESEND_AFTER, started + plan.probes.ready_timeout)
    return cp, actions, f"waiting for the probe fleet on {len(missing)} node(s)", wake


def _remove_policy(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                   now: datetime) -> tuple[Checkpoint, list[Action], str | None]:
    """An abort removes the policy objects the run applied (translation, shims) before it ends:
    (checkpoint, deletions to send now, what is awaited or None when nothing is left)."""
    left = policy_steps.left_behind(plan, obs)
    if left is None:
        return cp, [], None
    if not Pending(cp.prepare_sent_at).due(now):
        return cp, [], left
    return cp.model_copy(update={"prepare_sent_at": now}), policy_steps.removals(obs), left


def _policy_baseline(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                     now: datetime) -> tuple[Checkpoint, list[Action], str | None, datetime | None]:
    """The policy probe's truth table before any node starts (``probes.policy``): its pods are
    deployed, then every flow is dialled until each has a verdict. None as the note: done."""
    section = plan.probes.policy
    if section is None:
        return cp, [], None, None
    baseline = cp.policy_baseline
    if baseline is None or baseline.spec != policy_probe.spec_digest(section):
        baseline = policy_probe.new_baseline(section)
        cp = cp.model_copy(update={"policy_baseline": baseline, "policy_sent_at": None})
    if baseline.complete:
        return cp, [], None, None
    deadline = (cp.run_phase_started_at or now) + plan.probes.ready_timeout
    checks = policy_probe.baseline_checks(obs, section, baseline)
    if now >= deadline:
        unseen = baseline.table.count(policy_probe.UNSEEN)
        reason = (f"policy probe baseline not taken within {format_duration(plan.probes.ready_timeout)}: "
                  + (checks if isinstance(checks, str) else f"{unseen} flow(s) could not be dialled")
                  + f"; check kubectl get pods -l {policy_probe.NAME_LABEL}={policy_probe.NAME} -A -o wide")
        return cp.model_copy(update={"halted": reason}), [], reason, None
    pending = Pending(cp.policy_sent_at, after=RESEND_AFTER if isinstance(checks, str) else plan.probes.checks.interval)
    actions: list[Action] = []
    if pending.due(now):
        if isinstance(checks, str):
            actions = [ApplyObject(manifest=m) for m in policy_probe.manifests(plan, cp.order)]
        else:
            actions = [RunProbes(purpose="policy", checks=checks, threshold=plan.probes.checks.pass_threshold)]
        cp = cp.model_copy(update={"policy_sent_at": now})
    note = checks if isinstance(checks, str) else f"taking the policy probe's baseline: {len(checks)} flow(s) to dial"
    return cp, actions, note, min(pending.wake_at(now), deadline)


def sample_round(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
            busy: frozenset[str]) -> tuple[Checkpoint, list[Action], datetime | None]:
    """A round of continuous sampling when one is due."""
    sampling = plan.probes.sampling
    if not plan.probes.enabled or sampling.pairs == 0:
        return cp, [], None
    state = cp.sampling
    if state.last_at is not None and now < state.last_at + sampling.interval:
        return cp, [], state.last_at + sampling.interval
    present = obs.node_by_name
    vanished = frozenset(p.node for p in obs.probe_pods if p.node is not None and p.node not in present)
    checks, cursor = sample_pairs(plan, obs, busy | vanished, state.cursor)   # a deleted node's probe pod lingers
    if not checks:
        return cp, [], now + sampling.interval
    cp = cp.model_copy(update={"sampling": state.model_copy(update={
        "cursor": cursor, "last_at": now, "rounds": state.rounds + 1})})
    return cp, [RunProbes(purpose="sample", checks=checks, threshold=plan.probes.checks.pass_threshold)], \
        now + sampling.interval


def _migrate(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
             explained: Explained) -> tuple[Checkpoint, list[Action], list[str], datetime | None]:
    ctx = StepContext.of(plan, cp, obs, now, explained)
    actions: list[Action] = []
    notes: list[str] = []
    updates: dict[str, NodeRecord] = {}
    wake: list[datetime] = []
    halt: str | None = None
    aborting = cp.requested == "abort"
    done_at = cp.last_node_done_at

    def run(record: NodeRecord) -> None:
        nonlocal halt, done_at
        outcome = step_node(record, ctx)
        if outcome.record != record:
            updates[record.name] = outcome.record
            if outcome.record.phase is NodePhase.DONE:
                done_at = now
        actions.extend(outcome.actions)
        if outcome.note:
            notes.append(f"{record.name}: {outcome.note}")
        if outcome.wake_at is not None:
            wake.append(outcome.wake_at)
        if outcome.halt and halt is None:
            halt = outcome.halt

    present = obs.node_by_name
    census = cp.census
    # the nodes in flight and those never started that were deleted (they would wait forever),
    # in run order: a turn looks at these, not at every node of the run
    for name in cp.in_run_order(census.in_flight | (census.not_started - present.keys())):
        record = cp.by_name[name]
        if not in_flight(record):
            out = StepOutcome(record=record)
            gone(out, ctx)
            updates[record.name] = out.record
            notes.append(f"{record.name}: {GONE}")
            continue
        if aborting and record.phase in (NodePhase.PENDING, NodePhase.CORDONED) and (
                record.intent is None or record.intent.step != "restore"):
            outcome = StepOutcome(record=record)
            begin_restore(outcome, "run aborted before the node was switched")
            record = outcome.record
            updates[record.name] = record
        run(record)

    cp = cp.with_nodes(updates, last_node_done_at=done_at)
    failed = cp.census.counts[NodePhase.FAILED]
    if halt is None and failed > plan.max_failures:
        halt = f"{failed} node(s) failed, more than max_failures={plan.max_failures}"
    limit = plan.rollback.halt_after
    rolled = [r.name for r in cp.nodes if r.phase is NodePhase.ROLLED_BACK
              and (r.rollback_reason or "").startswith(AUTOMATIC)] \
        if limit is not None and cp.census.counts[NodePhase.ROLLED_BACK] >= limit else []
    if halt is None and limit is not None and len(rolled) >= limit and len(rolled) > cp.rollbacks_acknowledged:
        halt = (f"{len(rolled)} node(s) rolled back automatically ({', '.join(rolled[:5])}), "
                f"rollback.halt_after={limit}; see `migrator status`, fix the cause, then `migrator resume`")
    if halt is not None:
        return (cp.model_copy(update={"halted": halt}), actions,
                [halt] + [n for n in notes if halt not in n], None)

    cp, sample_actions, sample_wake = sample_round(plan, cp, obs, now, pod_scope(cp))
    actions.extend(sample_actions)
    if sample_wake is not None:
        wake.append(sample_wake)
    busy = bool(cp.census.in_flight)
    if cp.requested is not None:
        cp, taints = placement.reconcile(plan, cp, obs, now, winding_down=True)
        actions.extend(taints)
        left = None
        if not busy and not cp.steered and cp.requested == "abort":
            cp, removing, left = _remove_policy(plan, cp, obs, now)
            actions.extend(removing)
        if left is not None:
            notes.insert(0, f"abort requested: {left}")
            wake.append(now + policy_steps.POLL)
        elif not busy and not cp.steered:
            target = RunPhase.PAUSED if cp.requested == "pause" else RunPhase.ABORTED
            cp = run_move(cp, target, now)
            notes.insert(0, f"run {target.value.lower()} at an operator's request")
        else:
            notes.insert(0, f"{cp.requested} requested: finishing nodes in flight"
                         + (f", removing placement taints from {len(cp.steered)} node(s)" if cp.steered else ""))
            if cp.steered:
                wake.append(now + RESEND_AFTER)
        return cp, actions, notes, min(wake, default=None)

    gate, gate_wake = start_gate(plan, cp, obs, now)
    if gate is not None:
        if gate_wake is not None:
            wake.append(gate_wake)
        notes.append(f"no new node: {gate}")
    else:
        starting = startable(plan, cp, obs.node_by_name)
        started: dict[str, NodeRecord] = {}
        for name in starting:
            record = start(cp.by_name[name], obs.node_by_name[name], ctx)
            outcome = step_node(record, ctx)
            started[name] = outcome.record
            actions.extend(outcome.actions)
            notes.append(f"{name}: started ({outcome.note})")
            if outcome.wake_at is not None:
                wake.append(outcome.wake_at)
        cp = cp.with_nodes(started)
    cp, taints = placement.reconcile(plan, cp, obs, now, winding_down=cp.all_nodes_finished)
    actions.extend(taints)
    if cp.all_nodes_finished and cp.steered:
        notes.insert(0, f"every node finished; removing placement taints from {len(cp.steered)} node(s)")
        wake.append(now + RESEND_AFTER)
    elif cp.all_nodes_finished:
        cp = run_move(cp, RunPhase.NODES_DONE, now)
        counts = cp.counts()
        notes.insert(0, "every node finished: " + ", ".join(
            f"{phase.value.lower()}={n}" for phase, n in counts.items()))
    return cp, actions, notes, min(wake, default=None)


def forward_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
                 explained: Explained = nothing_explained) -> Step:
    """The forward run's next step (the checkpoint is not halted and has no rollback recorded);
    ``explained``: the policy-probe flows the current gap report explains."""
    actions: list[Action] = []
    notes: list[str] = []
    wake: datetime | None = None
    if cp.run_phase in (RunPhase.PREFLIGHT, RunPhase.PREPARED) and cp.requested == "abort":
        cp, removing, left = _remove_policy(plan, cp, obs, now)
        if left is not None:
            return cp, removing, [f"abort requested: {left}"], now + policy_steps.POLL
        cp = run_move(cp, RunPhase.ABORTED, now)
        notes.append("run aborted before any node started")
    elif cp.run_phase is RunPhase.PAUSED and cp.requested != "pause":
        cp = run_move(cp, RunPhase.MIGRATING, now) if cp.requested is None else cp
        if cp.requested == "abort":
            cp = run_move(cp, RunPhase.ABORTED, now)
    if cp.run_phase is RunPhase.PREFLIGHT:
        cp, clear = preflight_gate(cp, obs.findings, now)   # a blocking finding: halt before any write
        if not clear:
            return cp, [], [f"halted: {cp.halted}"], None
        cp, actions, note, wake = _prepare(plan, cp, obs, now)
        notes.append(note)
    elif cp.run_phase is RunPhase.PREPARED:
        cp, actions, note, wake = _ready_fleet(plan, cp, obs, now)
        notes.append(note)
    if cp.run_phase is RunPhase.MIGRATING and cp.halted is None:
        cp, more, migrate_notes, wake = _migrate(plan, cp, obs, now, explained)
        actions.extend(more)
        notes.extend(migrate_notes)
    return cp, actions, notes, wake
