"""The run's journal: ``Checkpoint`` and its ConfigMap encoding.

The checkpoint is the only memory the migrator has between loop iterations and across
crashes. It records, per node, the phase reached, the attempt, when the phase started (so
deadlines survive restarts), the intent of the step in progress (written *before* the action
runs, so a restarted process never repeats a non-idempotent step), the last error and the
node's prior state (so we never uncordon a node we did not cordon).

Encoding (``to_configmap_data``): three keys readable with ``kubectl get cm -o yaml``:
``summary`` (a few lines for humans), ``run.json`` (everything but the nodes, compact JSON) and
``nodes`` (one line per node)::

    @names-end-with .eu-west-1.compute.internal
    ip-10-0-1-5 DONE a=1 t=412 u=0
    ip-10-0-1-6 CORDONED a=1 t=430 u=0 | {"intent":{"step":"drain","pods":["..."]}}

``t`` is the phase start in whole seconds after ``started_at``; ``u``/``l`` are the prior
``spec.unschedulable`` (0/1) and the prior migration-label value (no ``l``: absent); everything
rarer goes into the optional JSON after `` | ``. The first line, present only when every node
name shares a domain, writes that domain once. At 5,000 nodes this stays below 256 KiB
(``make bench``: about 202 KiB with 41-character names).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from migrator.model.states import NodePhase, RunPhase

SCHEMA_VERSION = 2
#: Versions ``from_configmap_data`` reads. Version 1 recorded a hash of the whole plan and no
#: per-field digests; ``model.identity.adopt_plan`` upgrades such a record (see there).
READABLE_VERSIONS = (1, 2)
ERROR_LIMIT = 240


def _utc_seconds(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return value.astimezone(UTC).replace(microsecond=0)


Timestamp = Annotated[datetime, AfterValidator(_utc_seconds)]


def utc(value: datetime) -> datetime:
    """Normalise a timestamp the way the checkpoint stores it (UTC, whole seconds)."""
    return _utc_seconds(value)


def truncate_error(message: str) -> str:
    """Errors are kept short in the checkpoint (the full text goes to logs)."""
    text = " ".join(message.split())
    return text if len(text) <= ERROR_LIMIT else text[:ERROR_LIMIT - 1] + "…"


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


IntentStep = Literal["cordon", "drain", "label", "restart-agent", "verify", "recycle", "probe",
                     "uncordon", "restore", "rollback"]

#: The stages of a node's rollback, in order (``Intent.stage`` while ``step`` is ``rollback``).
ROLLBACK_STAGES: tuple[str, ...] = ("cordon", "unlabel", "restart-agent", "restore-cni", "recycle",
                                    "probe", "restore")
RollbackStage = Literal["cordon", "unlabel", "restart-agent", "restore-cni", "recycle", "probe", "restore"]


class Intent(_Record):
    """The step in progress on a node, written before its actions are executed."""

    step: IntentStep = Field(description="The step towards the next phase.")
    agent_uid: str | None = Field(default=None,
                                  description="uid of the agent pod to delete (restart-agent).")
    pods: tuple[str, ...] = Field(
        default=(), description="uids of pods already evicted/deleted in this step (never twice).")
    owners: tuple[str, ...] = Field(
        default=(), description="Controllers (Kind/ns/name) whose replacement pod we wait for.")
    not_before: Timestamp | None = Field(
        default=None, description="Do not retry before this time (back-off after a 429).")
    blocked_since: Timestamp | None = Field(
        default=None, description="First time an eviction was refused by a PDB in this step.")
    sent_at: Timestamp | None = Field(
        default=None, description="When the step's single action was last emitted (no resend before "
                                  "the effect had time to show).")
    stage: RollbackStage | None = Field(default=None, description="Rollback stage in progress.")
    switched: bool = Field(default=False,
                           description="Rollback: the node reached the agent switch, so it must be undone.")
    passed: tuple[str, ...] = Field(default=(), description="Probe checks passed so far in this gate.")
    failures: dict[str, str] = Field(default_factory=dict,
                                     description="Probe checks that failed their last round, with why.")


class PriorNodeState(_Record):
    """How the node was before the migrator touched it."""

    unschedulable: bool = Field(description="spec.unschedulable before we cordoned.")
    label: str | None = Field(default=None,
                              description="Prior value of the migration label (None = absent).")
    taints: tuple[str, ...] = Field(default=(), description="Taints we added (key:effect).")


class NodeRecord(_Record):
    """One node's line in the journal."""

    name: str = Field(description="Node name.")
    phase: NodePhase = Field(default=NodePhase.PENDING, description="Last phase reached.")
    attempt: int = Field(default=0, ge=0, description="How many times this node was started.")
    phase_started_at: Timestamp | None = Field(default=None, description="When `phase` began.")
    intent: Intent | None = Field(default=None, description="Step in progress, if any.")
    last_error: str | None = Field(default=None, description="Last error (truncated).")
    prior: PriorNodeState | None = Field(default=None, description="Prior state (set on cordon).")
    audit: tuple[str, ...] = Field(default=(), description="Audit notes (e.g. PDB overrides).")
    probes: str | None = Field(default=None, description="Outcome of the node's last connectivity gate.")
    rollback_reason: str | None = Field(default=None, description="Why the node was rolled back.")
    policy_gap: str | None = Field(
        default=None, description="policy.mode continuous: the flows enforced on one side only during the node's "
                                  "window (count and first flows, bounded), written before its switch.")


