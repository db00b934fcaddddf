"""``decide(plan, checkpoint, observation, now) -> Decision``: the whole forward run, pure.

The runner calls ``decide`` on every loop iteration, persists ``Decision.checkpoint`` (the
intents are in it) and only then executes ``Decision.actions``. Nothing here does I/O or reads
a clock, so a restarted process that loads the checkpoint and observes again reaches the same
decision the dead one would have.

Run level: PREFLIGHT → (CiliumNodeConfig ensured and observed) PREPARED → MIGRATING → every
node terminal → NODES_DONE. A ``pause`` request stops new starts and becomes PAUSED once no
node is in flight; ``abort`` also restores nodes that are not yet switched (cordoned or being
cordoned: uncordon if we cordoned, mark SKIPPED) and ends in ABORTED. Halting (a blocked
drain with ``on_pdb_blocked: halt``, more failed nodes than ``max_failures``, no served
CiliumNodeConfig version) sets ``checkpoint.halted``: the run phase stays where it is, nothing
further is decided until ``resume_checkpoint`` clears it, and the runner exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from migrator.engine import placement
from migrator.engine.actions import Action, ApplyObject, EnsureNodeConfig, RunProbes
from migrator.engine.gates import start_gate
from migrator.engine.node_steps import RESEND_AFTER, StepContext, StepOutcome, begin_restore, start
from migrator.engine.ordering import in_flight, order_nodes, pod_scope, startable
from migrator.engine.preflight_gate import preflight_gate
from migrator.engine.probes import fleet_manifests, fleet_missing, sample_pairs
from migrator.engine.rollback import AUTOMATIC
from migrator.engine.states import NodePhase, RunPhase
from migrator.engine.steps import step_node
from migrator.engine.table import check_run_move
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord, truncate_error, utc
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan, format_duration, plan_hash

NOTE_LIMIT = 5


class PlanMismatch(ValueError):
    """The checkpoint was written for a different plan."""


@dataclass(frozen=True)
class Decision:
    """The engine's answer for one loop iteration."""

    checkpoint: Checkpoint
    actions: tuple[Action, ...]
    reason: str
    changed: bool
    wake_at: datetime | None = None

    @property
    def halted(self) -> str | None:
        """Why the run halted, if it did."""
        return self.checkpoint.halted

    @property
    def finished(self) -> bool:
        """Nothing more will happen without an operator (done, paused, aborted or halted)."""
        phase = self.checkpoint.run_phase
        return (self.checkpoint.halted is not None
                or phase in (RunPhase.NODES_DONE, RunPhase.PAUSED, RunPhase.ABORTED,
                             RunPhase.FINALIZED))


def node_config_spec() -> tuple[dict[str, str], dict[str, str]]:
    """(nodeSelector.matchLabels, defaults) of the CiliumNodeConfig, exactly as the guide."""
    return ({MIGRATION_LABEL: "true"},
            {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
             "custom-cni-conf": "false", "cni-chaining-mode": "none", "cni-exclusive": "true"})


def node_config_version(plan: MigrationPlan, served: tuple[str, ...]) -> str | None:
    """The apiVersion to write: the plan's choice if served, or v2 preferred over v2alpha1."""
    wanted = plan.cilium.node_config.api_version
    if wanted != "auto":
        return wanted if wanted.split("/", 1)[1] in served else None
    for version in ("v2", "v2alpha1"):
        if version in served:
            return f"cilium.io/{version}"
    return None


def new_checkpoint(plan: MigrationPlan, obs: ClusterObservation, run_id: str,
                   now: datetime) -> Checkpoint:
    """The checkpoint of a new run (after preflight passed): order frozen, every node PENDING."""
    when = utc(now)
    return Checkpoint(plan_name=plan.name, plan_hash=plan_hash(plan), run_id=run_id,
                      run_phase=RunPhase.PREFLIGHT, run_phase_started_at=when, started_at=when,
                      updated_at=when,
                      nodes=tuple(NodeRecord(name=name) for name in order_nodes(plan, obs.nodes)))


def request(checkpoint: Checkpoint, what: str | None) -> Checkpoint:
    """Record an operator request (``pause``, ``abort`` or None to clear a pause)."""
    if what not in ("pause", "abort", None):
        raise ValueError(f"unknown request {what!r}; use pause or abort")
    return checkpoint.model_copy(update={"requested": what})


