"""Which nodes a plan migrates, in which order, and which may start now.

The order is decided once, when the run starts, and frozen in the checkpoint: it must not
change when a node is cordoned or relabelled. Rules, always enforced:
- the plan's strategy (explicit, canaries-first, zones-round-robin, name) orders workers;
- control-plane nodes go last and are never first (a plan listing only control-plane nodes is
  the one exception: there is nothing else to go first);
- at runtime, nodes already in flight continue first, then pending nodes start in order while
  ``max_unavailable`` (and ``per_zone``) allow, and control-plane nodes start only when every
  worker is finished.
Everything here is linear in the number of nodes.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from migrator.model.checkpoint import Checkpoint
from migrator.model.observation import NodeFacts
from migrator.model.plan import MigrationPlan
from migrator.model.states import NodePhase, RunPhase


def natural_key(name: str) -> tuple[object, ...]:
    """Sort key that puts node-2 before node-10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def select_nodes(plan: MigrationPlan, nodes: Iterable[NodeFacts]) -> list[NodeFacts]:
    """The observed nodes the plan selects (names, selector or all; minus ``exclude``)."""
    excluded = set(plan.nodes.exclude)
    chosen = [n for n in nodes if n.name not in excluded]
    if plan.nodes.names is not None:
        wanted = set(plan.nodes.names)
        chosen = [n for n in chosen if n.name in wanted]
    elif plan.nodes.selector is not None:
        chosen = [n for n in chosen if plan.nodes.selector.matches(n.labels)]
    return chosen


def unknown_nodes(plan: MigrationPlan, nodes: Iterable[NodeFacts]) -> list[str]:
    """Nodes the plan names (names, canaries) that the cluster does not have."""
    present = {n.name for n in nodes}
    named = list(plan.nodes.names or ()) + list(plan.order.canaries)
    return sorted({name for name in named if name not in present})


NAMES_SHOWN = 5


def selection_problem(plan: MigrationPlan, nodes: Sequence[NodeFacts]) -> str | None:
    """Why the plan's selection cannot start a run on this cluster (None when it can).

    A names list naming a node the cluster does not have (a typo, a node already gone), a
    canary that does not exist, or a selection that matches no node at all: each is bad input,
    found before anything is written, so a run never starts on a selection other than the one
    the operator meant (and finalize never removes Calico from nodes nobody looked at)."""
    missing = unknown_nodes(plan, nodes)
    if missing:
        shown = ", ".join(missing[:NAMES_SHOWN]) + (f" (+{len(missing) - NAMES_SHOWN} more)"
                                                     if len(missing) > NAMES_SHOWN else "")
        where = "nodes.names or order.canaries" if plan.order.canaries else "nodes.names"
        return (f"{where} names node(s) the cluster does not have: {shown}; fix the names "
                "(kubectl get nodes lists them) or remove them from the plan")
    if select_nodes(plan, nodes):
        return None
    if plan.nodes.selector is not None:
        what = f"nodes.selector {plan.nodes.selector.render() or '(empty)'} matches no node"
    elif plan.nodes.names is not None:
        what = "every node in nodes.names is listed in nodes.exclude"
    else:
        what = "the cluster has no node" + (" outside nodes.exclude" if plan.nodes.exclude else "")
    return f"{what}; fix the plan's node selection (kubectl get nodes --show-labels lists the nodes)"


def _round_robin(nodes: Sequence[NodeFacts]) -> list[NodeFacts]:
    zones: dict[str, list[NodeFacts]] = {}
    for node in sorted(nodes, key=lambda n: natural_key(n.name)):
        zones.setdefault(node.zone or "", []).append(node)
    queues = [zones[z] for z in sorted(zones)]
    result: list[NodeFacts] = []
    depth = max((len(q) for q in queues), default=0)
    for index in range(depth):
        result.extend(q[index] for q in queues if index < len(q))
    return result