class RollbackRequest(_Record):
    """An on-call rollback asked for through `migrator rollback`."""

    nodes: tuple[str, ...] = Field(default=(), description="Nodes to roll back (empty with all).")
    all: bool = Field(default=False, description="Roll back every node and the run itself.")
    requested_at: Timestamp = Field(description="When it was asked for.")
    by: str = Field(description="Who asked (user@host/pid).")
    reason: str = Field(default="on-call rollback", description="Why (recorded on each node).")
    started: tuple[str, ...] = Field(default=(), description="Nodes whose rollback this request began.")
    cleanup_sent_at: Timestamp | None = Field(
        default=None, description="When the CiliumNodeConfig / probe fleet deletion was last sent (all).")
    swept: bool = Field(default=False, description="The final probe sweep passed (all).")


class SamplingState(_Record):
    """Continuous sampling of the pod-to-pod matrix."""

    cursor: int = Field(default=0, ge=0, description="Where the next round starts in the pair rotation.")
    last_at: Timestamp | None = Field(default=None, description="When the last round was sent.")
    rounds: int = Field(default=0, ge=0, description="Rounds sent so far.")
    answered: int = Field(default=0, ge=0, description="Rounds whose answers were folded in.")
    failures: tuple[str, ...] = Field(default=(), description="Pairs that failed while neither node was in flight.")


class PolicyBaseline(_Record):
    """The policy probe's truth table before the run: one character per flow, in the order
    ``engine.policy_probe.flow_keys`` gives (``1`` allowed, ``0`` denied, ``?`` not seen yet)."""

    spec: str = Field(description="Digest of the probe (namespaces, pods, ports) the table was taken with.")
    table: str = Field(max_length=4096, description="The verdicts, one character per flow.")

    @property
    def complete(self) -> bool:
        return "?" not in self.table


class CanaryState(_Record):
    """A canary run's soak and outcome."""

    soak_until: Timestamp | None = Field(default=None, description="End of the soak.")
    outcome: Literal["soaking", "kept", "rolled-back", "failed"] = Field(
        default="soaking", description="kept / rolled-back (by policy) / failed (rolled back after a failure).")
    reason: str | None = Field(default=None, description="Why the canary ended as it did.")
    rounds_before: int = Field(default=0, ge=0, description="Sampling rounds sent before the soak began: "
                               "the soak passes only once a later round was answered in full.")


class SkippedCheck(_Record):
    """A preflight check whose blocking findings an operator chose to run past (``--skip-check``)."""

    check: str = Field(description="The check ID, e.g. calico.vxlan-port.")
    by: str = Field(description="Who asked (user@host/pid).")
    at: Timestamp = Field(description="When it was asked for.")
    applied: bool = Field(default=False, description="A blocking finding of this check was skipped "
                                                     "(and audited, once).")


