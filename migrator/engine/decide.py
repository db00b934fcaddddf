"""``decide(plan, checkpoint, observation, now, inbox) -> Decision``: the whole engine, pure.

The runner calls ``decide`` on every loop turn, persists ``Decision.checkpoint`` (the intents
are in it), executes ``Decision.actions`` and hands their results back in the next turn's
``Inbox``. ``decide`` folds those results in, applies this process's one-shot requests (start a
run, resume, take over, start finalize or a canary), then dispatches on the checkpoint's own
state: an on-call rollback recorded → the rollback; finalize begun → finalize; a canary run →
the canary; otherwise the forward run. It also says when this process has reached its
stopping point (``Decision.stop``) and with which outcome, so the runner decides nothing.

Nothing here does I/O or reads a clock, so a restarted process that loads the checkpoint and
observes again reaches the decision the dead one would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from migrator.engine.actions import Action, ActionResult
from migrator.engine.canary import canary_step
from migrator.engine.finalize import finalize_blockers, finalize_step
from migrator.engine.forward import Step, forward_step
from migrator.engine.handover import handover_step, start
from migrator.engine.node_config import node_config_spec, node_config_version
from migrator.engine.node_steps import GONE
from migrator.engine.oncall import rollback_finished, rollback_run_step
from migrator.engine.ordering import order_nodes, pod_scope, selection_problem, starting_soon
from migrator.engine.policy_probe import Explained, nothing_explained
from migrator.engine.preflight_gate import request_skips
from migrator.engine.results import record_results
from migrator.engine.rollback import AUTOMATIC
from migrator.model.checkpoint import Checkpoint, FinalizeProgress, Intent, NodeRecord, in_flight, utc
from migrator.model.identity import PlanMismatch, adopt_plan, identity_record, plan_changes, plan_identity
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan
from migrator.model.states import NodePhase, RunPhase

__all__ = ["Decision", "Inbox", "PlanMismatch", "Purpose", "Scope", "Stop", "decide", "new_checkpoint", "node_config_spec",
           "node_config_version", "observe_scope", "pod_scope", "request", "resume_checkpoint"]

NOTE_LIMIT = 5
AUDIT_KEPT = 20
#: What this process was started to do; it decides where the process stops.
Purpose = Literal["run", "resume", "finalize", "rollback", "canary", "handover", "handover-rollback"]
HANDOVER: tuple[Purpose, ...] = ("handover", "handover-rollback")


@dataclass(frozen=True)
class Inbox:
    """What reaches ``decide`` besides the checkpoint and the observation.

    ``results`` are the outcomes of the previous turn's actions; ``first`` marks this
    process's first turn, when its purpose's one-shot request applies (resume clears a halt,
    finalize starts, a canary replaces an ended one); ``takeover`` names the holder whose
    lease this process took with ``--force-takeover`` (audited); ``skip_checks`` are the
    ``--skip-check`` IDs of this process, recorded while the run is in PREFLIGHT; ``explained``
    says which policy-probe flows the current policy gap report explains (a node's gate does not
    judge them)."""

    purpose: Purpose = "run"
    run_id: str = "run"
    by: str = ""
    results: tuple[ActionResult, ...] = ()
    first: bool = False
    takeover: str | None = None
    skip_checks: tuple[str, ...] = ()
    explained: Explained = nothing_explained


@dataclass(frozen=True)
class Stop:
    """This process has nothing more to do: ``done`` (exit 0), ``halted`` (exit 1, state
    saved) or ``invalid`` (exit 2)."""

    code: Literal["done", "halted", "invalid"]
    message: str


@dataclass(frozen=True)
class Decision:
    """The engine's answer for one loop turn."""

    checkpoint: Checkpoint | None
    actions: tuple[Action, ...]
    reason: str
    changed: bool
    wake_at: datetime | None = None
    stop: Stop | None = None

    @property
    def halted(self) -> str | None:
        """Why the run halted, if it did."""
        return self.checkpoint.halted if self.checkpoint is not None else None

    @property
    def finished(self) -> bool:
        """Nothing more will happen without an operator (done, paused, aborted or halted)."""
        if self.checkpoint is None:
            return True
        phase = self.checkpoint.run_phase
        return (self.checkpoint.halted is not None
                or phase in (RunPhase.NODES_DONE, RunPhase.PAUSED, RunPhase.ABORTED, RunPhase.FINALIZED))