def resume_checkpoint(checkpoint: Checkpoint, now: datetime) -> Checkpoint:
    """Clear a halt or pause so the run proceeds; halted nodes retry their step afresh.

    An in-flight node carrying an error gets a new attempt: its deadline restarts at ``now``
    and its step's intent is re-derived from a fresh observation.
    """
    when = utc(now)
    updates: dict[str, NodeRecord] = {}
    for record in checkpoint.nodes:
        if in_flight(record) and record.last_error and record.intent is not None:
            step = record.intent.step
            updates[record.name] = record.model_copy(update={
                "attempt": record.attempt + 1, "phase_started_at": when,
                "intent": Intent(step=step, agent_uid=record.intent.agent_uid), "last_error": None})
    automatic = sum(1 for r in checkpoint.nodes if r.phase is NodePhase.ROLLED_BACK
                    and (r.rollback_reason or "").startswith(AUTOMATIC))
    changes: dict[str, object] = {"halted": None, "last_error": None, "rollbacks_acknowledged": automatic,
                                  "sampling": checkpoint.sampling.model_copy(update={"failures": ()})}
    if checkpoint.requested == "pause":
        changes["requested"] = None
    if checkpoint.run_phase is RunPhase.PAUSED:
        changes["run_phase"] = RunPhase.MIGRATING
        changes["run_phase_started_at"] = when
    return checkpoint.with_nodes(updates, **changes)


def _run_move(cp: Checkpoint, target: RunPhase, now: datetime) -> Checkpoint:
    check_run_move(cp.run_phase, target)
    return cp.model_copy(update={"run_phase": target, "run_phase_started_at": now})


def _prepare(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
             now: datetime) -> tuple[Checkpoint, list[Action], str, datetime | None]:
    version = cp.node_config_version or node_config_version(plan, obs.served_cnc_versions)
    if version is None:
        reason = (f"CiliumNodeConfig {plan.cilium.node_config.api_version} is not served "
                  f"(served: {list(obs.served_cnc_versions) or 'none'}); install Cilium ≥ 1.13")
        return cp.model_copy(update={"halted": reason}), [], reason, None
    selector, defaults = node_config_spec()
    ref = plan.cilium.node_config
    current = obs.node_config
    if current is not None and current.node_selector == selector and current.defaults == defaults:
        cp = _run_move(cp, RunPhase.PREPARED, now)
        return _ready_fleet(plan, cp, obs, now)
    cp = cp.model_copy(update={"node_config_version": version})
    if cp.prepare_sent_at is None or now >= cp.prepare_sent_at + RESEND_AFTER:
        action = EnsureNodeConfig(namespace=ref.namespace, name=ref.name, api_version=version,
                                  node_selector=selector, defaults=defaults)
        cp = cp.model_copy(update={"prepare_sent_at": now})
        return cp, [action], f"ensuring CiliumNodeConfig {ref.namespace}/{ref.name}", now + RESEND_AFTER
    return cp, [], "waiting for the CiliumNodeConfig to be observed", cp.prepare_sent_at + RESEND_AFTER


def _ready_fleet(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                 now: datetime) -> tuple[Checkpoint, list[Action], str, datetime | None]:
    """PREPARED → MIGRATING once the probe fleet runs Ready on every Ready node of the run."""
    if not plan.probes.enabled:
        return _run_move(cp, RunPhase.MIGRATING, now), [], "CiliumNodeConfig in place (probes disabled)", None
    missing = fleet_missing(obs, plan, cp.order)
    if not missing:
        return _run_move(cp, RunPhase.MIGRATING, now), [], "CiliumNodeConfig and probe fleet in place", None
    started = cp.run_phase_started_at or now
    if now >= started + plan.probes.ready_timeout:
        reason = (f"probe fleet not Ready within {format_duration(plan.probes.ready_timeout)} on "
                  f"{', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}: check "
                  f"kubectl -n {plan.probes.namespace} get pods -o wide")
        return cp.model_copy(update={"halted": reason}), [], reason, None
    actions: list[Action] = []
    if cp.fleet_sent_at is None or now >= cp.fleet_sent_at + RESEND_AFTER:
        actions = [ApplyObject(manifest=m) for m in fleet_manifests(plan)]
        cp = cp.model_copy(update={"fleet_sent_at": now})
    wake = min(now + RESEND_AFTER, started + plan.probes.ready_timeout)
    return cp, actions, f"waiting for the probe fleet on {len(missing)} node(s)", wake


def sample_round(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime,
            busy: frozenset[str]) -> tuple[Checkpoint, list[Action], datetime | None]:
    """A round of continuous sampling when one is due."""
    sampling = plan.probes.sampling
    if not plan.probes.enabled or sampling.pairs == 0:
        return cp, [], None
    state = cp.sampling
    if state.last_at is not None and now < state.last_at + sampling.interval:
        return cp, [], state.last_at + sampling.interval
    checks, cursor = sample_pairs(plan, obs, busy, state.cursor)
    if not checks:
        return cp, [], now + sampling.interval
    cp = cp.model_copy(update={"sampling": state.model_copy(update={
        "cursor": cursor, "last_at": now, "rounds": state.rounds + 1})})
    return cp, [RunProbes(purpose="sample", checks=checks, threshold=plan.probes.checks.pass_threshold)], \
        now + sampling.interval