FinalizeStep = Literal["helm-values", "configmap", "switch-routing", "restart-agents", "delete-node-config",
                       "policy-table", "remove-policy-probe", "remove-probes", "remove-shims", "verify-policy",
                       "remove-calico-policies", "remove-calico", "node-cleanup", "done"]


class FinalizeProgress(_Record):
    """How far finalize got."""

    step: FinalizeStep = Field(default="helm-values", description="Current finalize step.")
    step_started_at: Timestamp | None = Field(default=None, description="When `step` began.")
    restarted_at: str | None = Field(
        default=None, description="restartedAt annotation written for the agent DaemonSet.")
    sent_at: Timestamp | None = Field(default=None, description="When the step's actions were emitted.")
    active: tuple[str, ...] = Field(default=(), description="Nodes whose clean-up pod was created.")
    cleaned: tuple[str, ...] = Field(default=(), description="Nodes whose clean-up pod succeeded.")
    replaced: tuple[str, ...] = Field(
        default=(), description="UIDs of the agent pods deleted at once to switch to native routing.")
    last_error: str | None = Field(default=None, description="Last finalize error.")
    policy_table: str | None = Field(
        default=None, max_length=4096,
        description="The policy probe's truth table after finalize, as the baseline keeps it.")


class HandoverProgress(_Record):
    """How far the routing hand-over got (``engine/handover.py``).

    The steps are derived afresh each turn from the cluster (``engine/handover_steps.py``);
    ``key`` names the step at ``index`` so a resumed process finds its place even if the list
    around it changed. What undoes a patched object is kept on the object itself (annotation
    ``migrator.io/handover-undo``), so this record does not grow with the number of Services."""

    direction: Literal["forward", "back"] = Field(default="forward", description="Handing over, or undoing.")
    index: int = Field(default=0, ge=0, description="Position of the step in flight in the list of steps.")
    key: str | None = Field(default=None, description="Key of the step in flight (None: none left).")
    state: Literal["running", "done", "undone"] = Field(
        default="running", description="done: every step observed; undone: every step undone.")
    step_started_at: Timestamp | None = Field(default=None, description="When the step in flight began.")
    sent_at: Timestamp | None = Field(default=None, description="When its write was last sent.")
    last_error: str | None = Field(default=None, description="Why the hand-over halted.")