@dataclass(frozen=True)
class Scope:
    """What the next observation must include."""

    pods_of: frozenset[str] | None   # the nodes whose pods it lists (None: every node's)
    finalizing: bool = False          # what only finalize reads (the agent ConfigMap, Calico objects)
    preflight: bool = False           # the preflight findings (gathered once per process)
    policy_objects: bool = True       # the policy objects a continuous run applied (listed only when
                                      # something may be applied or removed: not while nodes migrate)
    handover: bool = False            # what the routing hand-over reads (engine/handover.py)


def observe_scope(plan: MigrationPlan, checkpoint: Checkpoint | None, purpose: Purpose) -> Scope:
    """What the next observation must include for ``purpose`` (finalize acts on every node; a
    run that has not left PREFLIGHT, or is about to start, needs the findings)."""
    if purpose == "finalize":
        return Scope(None, finalizing=True)
    if purpose in HANDOVER:
        return Scope(frozenset(), policy_objects=False, handover=True)
    checking = purpose in ("run", "resume", "canary") and (
        checkpoint is None or checkpoint.run_phase is RunPhase.PREFLIGHT or purpose == "canary"
        and checkpoint.run_phase.terminal)
    listing = checkpoint is None or purpose == "rollback" or checkpoint.requested == "abort" \
        or checkpoint.run_phase not in (RunPhase.MIGRATING, RunPhase.PAUSED, RunPhase.NODES_DONE)
    pods_of = frozenset() if checkpoint is None else pod_scope(checkpoint) | starting_soon(plan, checkpoint)
    return Scope(pods_of, preflight=checking, policy_objects=listing)


