"""Pod placement while the run goes on: steer evicted pods onto nodes already on Cilium.

With ``placement.strategy: steer`` every node of the run that has not started carries the
``PreferNoSchedule`` taint ``STEER_TAINT``. Pods evicted from the node being migrated then
prefer nodes that were migrated already (never at the cost of scheduling: the taint is soft,
and PodDisruptionBudgets still gate every eviction), so most are restarted once instead of
again when their new node's turn comes. With ``in-place`` the node being migrated is not cordoned
and keeps its taint until its new agent is Ready, so the pods recycled off a switched node land
on nodes already on Cilium, mostly on the node itself (it just emptied).

``reconcile`` makes the taints match what is wanted and is the only place that adds or removes
them. A node joins ``Checkpoint.steered`` *before* its taint is sent (intent first) and leaves
it only once the taint is observed gone, so after a crash ``resume`` still knows every taint to
remove. Nothing is wanted once the run is finishing, pausing, aborting or rolling back: the run
does not report NODES_DONE, PAUSED or ABORTED (nor a rollback as finished) until
``steered`` is empty.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from migrator.engine.actions import Action, SetTaint
from migrator.engine.pending import Pending
from migrator.model.checkpoint import Checkpoint, in_run_order
from migrator.model.observation import ClusterObservation, Delta, NodeFacts
from migrator.model.plan import STEER_TAINT, MigrationPlan
from migrator.model.states import NodePhase

EFFECT: Literal["PreferNoSchedule"] = "PreferNoSchedule"


#: In place, a started node keeps the taint until its new agent is Ready (its new pods get Cilium IPs).
NOT_ON_CILIUM = (NodePhase.PENDING, NodePhase.LABELED)


def wanted(plan: MigrationPlan, cp: Checkpoint, *, winding_down: bool) -> frozenset[str]:
    """Nodes that should carry the taint now: the run's nodes not yet started (steer) or not yet
    switched (in-place)."""
    strategy = plan.placement.strategy
    if strategy == "drain" or winding_down:
        return frozenset()
    if strategy == "in-place":
        started = frozenset(n for n in cp.census.in_flight if cp.by_name[n].phase in NOT_ON_CILIUM)
        return cp.census.not_started | started
    return cp.census.not_started


def _tainted(obs: ClusterObservation) -> frozenset[str]:
    """The nodes that carry the taint, once per observation."""
    def build() -> frozenset[str]:
        return frozenset(n.name for n in obs.nodes if n.taints and _carries(n))
    def update(previous: frozenset[str], delta: Delta) -> frozenset[str]:
        return (previous - {n.name for n in delta.removed}) | {n.name for n in delta.added if _carries(n)}

    tainted: frozenset[str] = obs.indexed("steer-tainted", obs.nodes, build, update)
    return tainted


def _carries(node: NodeFacts) -> bool:
    return any(t.key == STEER_TAINT and t.effect == EFFECT for t in node.taints)


def reconcile(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation, now: datetime, *,
              winding_down: bool) -> tuple[Checkpoint, list[Action]]:
    """Add the taint where wanted, remove it elsewhere; the checkpoint records intent first.
    Set arithmetic over names: the nodes looked at one by one are those whose taint is not as
    wanted, not every node of the run."""
    want = wanted(plan, cp, winding_down=winding_down)
    due = Pending(cp.steer_sent_at).due(now)
    present = obs.node_by_name.keys()
    tainted = _tainted(obs)
    steered = frozenset(cp.steered)
    actions: list[Action] = []
    adding = sorted(n for n in (want & present) - tainted if n not in steered or due)
    for name in adding:
        actions.append(SetTaint(node=name, key=STEER_TAINT, effect=EFFECT, present=True))
    dropped: set[str] = set()
    for name in cp.in_run_order(steered - want) + sorted(n for n in steered - want if cp.node(n) is None):
        if name not in present or (name not in tainted and cp.steer_sent_at is not None):
            dropped.add(name)          # gone, or observed untainted after we asked
        elif name in tainted or due:
            actions.append(SetTaint(node=name, key=STEER_TAINT, effect=EFFECT, present=False))
    changes: dict[str, object] = {}
    if adding or dropped:
        changes["steered"] = in_run_order(cp.order, [n for n in cp.steered if n not in dropped] + adding)
    if actions:
        changes["steer_sent_at"] = now
    return (cp.model_copy(update=changes) if changes else cp), actions
