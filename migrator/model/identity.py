"""What identifies a run: the plan's defining fields, and adopting a plan whose tuning changed.

A run is defined by what it migrates to (the Cilium target), which nodes in which order, where
its state and lock live, and the objects it built when it was prepared. Those fields are
``DEFINING``: a plan that differs in one of them is another run, and ``resume`` refuses it
(``PlanMismatch`` names the field). Everything else is ``TUNING`` — deadlines, concurrency,
drain policy and ``pdb_override``, gates, probe judging, rollback policy, placement, recycle,
verify, finalize options, canary soak — and may change on ``resume --plan NEW``: the change is
recorded in the checkpoint's audit as ``field: old → new (by WHO at TIME)``.

Every leaf field of ``MigrationPlan`` is classified here by its dotted path (``[]`` marks the
items of a tuple of sections); ``unclassified()`` lists any that is not, and a test keeps it
empty, so a new plan field cannot slip into either side unexamined.

The checkpoint stores, per defining field, a short digest (never the value: ``nodes.names``
may list thousands of nodes), the identity hash over those digests (``Checkpoint.plan_hash``)
and the tuning values themselves (small), so a later plan can be compared field by field.
Checkpoints written before this existed (``schema_version`` 1) hold only a hash of the whole
plan: ``adopt_plan`` accepts exactly that plan, records its identity and upgrades the record;
any other plan is refused, because nothing tells which of its fields changed.
"""

from __future__ import annotations

import hashlib
import json
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from migrator.model.checkpoint import SCHEMA_VERSION, Checkpoint, truncate_error, utc
from migrator.model.plan import MigrationPlan, plan_hash

__all__ = ["DEFINING", "TUNING", "PlanChanges", "PlanMismatch", "adopt_plan", "identity_record",
           "leaf_paths", "plan_changes", "plan_digests", "plan_identity", "plan_tuning", "same_run",
           "unclassified"]

AUDIT_LIMIT = 20        # run-level audit notes kept (the oldest go first)
CHANGES_LISTED = 8      # tuning changes audited one per entry; beyond, one entry counts the rest
VALUE_LIMIT = 60        # characters of an old/new value in an audit entry

DEFINING: tuple[str, ...] = (
    # The document's constants: they cannot differ in a valid plan.
    "api_version", "kind",
    # The run carries its plan's name (checkpoint, Events, logs); another name is another run.
    "name",
    # The Cilium target. Nodes already switched got pod IPs from pod_cidr and reach each other
    # over this tunnel; another value would split the Cilium side of the cluster in two.
    "cilium.pod_cidr", "cilium.tunnel_protocol", "cilium.tunnel_port",
    # The CiliumNodeConfig created at prepare, which the switched agents resolved and which
    # `rollback --all` and finalize delete: another reference would orphan it.
    "cilium.node_config.name", "cilium.node_config.namespace", "cilium.node_config.api_version",
    # The agents that were restarted onto Cilium, their DaemonSet (restarted by finalize) and
    # their ConfigMap (patched by finalize): another reference is another Cilium installation.
    "cilium.agent.namespace", "cilium.agent.selector", "cilium.agent.daemonset", "cilium.agent.config_map",
    # Which nodes, in which order: frozen into the checkpoint when the run started.
    "nodes.names", "nodes.selector.match_labels", "nodes.selector.match_expressions[].key",
    "nodes.selector.match_expressions[].operator", "nodes.selector.match_expressions[].values",
    "nodes.exclude", "order.strategy", "order.canaries",
    # The probe fleet is deployed once, when the run is prepared, in this namespace on these
    # ports; every gate dials it and finalize / `rollback --all` delete it there. Moving or
    # enabling it mid-run would fail every later gate (rolling nodes back) and leave the old
    # fleet behind.
    "probes.enabled", "probes.namespace", "probes.port", "probes.host_port",
    # Policy continuity: the CiliumNodeConfig prepared for the run carries enable-policy, and the
    # translations and shims applied at prepare are what finalize verifies and removes.
    "policy.mode",
    # The routing hand-over: the CiliumNodeConfig prepared for the run turns Cilium's BGP control
    # plane on (agents read it at their restart), and finalize keeps it on.
    "routing.handover",
    # Where the checkpoint and the lock live: another place is another run.
    "state.configmap_name", "state.configmap_namespace", "state.lease_name", "state.lease_namespace",
)