class Checkpoint(_Record):
    """The whole journal of one migration run."""

    schema_version: int = Field(default=SCHEMA_VERSION, description="Encoding version.")
    plan_name: str = Field(description="Name of the plan being run.")
    plan_hash: str = Field(description="Identity of the run: digest of its plan's defining fields "
                                       "(model/identity.py; schema 1: of the whole plan).")
    plan_digests: dict[str, str] = Field(
        default_factory=dict, description="Per defining field, a digest of its value: names the field a "
                                          "refused plan changed.")
    plan_tuning: dict[str, Any] = Field(
        default_factory=dict, description="The plan's tuning values, to audit a change on resume.")
    run_id: str = Field(description="Identifier of the run (stable across resumes).")
    run_phase: RunPhase = Field(default=RunPhase.PREFLIGHT, description="Run phase.")
    run_phase_started_at: Timestamp | None = Field(default=None, description="When run_phase began.")
    requested: Literal["pause", "abort"] | None = Field(
        default=None, description="Operator request honoured at the next step boundary.")
    halted: str | None = Field(default=None,
                               description="Why the run halted (None while it may proceed).")
    started_at: Timestamp = Field(description="When the run began; node times are offsets from it.")
    updated_at: Timestamp | None = Field(default=None, description="Last decision time.")
    node_config_version: str | None = Field(
        default=None, description="apiVersion chosen for the CiliumNodeConfig at prepare.")
    last_node_done_at: Timestamp | None = Field(
        default=None, description="When the last node finished (pause_between_nodes gate).")
    prepare_sent_at: Timestamp | None = Field(
        default=None, description="When the CiliumNodeConfig was last ensured (prepare step).")
    last_error: str | None = Field(default=None, description="Last run-level error (truncated).")
    nodes: tuple[NodeRecord, ...] = Field(default=(), description="Per-node records, in run order.")
    finalize: FinalizeProgress | None = Field(default=None, description="Finalize progress.")
    handover: HandoverProgress | None = Field(default=None, description="Routing hand-over progress.")
    audit: tuple[str, ...] = Field(default=(), description="Run-level audit notes.")
    fleet_sent_at: Timestamp | None = Field(
        default=None, description="When the probe fleet was last ensured (prepare step).")
    rollback: RollbackRequest | None = Field(default=None, description="On-call rollback in progress.")
    steered: tuple[str, ...] = Field(
        default=(), description="Nodes that may carry our placement taint (recorded before it is added).")
    steer_sent_at: Timestamp | None = Field(default=None, description="When placement taints were last sent.")
    rollbacks_acknowledged: int = Field(
        default=0, ge=0, description="Automatic rollbacks an operator resumed past (rollback.halt_after).")
    sampling: SamplingState = Field(default_factory=SamplingState, description="Continuous sampling.")
    policy_baseline: PolicyBaseline | None = Field(
        default=None, description="The policy probe's truth table before the run (probes.policy).")
    policy_sent_at: Timestamp | None = Field(
        default=None, description="When the policy probe pods were last ensured or a baseline round sent.")
    canary: CanaryState | None = Field(default=None, description="Canary soak and outcome.")
    skipped_checks: tuple[SkippedCheck, ...] = Field(
        default=(), description="Preflight checks whose blocking findings do not stop the run (--skip-check).")

    @property
    def order(self) -> tuple[str, ...]:
        """Node names in run order."""
        return self._derived().order

    _index: _Derived | None = PrivateAttr(default=None)

    def _derived(self) -> _Derived:
        """What is derived from ``nodes``: kept per ``nodes`` tuple (safe across copies), and
        carried forward record by record by ``with_nodes``, so a turn's cost follows the records
        it changes rather than the cluster's size."""
        index = self._index
        if index is None or index.nodes is not self.nodes:
            index = self._index = _Derived.of(self.nodes)
        return index

    @property
    def by_name(self) -> dict[str, NodeRecord]:
        """Records keyed by node name."""
        return self._derived().by_name

    @property
    def census(self) -> Census:
        """The nodes by state: in flight, not started, counts per phase."""
        return self._derived().census

    @property
    def position(self) -> dict[str, int]:
        """Each node's place in the run order."""
        return self._derived().position

    def in_run_order(self, names: Iterable[str]) -> list[str]:
        """Those of ``names`` that are the run's nodes, in run order."""
        position = self.position
        return sorted((n for n in names if n in position), key=position.__getitem__)

    def node(self, name: str) -> NodeRecord | None:
        """The record of ``name``, if the node is part of the run."""
        return self.by_name.get(name)

    def counts(self) -> dict[NodePhase, int]:
        """How many nodes are in each phase (phases with none left out)."""
        return {phase: n for phase, n in self.census.counts.items() if n}

    def with_nodes(self, updates: dict[str, NodeRecord], **changes: Any) -> Checkpoint:
        """A copy with some node records replaced (and other fields changed)."""
        derived = self._derived()
        updates = {name: record for name, record in updates.items() if name in derived.position}
        if not updates:
            return self.model_copy(update=changes) if changes else self
        nodes = list(self.nodes)
        for name, record in updates.items():
            nodes[derived.position[name]] = record
        changes["nodes"] = tuple(nodes)
        copy = self.model_copy(update=changes)
        copy._index = derived.updated(copy.nodes, updates)
        return copy

    @property
    def all_nodes_finished(self) -> bool:
        """Every node reached a terminal phase."""
        return self.census.unfinished == 0


def in_flight(record: NodeRecord) -> bool:
    """The node has started (an intent was written) and has not finished."""
    if record.phase is NodePhase.PENDING:
        return record.intent is not None
    return not record.phase.terminal


def not_started(record: NodeRecord) -> bool:
    """Pending with no intent written: the node's migration has not begun."""
    return record.phase is NodePhase.PENDING and record.intent is None


