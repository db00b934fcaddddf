"""``from_cluster``: a rollback checkpoint rebuilt from the cluster's own state.

When the checkpoint ConfigMap cannot be read (edited by hand, truncated, written by a newer
version), the journal of what was done is lost, but the cluster still shows most of it:

- the migration label ``io.cilium.migration/cilium-default=true`` on a node (the
  CiliumNodeConfig selects it, so its agent runs Cilium's per-node config);
- pods on a node holding addresses in Cilium's pod CIDR (the node's CNI is Cilium's even when
  the label is already gone: a rollback that died half way);
- the placement taint ``migrator.io/awaiting-migration`` the run steers pods with;
- the CiliumNodeConfig and the probe fleet (removed by the rollback's last steps).

Every node showing the first two is recorded as switched (``DONE``), so ``rollback --all``
runs its full rollback (cordon, unlabel, restart the agent, restore Calico's CNI file, recycle
the pods, probe, restore). Tainted nodes go into ``steered``, so their taints are removed. Other
nodes are recorded ``PENDING`` and left alone.

The cluster does not record which cordons are the migrator's (a cordon is only
``spec.unschedulable``), so the prior state of each node is taken as observed now: a node
cordoned now stays cordoned after its rollback, and one the rollback cordons is uncordoned
again. ``cordoned_nodes`` names the nodes cordoned now, for on-call to check by hand — the
rule "never uncordon a node we did not cordon" holds because nothing here uncordons them.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime

from migrator.engine.ordering import order_nodes
from migrator.model.checkpoint import (
    Checkpoint,
    NodeRecord,
    PriorNodeState,
    RollbackRequest,
    in_run_order,
    truncate_error,
    utc,
)
from migrator.model.identity import identity_record
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MIGRATION_LABEL, STEER_TAINT, MigrationPlan
from migrator.model.states import NodePhase, RunPhase

AUDIT_KEPT = 20


def switched_nodes(plan: MigrationPlan, obs: ClusterObservation) -> list[str]:
    """Nodes whose state shows Cilium: the migration label, or a pod on a Cilium address."""
    cilium = ipaddress.ip_network(plan.cilium.pod_cidr)
    on_cilium = {p.node for p in obs.pods
                 if p.node is not None and not p.host_network and not p.terminal and p.ip_in(cilium)}
    return [n.name for n in obs.nodes if n.labels.get(MIGRATION_LABEL) == "true" or n.name in on_cilium]


def cordoned_nodes(obs: ClusterObservation) -> list[str]:
    """Nodes cordoned now: the rollback leaves their cordon alone (it may not be ours)."""
    return [n.name for n in obs.nodes if n.unschedulable]


def from_cluster(plan: MigrationPlan, obs: ClusterObservation, run_id: str, now: datetime, by: str,
                 reason: str, saved_as: str) -> Checkpoint:
    """A checkpoint recording an on-call ``rollback --all`` of what ``obs`` shows was migrated.

    ``obs`` must include every node's pods. ``saved_as`` names where the unreadable checkpoint
    was kept (recorded in the audit)."""
    when = utc(now)
    switched = switched_nodes(plan, obs)
    order = list(order_nodes(plan, obs.nodes))
    order += [name for name in switched if name not in order]   # migrated though outside the selection
    facts = obs.node_by_name
    records = []
    for name in order:
        node = facts[name]
        if name in switched:
            records.append(NodeRecord(
                name=name, phase=NodePhase.DONE, attempt=1, phase_started_at=when,
                prior=PriorNodeState(unschedulable=node.unschedulable, label=None),
                audit=(f"{when.isoformat(timespec='seconds')} recorded DONE from the cluster's state "
                       f"({'migration label' if node.labels.get(MIGRATION_LABEL) == 'true' else 'pods on Cilium'})",)))
        else:
            records.append(NodeRecord(name=name))
    steered = tuple(n.name for n in obs.nodes if any(t.key == STEER_TAINT for t in n.taints))
    audit = truncate_error(f"{when.isoformat(timespec='seconds')} checkpoint rebuilt from the cluster's state by "
                           f"{by} (`rollback --all --from-cluster`): the unreadable one was kept as {saved_as}")
    request = RollbackRequest(all=True, requested_at=when, by=by, reason=reason)
    return Checkpoint(plan_name=plan.name, **identity_record(plan), run_id=run_id, run_phase=RunPhase.MIGRATING,
                      run_phase_started_at=when, started_at=when, updated_at=when,
                      node_config_version=obs.node_config.api_version if obs.node_config else None,
                      nodes=tuple(records), steered=in_run_order(tuple(r.name for r in records), steered), rollback=request, audit=(audit,)[-AUDIT_KEPT:])