TUNING: tuple[str, ...] = (
    # Deadlines and back-offs: read afresh at each decision (deadlines are phase start + timeout).
    "cilium.agent.restart_timeout", "drain.timeout", "drain.retry_interval", "recycle.timeout",
    "verify.timeout", "probes.ready_timeout", "rollback.timeout", "finalize.timeout",
    "state.lease_duration",
    # How long an API server outage is waited out: read by the runner at each failed turn.
    "api.outage_tolerance",
    # How many nodes at once and how many failures are tolerated.
    "concurrency.max_unavailable", "concurrency.per_zone", "max_failures",
    # Drain policy, including the audited PDB override (every forced deletion is audited too).
    "drain.grace_period_seconds", "drain.delete_emptydir_data", "drain.unmanaged_pods",
    "drain.on_pdb_blocked", "drain.pdb_override.reason", "drain.pdb_override.approved_by",
    "drain.pdb_override.after",
    # Where evicted pods go: placement taints are recorded in the checkpoint (`steered`) and
    # reconciled against the current strategy, so a change adds or removes them cleanly.
    "placement.strategy",
    # Per-node steps that create their pods afresh for each node.
    "recycle.enabled", "verify.namespace", "verify.image", "verify.args",
    # Start gates: checked before each node starts.
    "gates.window.start", "gates.window.end", "gates.window.timezone", "gates.window.days",
    "gates.pause_between_nodes", "gates.blocking_pods.namespace", "gates.blocking_pods.selector.match_labels",
    "gates.blocking_pods.selector.match_expressions[].key",
    "gates.blocking_pods.selector.match_expressions[].operator",
    "gates.blocking_pods.selector.match_expressions[].values",
    # Finalize options: read when finalize runs.
    "finalize.helm_values_path", "finalize.apply_configmap", "finalize.remove_calico[].group",
    "finalize.remove_calico[].version", "finalize.remove_calico[].plural", "finalize.remove_calico[].namespace",
    "finalize.remove_calico[].name", "finalize.node_cleanup", "finalize.cleanup_image",
    # How a gate is judged, and continuous sampling (the fleet itself is defining, above). The
    # image is used only where a probe pod is (re)created.
    "probes.image", "probes.dns_name", "probes.checks.tries", "probes.checks.pass_threshold",
    "probes.checks.interval", "probes.checks.deadline", "probes.checks.peers", "probes.sampling.pairs",
    "probes.sampling.interval",
    # The policy probe: its baseline records the probe it was taken with (a digest), and a gate
    # judges the table only against a baseline of the same probe; its pods are ensured at prepare.
    "probes.policy.namespaces", "probes.policy.create_namespaces", "probes.policy.pods",
    "probes.policy.ports", "probes.policy.tries",
    # Rollback policy and the image of its node-local pod.
    "rollback.automatic", "rollback.halt_after", "rollback.image",
    # Accepted policy approximations: read by preflight, which runs again on resume.
    "policy.accept[].policy", "policy.accept[].approximation", "policy.accept[].reason",
    # Canary policy: read when the soak ends.
    "canary.soak", "canary.on_success",
    # What preflight checks the cluster's routing against (it changes no step already taken).
    "routing.announceable_cidrs", "routing.expect",
    # How long a hand-over step may take: read at each decision; the switch to native routing is
    # read when finalize runs.
    "routing.handover_timeout", "routing.native_routing",
)


class PlanMismatch(ValueError):
    """The plan differs from the run's in a field that defines the run (exit 2)."""


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

def _sections(annotation: Any) -> tuple[list[type[BaseModel]], bool]:
    """The section models inside a field's annotation, and whether they are tuple items."""
    found: list[type[BaseModel]] = []
    many = False
    for arg in typing.get_args(annotation):
        inner, inner_many = _sections(arg)
        found += inner
        many = many or inner_many or (typing.get_origin(annotation) is tuple and bool(inner))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    return found, many