class Census:
    """The run's nodes by state, derived from the records (immutable; ``updated`` derives the next)."""

    __slots__ = ("in_flight", "not_started", "counts", "unfinished", "evicting")

    def __init__(self, in_flight: frozenset[str], not_started: frozenset[str], counts: dict[NodePhase, int],
                 evicting: frozenset[str]) -> None:
        self.in_flight = in_flight          # started (an intent written) and not finished
        self.not_started = not_started      # PENDING without an intent
        self.counts = counts                # nodes per phase (every phase present)
        self.unfinished = sum(n for phase, n in counts.items() if not phase.terminal)
        self.evicting = evicting            # an intent recording pods sent away (evicted or deleted)

    @classmethod
    def of(cls, records: Iterable[NodeRecord]) -> Census:
        records = tuple(records)
        counts = dict.fromkeys(NodePhase, 0) | Counter(r.phase for r in records)
        return cls(frozenset(r.name for r in records if in_flight(r)),
                   frozenset(r.name for r in records if not_started(r)), counts,
                   frozenset(r.name for r in records if _evicting(r)))

    def updated(self, before: Iterable[NodeRecord], after: Iterable[NodeRecord]) -> Census:
        """The census once ``before`` records were replaced by ``after``."""
        flying, waiting, counts = set(self.in_flight), set(self.not_started), dict(self.counts)
        evicting = set(self.evicting)
        for record in before:
            flying.discard(record.name)
            waiting.discard(record.name)
            evicting.discard(record.name)
            counts[record.phase] -= 1
        for record in after:
            if in_flight(record):
                flying.add(record.name)
            elif not_started(record):
                waiting.add(record.name)
            if _evicting(record):
                evicting.add(record.name)
            counts[record.phase] += 1
        return Census(frozenset(flying), frozenset(waiting), counts, frozenset(evicting))


def _evicting(record: NodeRecord) -> bool:
    return record.intent is not None and bool(record.intent.pods)


class _Derived:
    """``Checkpoint._derived`` for one ``nodes`` tuple: positions, records by name, names in order,
    the census. A cache, never state: it compares equal to any other (and to none), so two
    checkpoints with the same fields are equal whatever each has computed."""

    __slots__ = ("nodes", "position", "by_name", "order", "census")

    def __init__(self, nodes: tuple[NodeRecord, ...], position: dict[str, int], by_name: dict[str, NodeRecord],
                 order: tuple[str, ...], census: Census) -> None:
        self.nodes, self.position, self.by_name, self.order, self.census = nodes, position, by_name, order, census

    def __eq__(self, other: object) -> bool:
        return other is None or isinstance(other, _Derived)

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of(cls, nodes: tuple[NodeRecord, ...]) -> _Derived:
        order = tuple(record.name for record in nodes)
        return cls(nodes, {name: i for i, name in enumerate(order)}, dict(zip(order, nodes, strict=True)), order,
                   Census.of(nodes))

    def updated(self, nodes: tuple[NodeRecord, ...], updates: dict[str, NodeRecord]) -> _Derived:
        """For ``nodes``: these records with ``updates`` in place of theirs."""
        by_name = dict(self.by_name)
        before = [by_name[name] for name in updates]
        by_name.update(updates)
        return _Derived(nodes, self.position, by_name, self.order, self.census.updated(before, updates.values()))


def in_run_order(order: tuple[str, ...], names: Iterable[str]) -> tuple[str, ...]:
    """``names`` in the run's node order, any that are not the run's nodes after them as given:
    the one order ``Checkpoint.steered`` is kept in, so it reads back as it was written (the node
    shards record their own nodes' part of it)."""
    wanted = list(dict.fromkeys(names))
    inside = set(wanted) & set(order)
    return tuple(n for n in order if n in inside) + tuple(n for n in wanted if n not in inside)