def new_checkpoint(plan: MigrationPlan, obs: ClusterObservation, run_id: str, now: datetime) -> Checkpoint:
    """The checkpoint of a new run: order frozen, every node PENDING."""
    when = utc(now)
    return Checkpoint(plan_name=plan.name, **identity_record(plan), run_id=run_id,
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
    and its step's intent is re-derived from a fresh observation; so does a finalize step that
    halted (what it had sent is sent again, its findings are gathered anew).
    """
    when = utc(now)
    updates: dict[str, NodeRecord] = {}
    for record in checkpoint.nodes:
        if in_flight(record) and record.last_error and record.intent is not None:
            updates[record.name] = record.model_copy(update={
                "attempt": record.attempt + 1, "phase_started_at": when,
                "intent": Intent(step=record.intent.step, agent_uid=record.intent.agent_uid), "last_error": None})
    automatic = sum(1 for r in checkpoint.nodes if r.phase is NodePhase.ROLLED_BACK
                    and (r.rollback_reason or "").startswith(AUTOMATIC))
    changes: dict[str, object] = {"halted": None, "last_error": None, "rollbacks_acknowledged": automatic,
                                  "sampling": checkpoint.sampling.model_copy(update={"failures": ()})}
    if checkpoint.requested == "pause":
        changes["requested"] = None
    if checkpoint.run_phase is RunPhase.PAUSED:
        changes["run_phase"] = RunPhase.MIGRATING
        changes["run_phase_started_at"] = when
    progress = checkpoint.finalize
    if progress is not None and progress.last_error:   # the halted finalize step starts afresh
        changes["finalize"] = FinalizeProgress(step=progress.step, step_started_at=when,
                                               restarted_at=progress.restarted_at, active=progress.active,
                                               cleaned=progress.cleaned, replaced=progress.replaced)
    return checkpoint.with_nodes(updates, **changes)


def _where(plan: MigrationPlan) -> str:
    return f"ConfigMap {plan.state.configmap_namespace}/{plan.state.configmap_name}"


_IDENTITIES: dict[int, tuple[MigrationPlan, str]] = {}


def _identity(plan: MigrationPlan) -> str:
    """``plan_identity`` once per plan object (plans are frozen; a plan of 5,000 names takes ms)."""
    known = _IDENTITIES.get(id(plan))
    if known is None or known[0] is not plan:
        if len(_IDENTITIES) > 8:
            _IDENTITIES.clear()
        known = _IDENTITIES[id(plan)] = (plan, plan_identity(plan))
    return known[1]


def _check_plan(plan: MigrationPlan, cp: Checkpoint) -> None:
    """Every turn: the checkpoint is still the run this plan drives (it was adopted on the first)."""
    if cp.plan_hash != _identity(plan):
        differs = "; ".join(plan_changes(cp, plan).lines()[:5]) or "another run"
        raise PlanMismatch(f"{_where(plan)} holds run {cp.run_id} of plan {cp.plan_name!r}, which this plan does "
                           f"not drive: {differs}")


def _first_turn(plan: MigrationPlan, cp: Checkpoint | None, obs: ClusterObservation, now: datetime,
                inbox: Inbox) -> tuple[Checkpoint | None, Stop | None, str]:
    """This process's one-shot request, applied once before anything is decided."""
    purpose = inbox.purpose
    if cp is None:
        if purpose in ("run", "canary"):
            problem = selection_problem(plan, obs.nodes)
            if problem is not None:   # nothing written: no checkpoint is created
                return None, Stop("invalid", f"invalid plan: {problem}"), ""
            fresh = request_skips(new_checkpoint(plan, obs, inbox.run_id, now), inbox.skip_checks, inbox.by, now)
            return fresh, None, "run started"
        if purpose == "rollback":
            return None, Stop("done", "no rollback recorded: nothing to do"), ""
        return None, Stop("invalid", f"no migration state in {_where(plan)}; start with `migrator run`"), ""
    cp = adopt_plan(cp, plan, inbox.by, now)   # tuning changes audited; a defining change raises
    note = f"resumed run {cp.run_id} at {cp.run_phase.value}"
    if inbox.takeover:
        entry = (f"{now.isoformat(timespec='seconds')} lock taken over from {inbox.takeover} "
                 f"with --force-takeover by {inbox.by}")
        cp = cp.model_copy(update={"audit": (*cp.audit, entry)[-AUDIT_KEPT:]})
    cp = request_skips(cp, inbox.skip_checks, inbox.by, now)
    if purpose == "canary":
        if cp.canary is not None and cp.canary.outcome == "kept" and cp.run_phase is RunPhase.NODES_DONE:
            return cp, Stop("done", "canary already kept: its nodes run on Cilium (see `migrator status`)"), ""
        if cp.run_phase.terminal:   # a previous canary ended: a new one starts in its place
            problem = selection_problem(plan, obs.nodes)
            if problem is not None:
                return cp, Stop("invalid", f"invalid plan: {problem}"), ""
            fresh = request_skips(new_checkpoint(plan, obs, inbox.run_id, now), inbox.skip_checks, inbox.by, now)
            return fresh, None, "canary started in place of the previous one"
    if purpose in HANDOVER:
        return _handover_turn(plan, cp, now, purpose, note)
    if purpose == "resume" and (cp.halted or cp.run_phase is RunPhase.PAUSED or cp.requested == "pause"):
        cp = resume_checkpoint(cp, now)
    if purpose == "finalize" and cp.run_phase is not RunPhase.FINALIZED:
        blockers = finalize_blockers(cp, obs, plan)
        if blockers:
            more = f" (+{len(blockers) - 5} more)" if len(blockers) > 5 else ""
            return cp, Stop("halted", "finalize refused: " + "; ".join(blockers[:5]) + more), ""
    return cp, None, note


def _handover_turn(plan: MigrationPlan, cp: Checkpoint, now: datetime, purpose: Purpose,
                   note: str) -> tuple[Checkpoint | None, Stop | None, str]:
    """``migrator handover`` (or ``--rollback``): refused unless the plan asks for it and every node
    is DONE, before finalize; otherwise recorded (a halt it left is cleared: running it again is
    the way on)."""
    if not plan.routing.handover:
        return cp, Stop("invalid", "routing.handover is off in this plan: the hand-over needs it on from the start "
                                   "of the run (the migrated agents run Cilium's BGP control plane through the "
                                   "CiliumNodeConfig); without it Calico and MetalLB keep announcing until finalize, "
                                   "and a run that should hand over starts again with routing.handover: true"), ""
    back = purpose == "handover-rollback"
    progress = cp.handover
    if back and (progress is None or progress.state == "undone"):
        return cp, Stop("done", "no hand-over to roll back: Calico and MetalLB announce as before"), ""
    if cp.run_phase is not RunPhase.NODES_DONE:
        when = ("finalize has begun: Calico is being removed, so routing stays with Cilium"
                if cp.run_phase in (RunPhase.FINALIZING, RunPhase.FINALIZED) else f"run is {cp.run_phase.value}")
        return cp, Stop("halted", f"hand-over refused: it runs once every node is DONE and before finalize; {when}"), ""
    if cp.rollback is not None:
        return cp, Stop("halted", "hand-over refused: an on-call rollback of nodes is in progress "
                                  "(`migrator rollback` finishes it)"), ""
    waiting = [f"{r.name} is {r.phase.value}" for r in cp.nodes
               if r.phase is not NodePhase.DONE and not (r.phase is NodePhase.SKIPPED and r.last_error == GONE)]
    if waiting and not back:
        return cp, Stop("halted", "hand-over refused: every node must be DONE first (" + _listed(waiting)
                                  + "); `migrator retry --node NAME` then `migrator resume`"), ""
    if not back and progress is not None and progress.state == "done":
        return cp, Stop("done", "hand-over already done; next: `migrator finalize --yes`"), ""
    return start(cp, "back" if back else "forward", now), None, note


def _step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime, purpose: Purpose,
          explained: Explained = nothing_explained) -> Step:
    """Dispatch on the checkpoint's own state."""
    if purpose == "canary":
        return canary_step(plan, cp, obs, now, explained)
    if cp.halted is not None:
        return cp, [], [f"halted: {cp.halted}"], None
    if cp.rollback is not None:
        if purpose == "rollback":
            return rollback_run_step(plan, cp, obs, now)
        return cp, [], ["on-call rollback in progress: the forward run stands aside"], None
    if purpose == "finalize" and cp.run_phase in (RunPhase.NODES_DONE, RunPhase.FINALIZING):
        return finalize_step(plan, cp, obs, now)
    if purpose in HANDOVER and cp.run_phase is RunPhase.NODES_DONE:
        return handover_step(plan, cp, obs, now)
    if purpose == "rollback" or cp.run_phase.terminal or cp.finalize is not None:
        return cp, [], [f"run {cp.run_phase.value.lower()}: nothing to do"], None
    return forward_step(plan, cp, obs, now, explained)