def leaf_paths(model: type[BaseModel] = MigrationPlan, prefix: str = "") -> list[str]:
    """Every leaf field of ``model`` as a dotted path, recursing into sections (``[]``: tuple items)."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        sections, many = _sections(field.annotation)
        if not sections:
            paths.append(prefix + name)
        for section in sections:
            paths += leaf_paths(section, prefix + name + ("[]." if many else "."))
    return paths


def unclassified(model: type[BaseModel] = MigrationPlan) -> list[str]:
    """Problems with the classification of ``model``'s fields: leaves in neither table, in both,
    or not in the plan."""
    leaves = set(leaf_paths(model))
    defining, tuning = set(DEFINING), set(TUNING)
    return ([f"{p}: not classified (add it to DEFINING or TUNING)" for p in sorted(leaves - defining - tuning)]
            + [f"{p}: both defining and tuning" for p in sorted(defining & tuning)]
            + [f"{p}: not a plan field" for p in sorted((defining | tuning) - leaves)])


def _units(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Compared units: a tuple of sections is compared as one value (``a.b[].c`` → ``a.b``)."""
    return tuple(dict.fromkeys(p.split("[]", 1)[0] for p in paths))


DEFINING_UNITS = _units(DEFINING)
TUNING_UNITS = _units(TUNING)