def changed_records(previous: tuple[NodeRecord, ...] | None,
                    current: tuple[NodeRecord, ...]) -> Iterator[NodeRecord]:
    """The records of ``current`` that are not the very objects of ``previous`` (every record
    when the node list itself changed). A decision replaces only the records it changes, so this
    is the turn's changes at the cost of an identity test per node; a record equal but not
    identical (after a reload) counts as changed, which only costs its consumer a comparison."""
    if previous is None or len(previous) != len(current):
        yield from current
        return
    for before, after in zip(previous, current, strict=True):
        if before is not after:
            yield after


# --------------------------------------------------------------------------------------------
# ConfigMap encoding
# --------------------------------------------------------------------------------------------

def _offset(moment: datetime | None, epoch: datetime) -> str:
    return "-" if moment is None else str(int((moment - epoch).total_seconds()))


SUFFIX_LINE = "@names-end-with "


def common_name_suffix(names: list[str]) -> str:
    """The longest domain-like suffix (from a dot) that every node name shares, or "".

    Fully qualified node names (``ip-10-0-1-5.eu-west-1.compute.internal``) repeat their domain
    on every line; writing it once keeps a 5,000-node checkpoint well under the ConfigMap limit.
    """
    if len(names) < 2:
        return ""
    first = names[0]
    suffix = first[first.find("."):] if "." in first else ""
    while suffix and not all(n.endswith(suffix) and len(n) > len(suffix) for n in names):
        dot = suffix.find(".", 1)
        suffix = suffix[dot:] if dot > 0 else ""
    return suffix


def _node_line(record: NodeRecord, epoch: datetime, suffix: str = "") -> str:
    name = record.name[:-len(suffix)] if suffix else record.name
    parts = [name, record.phase.value, f"a={record.attempt}", f"t={_offset(record.phase_started_at, epoch)}"]
    if record.prior is not None:
        label = "-" if record.prior.label is None else record.prior.label
        parts.append(f"u={int(record.prior.unschedulable)}")
        if label != "-":
            parts.append(f"l={label}")
    extras: dict[str, Any] = {}
    if record.intent is not None:
        extras["intent"] = record.intent.model_dump(mode="json", exclude_defaults=True)
    if record.last_error:
        extras["err"] = record.last_error
    if record.audit:
        extras["audit"] = list(record.audit)
    if record.prior is not None and record.prior.taints:
        extras["taints"] = list(record.prior.taints)
    if record.probes:
        extras["probes"] = record.probes
    if record.rollback_reason:
        extras["rb"] = record.rollback_reason
    if record.policy_gap:
        extras["gap"] = record.policy_gap
    line = " ".join(parts)
    if extras:
        line += " | " + json.dumps(extras, separators=(",", ":"), ensure_ascii=False)
    return line


def _parse_node_line(line: str, epoch: datetime, suffix: str = "") -> NodeRecord:
    head, _, tail = line.partition(" | ")
    tokens = head.split(" ")
    if len(tokens) < 4:
        raise ValueError(f"node line {line!r}: expected 'NAME PHASE a=N t=S ...'")
    fields: dict[str, str] = {}
    for token in tokens[2:]:
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"node line {line!r}: token {token!r} is not key=value")
        fields[key] = value
    extras: dict[str, Any] = json.loads(tail) if tail else {}
    started = fields.get("t", "-")
    prior = None
    if "u" in fields:
        label = fields.get("l", "-")
        prior = PriorNodeState(unschedulable=fields["u"] == "1",
                               label=None if label == "-" else label,
                               taints=tuple(extras.get("taints", ())))
    return NodeRecord(
        name=tokens[0] + suffix, phase=NodePhase(tokens[1]), attempt=int(fields.get("a", "0")),
        phase_started_at=None if started == "-" else epoch + timedelta(seconds=int(started)),
        intent=Intent.model_validate(extras["intent"]) if "intent" in extras else None,
        last_error=extras.get("err"), prior=prior, audit=tuple(extras.get("audit", ())),
        probes=extras.get("probes"), rollback_reason=extras.get("rb"), policy_gap=extras.get("gap"))


SUMMARY_AUDIT = 5  # latest run-level audit notes shown in the summary


