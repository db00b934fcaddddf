"""The dry-run forecast: what a run of this plan would do to this cluster, without doing it.

``forecast(plan, observation)`` orders the nodes exactly as a run would, groups them into
waves under the concurrency limits (control-plane nodes in waves of their own, last), and for
each node lists the pods the drain would evict, the pods that would block it (bare pods,
emptyDir data, PDBs allowing no disruption now) and the pods the recycle step would recreate.
The duration bound is the sum over waves of the per-node step timeouts (and the connectivity
gate's deadline). Pure: it needs an
observation that includes every node's pods.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from migrator.engine.budget import DisruptionBudgets
from migrator.engine.decide import node_config_version
from migrator.engine.ordering import order_nodes
from migrator.engine.pods import drain_view
from migrator.engine.policy_steps import is_shim
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.routing import RoutingDetection

PLACEMENT_TEXT = {
    "in-place": "nodes stay schedulable; after the switch their pods are evicted and restart on Cilium nodes",
    "steer": "nodes are cordoned and drained; nodes not yet started carry a PreferNoSchedule taint",
    "drain": "nodes are cordoned and drained",
}


@dataclass(frozen=True)
class NodeForecast:
    """What would happen to one node."""

    name: str
    wave: int
    zone: str | None
    control_plane: bool
    evict: tuple[str, ...]
    blockers: tuple[str, ...]
    pdb_limited: tuple[str, ...]
    recycle: tuple[str, ...]


@dataclass(frozen=True)
class Forecast:
    """The whole dry-run forecast."""

    plan_name: str
    node_config_version: str | None
    waves: tuple[tuple[str, ...], ...]
    nodes: tuple[NodeForecast, ...]
    worst_case: timedelta
    warnings: tuple[str, ...]
    placement: str = "in-place"
    routing: RoutingDetection | None = None
    tunnel_port: int = 8473
    policy: tuple[str, ...] = ()
    handover: tuple[str, ...] = ()

    @property
    def blocked(self) -> bool:
        """Some node would block (and halt or be skipped, per the plan)."""
        return any(n.blockers for n in self.nodes)

    def render(self) -> str:
        """Human-readable text for ``migrator plan``."""
        lines = [f"plan {self.plan_name}: {len(self.nodes)} nodes in {len(self.waves)} waves, "
                 f"worst case {format_duration(self.worst_case)}",
                 f"CiliumNodeConfig apiVersion: {self.node_config_version or 'NOT SERVED'}",
                 f"pod placement: {self.placement}: {PLACEMENT_TEXT[self.placement]}"]
        if self.routing is not None:
            lines.append("routing: " + "; ".join(self.routing.lines()))
            if self.routing.routed:
                lines.append(f"  Cilium runs its migration overlay on port {self.tunnel_port}; Calico keeps routing "
                             "as detected until " + ("the hand-over (`migrator handover`, before finalize)"
                                                     if self.handover else
                                                     "finalize removes it (no routing hand-over in this run)"))
        lines += self.handover
        for index, wave in enumerate(self.waves, start=1):
            lines.append(f"wave {index}: {', '.join(wave)}")
        for node in self.nodes:
            role = " (control plane)" if node.control_plane else ""
            lines.append(f"  {node.name}{role} zone={node.zone or '-'}: evict {len(node.evict)}, "
                         f"recycle {len(node.recycle)}")
            lines.extend(f"    blocker: {b}" for b in node.blockers)
            lines.extend(f"    PDB allows no disruption now: {p}" for p in node.pdb_limited)
        lines.extend(self.policy)
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines) + "\n"


def _waves(plan: MigrationPlan, order: tuple[str, ...], obs: ClusterObservation) -> list[list[str]]:
    limit = plan.concurrency.limit(len(order))
    per_zone = plan.concurrency.per_zone
    facts = obs.node_by_name
    waves: list[list[str]] = []
    pending = list(order)
    workers_left = sum(1 for n in order if not facts[n].control_plane)
    while pending:
        wave: list[str] = []
        zones: Counter[str] = Counter()
        for name in pending:
            if len(wave) >= limit:
                break
            fact = facts[name]
            if fact.control_plane and (workers_left or any(not facts[w].control_plane for w in wave)):
                continue
            if fact.control_plane and wave and not all(facts[w].control_plane for w in wave):
                continue
            if per_zone is not None and zones[fact.zone or ""] >= per_zone:
                continue
            wave.append(name)
            zones[fact.zone or ""] += 1
        if not wave:
            wave = [pending[0]]
        for name in wave:
            pending.remove(name)
            if not facts[name].control_plane:
                workers_left -= 1
        waves.append(wave)
    return waves


def forecast(plan: MigrationPlan, obs: ClusterObservation, routing: RoutingDetection | None = None) -> Forecast:
    """Forecast a run of ``plan`` on the observed cluster (``routing``: the detected routing, shown)."""
    order = order_nodes(plan, obs.nodes)
    waves = _waves(plan, order, obs)
    wave_of = {name: i for i, wave in enumerate(waves, start=1) for name in wave}
    network = plan.cilium.network
    budgets = DisruptionBudgets(obs)
    results: list[NodeForecast] = []
    for name in order:
        fact = obs.node_by_name[name]
        pods = obs.pods_on(name)
        view = drain_view(pods, plan)
        limited = sorted({f"{pdb.namespace}/{pdb.name} ({pod.key})"
                          for pod in view.to_evict for pdb in budgets.guarding(pod)
                          if pdb.disruptions_allowed <= 0})
        recycle = [p.key for p in pods if p.daemonset and not p.host_network and not p.terminal
                   and not p.ip_in(network)]
        results.append(NodeForecast(
            name=name, wave=wave_of[name], zone=fact.zone, control_plane=fact.control_plane,
            evict=tuple(p.key for p in view.to_evict),
            blockers=tuple(f"{p.key}: {why}" for p, why in view.blocked),
            pdb_limited=tuple(limited), recycle=tuple(recycle)))
    per_node = (plan.drain.timeout + plan.cilium.agent.restart_timeout + plan.verify.timeout
                + (plan.recycle.timeout if plan.recycle.enabled else timedelta(0))
                + (plan.probes.checks.deadline if plan.probes.enabled else timedelta(0)))
    warnings: list[str] = []
    version = node_config_version(plan, obs.served_cnc_versions)
    if version is None:
        warnings.append("no served CiliumNodeConfig version: the run would halt at prepare")
    if obs.pod_nodes is not None:
        warnings.append("the observation did not include every node's pods; pod lists are partial")
    if any(f.control_plane for f in obs.node_by_name.values() if f.name in wave_of) and \
            all(obs.node_by_name[n].control_plane for n in order):
        warnings.append("only control-plane nodes are selected")
    return Forecast(plan_name=plan.name, node_config_version=version,
                    waves=tuple(tuple(w) for w in waves), nodes=tuple(results),
                    worst_case=per_node * len(waves), warnings=tuple(warnings),
                    placement=plan.placement.strategy, routing=routing, tunnel_port=plan.cilium.tunnel_port,
                    policy=tuple(_policy_lines(plan, obs, waves)))


def _policy_lines(plan: MigrationPlan, obs: ClusterObservation, waves: list[list[str]]) -> list[str]:
    """What the run does about network policy: the classes, what prepare applies, each wave's gap."""
    findings = {f.check: f for f in obs.findings or ()}
    if plan.policy.mode == "off":
        off = findings.get("policy.mode-off")
        return [f"policy: off: {off.message}" if off else "policy: off (the guide's behaviour: no enforcement on "
                "migrated nodes until finalize)"]
    lines = ["policy: continuous"]
    classes = findings.get("policy.translation")
    if classes is not None:
        lines.append(f"  {classes.message}")
    if obs.policy is None:
        return lines
    kinds = Counter(str(m["kind"]) for m in obs.policy.wanted if not is_shim(m))
    shims = len(obs.policy.wanted) - sum(kinds.values())
    lines.append(f"  applied before the first switch: {kinds['CiliumNetworkPolicy']} CiliumNetworkPolicy, "
                 f"{kinds['CiliumClusterwideNetworkPolicy']} CiliumClusterwideNetworkPolicy, "
                 f"{kinds['CiliumCIDRGroup']} CiliumCIDRGroup, {shims} shim(s) allowing unmanaged (removed at "
                 "finalize)")
    for index, wave in enumerate(waves, start=1):
        gap = obs.policy.gaps.get(wave[0])
        if gap is None:
            continue
        lines.append(f"  gap during wave {index}: {gap.flows} flow(s) enforced differently from before the run"
                     + (f", e.g. {gap.lines[0]}" if gap.lines else ""))
    return lines