def _stop(cp: Checkpoint, purpose: Purpose) -> Stop | None:
    """Where this process stops, given what it was started for."""
    if purpose == "rollback":
        return _rollback_stop(cp) if rollback_finished(cp) else None
    if purpose == "canary":
        return _canary_stop(cp)
    if cp.rollback is not None:
        return Stop("halted", f"an on-call rollback was requested by {cp.rollback.by}: this run stopped "
                              "at a step boundary so it can proceed")
    if purpose in HANDOVER:
        return _handover_stop(cp, purpose)
    if cp.halted:
        return Stop("halted", f"halted: {cp.halted}. Fix the cause, then `migrator resume`")
    phase = cp.run_phase
    if purpose == "finalize":
        return Stop("done", "finalized: Calico removed, Cilium is the only CNI") if phase is RunPhase.FINALIZED \
            else None
    if phase is RunPhase.NODES_DONE:
        return Stop("done", nodes_done_message(cp))
    if phase in (RunPhase.FINALIZING, RunPhase.FINALIZED):
        return Stop("done", "every node migrated; finalize has begun: `migrator finalize --yes` continues it")
    if phase is RunPhase.PAUSED:
        return Stop("halted", "paused at a step boundary; `migrator resume` continues")
    if phase is RunPhase.ABORTED:
        return Stop("halted", "aborted: no node is in flight; nodes not started stay on Calico")
    if phase is RunPhase.ROLLED_BACK:
        return Stop("done", "rolled back: every node is on Calico")
    return None


def _handover_stop(cp: Checkpoint, purpose: Purpose) -> Stop | None:
    progress = cp.handover
    if cp.halted:
        again = "`migrator handover --rollback`" if purpose == "handover-rollback" else "`migrator handover`"
        return Stop("halted", f"halted: {cp.halted}" + ("" if again in cp.halted else f". Fix the cause, then {again}"))
    if progress is None:
        return Stop("done", "no hand-over recorded")
    if purpose == "handover" and progress.state == "done":
        return Stop("done", "hand-over done: Cilium's BGP control plane announces the pod CIDRs and LB IPAM holds the "
                            "LoadBalancer IPs; next: `migrator finalize --yes`")
    if purpose == "handover-rollback" and progress.state == "undone":
        return Stop("done", "hand-over rolled back: Calico and MetalLB announce as before; `migrator handover` "
                            "starts it again")
    return None


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:NOTE_LIMIT]) + (f" (+{len(names) - NOTE_LIMIT} more)" if len(names) > NOTE_LIMIT else "")