def _arrange(plan: MigrationPlan, nodes: Sequence[NodeFacts]) -> list[NodeFacts]:
    strategy = plan.order.strategy
    if strategy == "explicit":
        position = {name: i for i, name in enumerate(plan.nodes.names or ())}
        return sorted(nodes, key=lambda n: (position.get(n.name, len(position)), natural_key(n.name)))
    if strategy == "zones-round-robin":
        return _round_robin(nodes)
    if strategy == "canaries-first":
        position = {name: i for i, name in enumerate(plan.order.canaries)}
        canaries = sorted((n for n in nodes if n.name in position), key=lambda n: position[n.name])
        rest = sorted((n for n in nodes if n.name not in position), key=lambda n: natural_key(n.name))
        return canaries + rest
    return sorted(nodes, key=lambda n: natural_key(n.name))


def order_nodes(plan: MigrationPlan, nodes: Iterable[NodeFacts]) -> tuple[str, ...]:
    """Selected node names in migration order, control-plane nodes last."""
    selected = select_nodes(plan, nodes)
    workers = _arrange(plan, [n for n in selected if not n.control_plane])
    control_plane = _arrange(plan, [n for n in selected if n.control_plane])
    return tuple(n.name for n in workers + control_plane)


def pod_scope(checkpoint: Checkpoint) -> frozenset[str]:
    """Nodes whose pods the next observation must include (the nodes in flight)."""
    return checkpoint.census.in_flight


#: The phases from which a node can finish within one decision (its gate's results are in).
FINISHING = frozenset({NodePhase.PODS_RECYCLED, NodePhase.PROBED, NodePhase.UNCORDONED})


#: The run phases whose next decision may start nodes (PREPARED moves on to MIGRATING in it).
STARTING = frozenset({RunPhase.PREPARED, RunPhase.MIGRATING, RunPhase.PAUSED})


def starting_soon(plan: MigrationPlan, checkpoint: Checkpoint) -> frozenset[str]:
    """Pending nodes the next decision may start: the next in run order, as many as the places
    ``max_unavailable`` leaves free plus the nodes in flight that could finish in it. Their pods
    in the observation let a node started there take its first step in the same decision,
    instead of waiting a turn to see its pods (the first nodes of a run too)."""
    census = checkpoint.census
    if checkpoint.run_phase not in STARTING or not census.not_started:
        return frozenset()
    free = max(0, plan.concurrency.limit(len(checkpoint.nodes)) - len(census.in_flight))
    soon = free + sum(census.counts[phase] for phase in FINISHING)
    if not soon:
        return frozenset()
    position = checkpoint.position
    return frozenset(heapq.nsmallest(soon, census.not_started, key=position.__getitem__))


def startable(plan: MigrationPlan, checkpoint: Checkpoint, nodes: dict[str, NodeFacts]) -> list[str]:
    """Pending nodes that may start now, in order, within the concurrency limits.

    A pending node that is absent or not Ready is passed over (it keeps its place and starts
    when it is Ready again); a control-plane node waits until every worker has finished.
    """
    census = checkpoint.census
    records = checkpoint.nodes
    limit = plan.concurrency.limit(len(records))
    busy = len(census.in_flight)
    if busy >= limit or not census.not_started:
        return []
    per_zone = plan.concurrency.per_zone
    zone_busy: Counter[str] = Counter()
    for name in census.in_flight:
        fact = nodes.get(name)
        zone_busy[(fact.zone if fact else None) or ""] += 1
    chosen: list[str] = []
    for record in records:
        if busy >= limit:
            break
        if record.name not in census.not_started:
            continue
        fact = nodes.get(record.name)
        if fact is None or not fact.ready:
            continue
        if fact.control_plane and (busy or _workers_open(checkpoint, nodes)):
            continue
        zone = fact.zone or ""
        if per_zone is not None and zone_busy[zone] >= per_zone:
            continue
        chosen.append(record.name)
        busy += 1
        zone_busy[zone] += 1
    return chosen


def _workers_open(checkpoint: Checkpoint, nodes: dict[str, NodeFacts]) -> bool:
    """Some worker node of the run (present in the cluster) has not finished."""
    return any(not record.phase.terminal and (fact := nodes.get(record.name)) is not None and not fact.control_plane
               for record in checkpoint.nodes)