def _migrate(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
             now: datetime) -> tuple[Checkpoint, list[Action], list[str], datetime | None]:
    ctx = StepContext.of(plan, cp, obs, now)
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

    for record in cp.nodes:
        if not in_flight(record):
            continue
        if aborting and record.phase in (NodePhase.PENDING, NodePhase.CORDONED) and (
                record.intent is None or record.intent.step != "restore"):
            outcome = StepOutcome(record=record)
            begin_restore(outcome, ctx, "run aborted before the node was switched")
            record = outcome.record
            updates[record.name] = record
            actions.extend(outcome.actions)
        run(record)

    cp = cp.with_nodes(updates, last_node_done_at=done_at)
    failed = sum(1 for r in cp.nodes if r.phase is NodePhase.FAILED)
    if halt is None and failed > plan.max_failures:
        halt = f"{failed} node(s) failed, more than max_failures={plan.max_failures}"
    limit = plan.rollback.halt_after
    rolled = [r.name for r in cp.nodes if r.phase is NodePhase.ROLLED_BACK
              and (r.rollback_reason or "").startswith(AUTOMATIC)]
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
    busy = any(in_flight(r) for r in cp.nodes)
    if cp.requested is not None:
        cp, taints = placement.reconcile(plan, cp, obs, now, winding_down=True)
        actions.extend(taints)
        if not busy and not cp.steered:
            target = RunPhase.PAUSED if cp.requested == "pause" else RunPhase.ABORTED
            cp = _run_move(cp, target, now)
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
        cp = _run_move(cp, RunPhase.NODES_DONE, now)
        counts = cp.counts()
        notes.insert(0, "every node finished: " + ", ".join(
            f"{phase.value.lower()}={n}" for phase, n in counts.items()))
    return cp, actions, notes, min(wake, default=None)


def decide(plan: MigrationPlan, checkpoint: Checkpoint, observation: ClusterObservation,
           now: datetime) -> Decision:
    """The next checkpoint and actions of the forward run (see the module docstring)."""
    if checkpoint.plan_hash != plan_hash(plan):
        raise PlanMismatch(f"checkpoint was written for plan {checkpoint.plan_name} "
                           f"({checkpoint.plan_hash}), not this one ({plan_hash(plan)}); "
                           "run with the original plan or start a new run after finalize/abort")
    now = utc(now)
    cp = checkpoint
    if cp.halted is not None:
        return Decision(cp, (), f"halted: {cp.halted}", False)
    actions: list[Action] = []
    notes: list[str] = []
    wake: datetime | None = None
    if cp.run_phase in (RunPhase.PREFLIGHT, RunPhase.PREPARED) and cp.requested == "abort":
        cp = _run_move(cp, RunPhase.ABORTED, now)
        notes.append("run aborted before any node started")
    elif cp.run_phase is RunPhase.PAUSED and cp.requested != "pause":
        cp = _run_move(cp, RunPhase.MIGRATING, now) if cp.requested is None else cp
        if cp.requested == "abort":
            cp = _run_move(cp, RunPhase.ABORTED, now)
    if cp.rollback is not None:
        return Decision(cp, (), "on-call rollback in progress: the forward run stands aside", False)
    if cp.run_phase is RunPhase.PREFLIGHT:
        cp, clear = preflight_gate(cp, observation.findings, now)  # blocking findings: halt, write nothing
        if not clear:
            return Decision(cp.model_copy(update={"updated_at": now}), (), f"halted: {cp.halted}", True)
        cp, actions, note, wake = _prepare(plan, cp, observation, now)
        notes.append(note)
    elif cp.run_phase is RunPhase.PREPARED:
        cp, actions, note, wake = _ready_fleet(plan, cp, observation, now)
        notes.append(note)
    if cp.run_phase is RunPhase.MIGRATING and cp.halted is None:
        cp, more, migrate_notes, wake = _migrate(plan, cp, observation, now)
        actions.extend(more)
        notes.extend(migrate_notes)
    if not notes:
        notes.append(f"run {cp.run_phase.value.lower()}: nothing to do")
    changed = cp != checkpoint
    if changed:
        cp = cp.model_copy(update={"updated_at": now})
    shown = notes[:NOTE_LIMIT] + ([f"(+{len(notes) - NOTE_LIMIT} more)"] if len(notes) > NOTE_LIMIT else [])
    return Decision(cp, tuple(actions), "; ".join(shown), changed, wake)


def fail_reason(checkpoint: Checkpoint) -> str | None:
    """A one-line description of the first failed node, if any (for status output)."""
    for record in checkpoint.nodes:
        if record.phase is NodePhase.FAILED:
            return f"{record.name}: {truncate_error(record.last_error or 'failed')}"
    return None