def render_summary(cp: Checkpoint, *, shards: str | None = None) -> str:
    """A few human-readable lines: plan, run, phase, counts, request, halt reason, latest audit notes
    (and, ``shards``, where the node lines are)."""
    counts = cp.counts()
    tally = ", ".join(f"{phase.value.lower()}={counts[phase]}" for phase in NodePhase if phase in counts)
    lines = [f"plan: {cp.plan_name} ({cp.plan_hash})", f"run: {cp.run_id}",
             f"phase: {cp.run_phase.value}", f"nodes: {len(cp.nodes)} ({tally or 'none'})",
             f"updated: {cp.updated_at.isoformat() if cp.updated_at else '-'}"]
    if cp.requested:
        lines.append(f"requested: {cp.requested}")
    if cp.halted:
        lines.append(f"halted: {cp.halted}")
    if cp.handover is not None:
        h = cp.handover
        where = {"done": "done", "undone": "rolled back"}.get(h.state) or (
            f"{'handing over' if h.direction == 'forward' else 'rolling back'}, step {h.index + 1}: {h.key or '-'}")
        lines.append(f"hand-over: {where}")
    if cp.finalize is not None:
        lines.append(f"finalize: {cp.finalize.step}")
    lines += [f"audit: {note}" for note in cp.audit[-SUMMARY_AUDIT:]]
    if shards:
        lines.append(f"node lines: in ConfigMaps {shards}")
    lines.append("node lines: NAME PHASE a=attempt t=seconds-after-start u=prior-unschedulable "
                 "[l=prior-label] [| json]; after a line '@names-end-with SUFFIX' every NAME lacks SUFFIX")
    return "\n".join(lines) + "\n"


def encode_node_lines(records: Sequence[NodeRecord], epoch: datetime) -> str:
    """One line per node (after an ``@names-end-with`` line when every name shares a domain)."""
    suffix = common_name_suffix([record.name for record in records])
    lines = [SUFFIX_LINE + suffix] if suffix else []
    lines += [_node_line(record, epoch, suffix) for record in records]
    return "\n".join(lines) + ("\n" if lines else "")


def parse_node_lines(text: str, epoch: datetime) -> list[NodeRecord]:
    """The records ``encode_node_lines`` wrote. Raises ``ValueError``."""
    suffix = ""
    records: list[NodeRecord] = []
    for line in text.splitlines():
        if line.startswith(SUFFIX_LINE):
            suffix = line[len(SUFFIX_LINE):].strip()
        elif line.strip():
            records.append(_parse_node_line(line, epoch, suffix))
    return records


def run_epoch(run: dict[str, Any]) -> datetime:
    """The run's start, from which node lines count their seconds."""
    return _utc_seconds(datetime.fromisoformat(run["started_at"]))


def to_configmap_data(cp: Checkpoint) -> dict[str, str]:
    """Encode a checkpoint as the data of one ConfigMap (``summary``, ``run.json``, ``nodes``):
    the single-object layout of earlier releases, still read; the store writes shards
    (``model/shards.py``)."""
    run = cp.model_dump(mode="json", exclude={"nodes"}, exclude_none=True, exclude_defaults=True)
    run["schema_version"] = cp.schema_version
    return {"summary": render_summary(cp),
            "run.json": json.dumps(run, separators=(",", ":"), sort_keys=True),
            "nodes": encode_node_lines(cp.nodes, cp.started_at)}


def from_configmap_data(data: dict[str, str]) -> Checkpoint:
    """Decode ConfigMap data written by ``to_configmap_data``. Raises ``ValueError``."""
    if "run.json" not in data:
        raise ValueError("checkpoint ConfigMap has no run.json key")
    run = json.loads(data["run.json"])
    version = run.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"checkpoint schema_version {version!r} is not one of {READABLE_VERSIONS}; "
                         "use the migrator release that wrote it")
    if "shards" in run:
        raise ValueError("this checkpoint keeps its nodes in shard ConfigMaps; read it with "
                         "migrator.model.shards.decode")
    records = parse_node_lines(data.get("nodes", ""), run_epoch(run))
    return Checkpoint.model_validate({**run, "nodes": tuple(records)})


def configmap_size(data: dict[str, str]) -> int:
    """Bytes the data takes in the object (keys + values, UTF-8)."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in data.items())