def nodes_done_message(cp: Checkpoint) -> str:
    """What a run whose nodes all finished says, true to how they finished, with the way forward.

    The exit code stays 0 (the run reached its end as the plan configured it: nodes rolled back
    automatically below ``rollback.halt_after``, drains skipped with ``on_pdb_blocked: skip``);
    what is left to do is named here, and finalize refuses until it is done."""
    by_phase: dict[NodePhase, list[str]] = {}
    gone: list[str] = []
    for record in cp.nodes:
        if record.phase is NodePhase.SKIPPED and record.last_error == GONE:
            gone.append(record.name)
        else:
            by_phase.setdefault(record.phase, []).append(record.name)
    notes: list[str] = []
    rolled = by_phase.get(NodePhase.ROLLED_BACK, [])
    if rolled:
        verb = "was" if len(rolled) == 1 else "were"
        notes.append(f"{_listed(rolled)} {verb} rolled back; run `migrator retry --node NAME` for each once the cause "
                     "is fixed, then `migrator resume`")
    skipped = by_phase.get(NodePhase.SKIPPED, [])
    if skipped:
        notes.append(f"{_listed(skipped)} skipped (see `migrator status` for why); `migrator retry --node NAME` "
                     "once the cause is fixed, then `migrator resume`")
    failed = by_phase.get(NodePhase.FAILED, [])
    if failed:
        notes.append(f"{_listed(failed)} failed; roll back with `migrator rollback --node NAME`, fix the cause, "
                     "then `migrator retry --node NAME` and `migrator resume`")
    if gone:
        notes.append(f"{_listed(gone)} deleted from the cluster during the run (nothing left to migrate there)")
    done = len(by_phase.get(NodePhase.DONE, []))
    if not (rolled or skipped or failed):
        return ("every node migrated" + (f" ({done} DONE; " + notes[0] + ")" if notes else "")
                + "; next: `migrator finalize --yes`")
    return f"{done} of {len(cp.nodes)} nodes migrated; " + "; ".join(notes)


def _rollback_stop(cp: Checkpoint) -> Stop:
    if cp.halted:
        return Stop("halted", f"rollback halted: {cp.halted}")
    rolled = [r.name for r in cp.nodes if r.phase is NodePhase.ROLLED_BACK]
    if cp.run_phase is RunPhase.ROLLED_BACK:
        return Stop("done", f"rolled back: every node is on Calico ({len(rolled)} rolled back); the "
                            "CiliumNodeConfig and the probe fleet are gone")
    return Stop("done", f"rolled back: {', '.join(rolled) or 'none'} on Calico; the run is paused — "
                        "`migrator resume` continues with the other nodes")


def _canary_stop(cp: Checkpoint) -> Stop | None:
    canary = cp.canary
    if cp.run_phase is RunPhase.ABORTED and cp.rollback is None:   # before any change, or on request
        return Stop("halted", f"canary {canary.outcome}: {canary.reason}" if canary is not None
                    else "canary aborted at an operator's request: no node is in flight")
    if canary is None or canary.outcome == "soaking":
        return None
    if canary.outcome == "kept" and cp.run_phase is RunPhase.NODES_DONE:
        return Stop("done", f"canary kept: {canary.reason}")
    if cp.halted and cp.rollback is not None:
        return Stop("halted", f"canary {canary.outcome}, and its rollback halted: {cp.halted}")
    if cp.run_phase is RunPhase.ROLLED_BACK:
        code: Literal["done", "halted"] = "done" if canary.outcome == "rolled-back" else "halted"
        return Stop(code, f"canary {canary.outcome}: {canary.reason}; every canary node is back on Calico")
    return None


def _reason(notes: Sequence[str]) -> str:
    shown = list(notes[:NOTE_LIMIT]) + ([f"(+{len(notes) - NOTE_LIMIT} more)"] if len(notes) > NOTE_LIMIT else [])
    return "; ".join(n for n in shown if n)


def decide(plan: MigrationPlan, checkpoint: Checkpoint | None, observation: ClusterObservation,
           now: datetime, inbox: Inbox | None = None) -> Decision:
    """The next checkpoint and actions, and whether this process stops (see the module docstring)."""
    inbox = inbox or Inbox()
    now = utc(now)
    cp = checkpoint
    notes: list[str] = []
    if inbox.first:
        cp, stop, note = _first_turn(plan, cp, observation, now, inbox)
        if stop is not None and stop.code == "invalid":   # bad input: nothing is written
            return Decision(checkpoint, (), stop.message, False, None, stop)
        if stop is not None:
            return Decision(cp, (), stop.message, cp != checkpoint, None, stop)
        notes.append(note)
    if cp is None:
        stop = Stop("invalid", f"no migration state in {_where(plan)}; start with `migrator run`")
        return Decision(None, (), stop.message, False, None, stop)
    _check_plan(plan, cp)
    if inbox.results:
        present = observation.node_by_name
        gone = frozenset(name for name in cp.order if name not in present)
        cp = record_results(cp, inbox.results, now, plan.drain.retry_interval, gone)
    cp, actions, more, wake = _step(plan, cp, observation, now, inbox.purpose, inbox.explained)
    notes.extend(more)
    if not notes or not any(notes):
        notes.append(f"run {cp.run_phase.value.lower()}: nothing to do")
    changed = cp != checkpoint
    if changed:
        cp = cp.model_copy(update={"updated_at": now})
    stop = None if actions else _stop(cp, inbox.purpose)
    return Decision(cp, tuple(actions), _reason(notes), changed, wake, stop)