def _value(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# What the checkpoint records
# --------------------------------------------------------------------------------------------

def plan_digests(plan: MigrationPlan) -> dict[str, str]:
    """Per defining field, a 12-hex digest of its value (None when its section is absent)."""
    data = plan.model_dump(mode="json")
    return {unit: hashlib.sha256(_canonical(_value(data, unit)).encode()).hexdigest()[:12]
            for unit in DEFINING_UNITS}


def _identity(digests: dict[str, str]) -> str:
    return hashlib.sha256(_canonical(digests).encode()).hexdigest()[:16]


def plan_identity(plan: MigrationPlan) -> str:
    """The run's identity: a 16-hex digest of the plan's defining fields (``Checkpoint.plan_hash``)."""
    return _identity(plan_digests(plan))


def plan_tuning(plan: MigrationPlan) -> dict[str, Any]:
    """The tuning fields' values (JSON), keyed by dotted path."""
    data = plan.model_dump(mode="json")
    return {unit: _value(data, unit) for unit in TUNING_UNITS}


def identity_record(plan: MigrationPlan) -> dict[str, Any]:
    """The checkpoint fields that identify the run of ``plan`` (for a new checkpoint)."""
    digests = plan_digests(plan)
    return {"plan_hash": _identity(digests), "plan_digests": digests, "plan_tuning": plan_tuning(plan)}


def _legacy(cp: Checkpoint) -> bool:
    return cp.schema_version < SCHEMA_VERSION or not cp.plan_digests


def same_run(cp: Checkpoint, plan: MigrationPlan) -> bool:
    """``plan`` may drive the run of ``cp`` (possibly with other tuning)."""
    changes = plan_changes(cp, plan)
    return not (changes.legacy or changes.defining)


# --------------------------------------------------------------------------------------------
# Comparing and adopting
# --------------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    text = "unset" if value is None else value if isinstance(value, str) else _canonical(value)
    return text if len(text) <= VALUE_LIMIT else text[:VALUE_LIMIT - 1] + "…"


class PlanChanges(typing.NamedTuple):
    """How a plan differs from the run's: defining fields (path, old digest, new digest) and
    tuning fields (path, old value, new value)."""

    defining: list[tuple[str, str, str]]
    tuning: list[tuple[str, Any, Any]]
    legacy: bool = False

    def lines(self) -> list[str]:
        """One line per difference, for `migrator status`."""
        if self.legacy:
            return ["the run was started by an older migrator that recorded only a hash of the whole plan: "
                    "only the original plan, unchanged, is accepted"]
        out = [f"{path}: differs (digest {old} → {new}); defines the run: `resume` refuses this plan"
               for path, old, new in self.defining]
        out += [f"{path}: {_show(old)} → {_show(new)}; tuning: adopted on `resume --plan`"
                for path, old, new in self.tuning]
        return out


def plan_changes(cp: Checkpoint, plan: MigrationPlan) -> PlanChanges:
    """How ``plan`` differs from the plan recorded in ``cp`` (nothing is written)."""
    if _legacy(cp):
        return PlanChanges([], [], legacy=cp.plan_hash != plan_hash(plan))
    digests = plan_digests(plan)
    # a defining field the run's version did not know (absent from its map) cannot be compared:
    # it is recorded on adoption; a field this version no longer has is ignored
    defining = [(unit, cp.plan_digests[unit], digests[unit]) for unit in DEFINING_UNITS
                if unit in cp.plan_digests and cp.plan_digests[unit] != digests[unit]]
    tuning = plan_tuning(plan)
    changed = [(unit, cp.plan_tuning.get(unit), tuning[unit]) for unit in TUNING_UNITS
               if cp.plan_tuning.get(unit) != tuning[unit]]
    return PlanChanges(defining, changed)


def _refusal(cp: Checkpoint, plan: MigrationPlan, changes: PlanChanges) -> str:
    anew = "or finish or abort this run and start a new one (delete the state ConfigMap after finalize/abort)"
    if changes.legacy:
        return (f"run {cp.run_id} of plan {cp.plan_name!r} was started by an older migrator that recorded only a "
                f"hash of the whole plan ({cp.plan_hash}; this plan's is {plan_hash(plan)}): resume once with the "
                f"original plan file, unchanged — the record is then upgraded and tuning may change afterwards — "
                f"{anew}")
    fields = "; ".join(f"{path} (digest {old} → {new})" for path, old, new in changes.defining)
    return (f"this plan differs from the one that started run {cp.run_id} (plan {cp.plan_name!r}) in "
            f"field(s) that define the run: {fields}. Resume with the plan that started the run — only tuning "
            f"(timeouts, concurrency, drain policy and pdb_override, gates, probe checks, rollback, placement, "
            f"recycle, verify, finalize, canary) may change — {anew}")


def adopt_plan(cp: Checkpoint, plan: MigrationPlan, by: str, now: datetime) -> Checkpoint:
    """``cp`` driven by ``plan`` from now on: tuning changes are audited (``field: old → new (by
    WHO at TIME)``) and stored, a legacy record is upgraded; ``cp`` itself when nothing changed.

    Raises ``PlanMismatch`` naming the defining fields that differ and what to do."""
    changes = plan_changes(cp, plan)
    if changes.legacy or changes.defining:
        raise PlanMismatch(_refusal(cp, plan, changes))
    when = utc(now).isoformat(timespec="seconds")
    record = identity_record(plan)
    notes: list[str] = []
    if _legacy(cp):
        notes.append(f"checkpoint upgraded to schema {SCHEMA_VERSION}: plan identity {record['plan_hash']} "
                     f"recorded (by {by} at {when})")
    else:
        added = sorted(set(record["plan_digests"]) - set(cp.plan_digests))
        if added:
            notes.append(f"defining field(s) recorded: {', '.join(added)} (by {by} at {when})")
        listed = changes.tuning if len(changes.tuning) <= CHANGES_LISTED else changes.tuning[:CHANGES_LISTED - 1]
        notes += [f"{path}: {_show(old)} → {_show(new)} (by {by} at {when})" for path, old, new in listed]
        rest = changes.tuning[len(listed):]
        if rest:
            notes.append(f"and {len(rest)} more tuning field(s): {', '.join(p for p, _, _ in rest)} "
                         f"(by {by} at {when})")
    update = {key: value for key, value in record.items() if getattr(cp, key) != value}
    if not update and cp.schema_version == SCHEMA_VERSION:
        return cp
    audit = (*cp.audit, *(truncate_error(n) for n in notes))[-AUDIT_LIMIT:]
    return cp.model_copy(update={**update, "schema_version": SCHEMA_VERSION, "audit": audit})
