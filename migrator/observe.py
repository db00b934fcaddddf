"""Build the engine's ``ClusterObservation`` through the cluster port.

Reads of nodes, pods, PDBs, the CiliumNodeConfig and the agent DaemonSet come from the port's
watch-driven cache once watching started, so observing costs no API request. Only the pods of
the nodes the engine has in flight are included (``pod_scope``) and those of the pending nodes
it may start in the coming decision (``starting_soon``), which keeps an observation small at
5,000 nodes, plus, for budgets allowing no disruption, the pods of their namespaces that are
not Ready (on any node, or none yet), so the engine sees the replacements they wait for.
Objects only finalize needs (the plan's Cilium ConfigMap, the Calico objects to remove) are
read directly, and only while finalizing; finalize also observes every node and the pods of
every node (``pod_nodes=None``), which is what lets it refuse while any node of the cluster, in
the run or not, or any pod is left on Calico (``engine.finalize``). The same whole-cluster look
serves ``rollback --all --from-cluster`` (``engine.recover``). Preflight findings
(``preflight=True``, asked while the run is in PREFLIGHT) are gathered and evaluated once per
process: the phase lasts several loop turns, and a fresh process (``migrator resume``) reads
fresh facts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

from migrator.cluster.port import ChangeCursor, ClusterPort
from migrator.engine.node_config import node_config_version
from migrator.engine.policy_probe import NAME as POLICY_PROBE
from migrator.engine.policy_probe import NAME_LABEL as POLICY_NAME_LABEL
from migrator.engine.probes import SERVICE
from migrator.model.findings import Finding
from migrator.model.observation import ClusterObservation, Delta, GapFacts, NodeFacts, ObjectFacts, PodFacts
from migrator.model.plan import MigrationPlan
from migrator.policy_live import PolicyObserver
from migrator.preflight import run_preflight

CNC_CRD = "ciliumnodeconfigs.cilium.io"
F = TypeVar("F", NodeFacts, PodFacts)


class Observer:
    """Takes observations for one plan."""

    def __init__(self, plan: MigrationPlan, port: ClusterPort, *, output_dir: Path | None = None) -> None:
        self.plan = plan
        self.port = port
        self.output_dir = output_dir or Path.cwd()
        self.served: tuple[str, ...] = tuple(port.served_versions(CNC_CRD))
        self._service_ips: dict[tuple[str, str], str] = {}  # ClusterIPs never change: read once
        self._findings: tuple[Finding, ...] | None = None
        self._probes: _Kept[PodFacts] = _Kept()   # the probe fleet and the nodes, from the cache's changes
        self._nodes: _Kept[NodeFacts] = _Kept()
        self._last: ClusterObservation | None = None
        self._policy = PolicyObserver(port) if plan.policy.mode == "continuous" else None

    @property
    def findings(self) -> tuple[Finding, ...] | None:
        """Preflight findings, once an observation asked for them (None before)."""
        return self._findings

    def preflight(self) -> tuple[Finding, ...]:
        """Gather and evaluate preflight, the first time only."""
        if self._findings is None:
            self._findings = tuple(run_preflight(self.plan, self.port))
        return self._findings

    def _cluster_ip(self, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        if key not in self._service_ips:
            ip = self.port.get_service_cluster_ip(namespace, name)
            if ip is None:
                return None
            self._service_ips[key] = ip
        return self._service_ips[key]

    def policy_objects(self) -> tuple[dict[str, Any], ...]:
        """The Cilium objects a continuous run applies (translation and shims), for the policy
        probe's gap report; none with ``policy.mode: off``."""
        return self._policy.wanted() if self._policy is not None else ()

    def policy_gaps(self, waves: tuple[tuple[str, ...], ...]) -> dict[str, GapFacts]:
        """The forecast's gap per node: each wave's window with the waves before it migrated."""
        return self._policy.wave_gaps(waves) if self._policy is not None else {}

    @property
    def cnc_version(self) -> str | None:
        return node_config_version(self.plan, self.served)

    def observe(self, pod_nodes: frozenset[str] | None, *, finalizing: bool = False,
                preflight: bool = False, policy_objects: bool = True, handover: bool = False) -> ClusterObservation:
        plan, port = self.plan, self.port
        cnc = plan.cilium.node_config
        version = self.cnc_version
        if pod_nodes is None:
            pods = tuple(port.list_pods())
        else:
            pods = tuple(p for node in sorted(pod_nodes) for p in port.list_pods(node=node))
        blocking: tuple[PodFacts, ...] = ()
        gate = plan.gates.blocking_pods
        if gate is not None:
            blocking = tuple(p for p in port.list_pods(namespace=gate.namespace, labels=dict(gate.selector.match_labels))
                             if gate.selector.matches(p.labels))
        ds = port.get_daemonset(plan.cilium.agent.namespace, plan.cilium.agent.daemonset)
        pdbs = tuple(port.list_pdbs())
        budget_pods: tuple[PodFacts, ...] = ()
        if pod_nodes is not None:
            held = sorted({p.namespace for p in pdbs if p.disruptions_allowed < 1})
            budget_pods = tuple(p for ns in held for p in port.list_pods(namespace=ns, unready=True))
        nodes, node_delta = self._nodes.follow(port.node_changes, port.list_nodes)
        obs = ClusterObservation(
            pods=pods, pod_nodes=pod_nodes, blocking_pods=blocking,
            pdbs=pdbs, budget_pods=budget_pods,
            node_config=port.get_node_config(cnc.namespace, cnc.name, version=version.split("/", 1)[1])
            if version else None,
            served_cnc_versions=self.served,
            cilium_daemonset=ds.as_facts() if ds else None,
            findings=self.preflight() if preflight else None)
        obs = obs.model_copy(update={"nodes": nodes})   # the very tuple (validation would copy it)
        deltas = [node_delta]
        if plan.probes.enabled:
            namespace = plan.probes.namespace
            probes, probe_delta = self._probes.follow(lambda cursor: port.pod_changes(namespace, cursor),
                                                      lambda: port.list_pods(namespace=namespace))
            obs = obs.model_copy(update={
                "probe_pods": probes, "apiserver_ip": self._cluster_ip("default", "kubernetes"),
                "probe_service_ip": self._cluster_ip(plan.probes.namespace, SERVICE) if probes else None})
            deltas.append(probe_delta)
        if self._policy is not None:
            obs = obs.model_copy(update={"policy": self._policy.facts(
                obs.nodes, pod_nodes, finalizing=finalizing, listing=policy_objects or finalizing)})
        policy = plan.probes.policy if plan.probes.enabled else None
        if policy is not None:
            obs = obs.model_copy(update={"policy_probe_pods": tuple(
                p for ns in policy.namespaces
                for p in port.list_pods(namespace=ns, labels={POLICY_NAME_LABEL: POLICY_PROBE}))})
        if handover:
            obs = obs.model_copy(update={"handover": port.read_handover_state()})
        if self._last is not None:
            obs.follow(self._last, {id(d.before): d for d in deltas if d is not None})
        self._last = obs
        if not finalizing:
            return obs
        cm = port.read_configmap(plan.cilium.agent.namespace, plan.cilium.agent.config_map)
        calico: list[ObjectFacts] = []
        for item in plan.finalize.remove_calico:
            for ref in port.list_objects(item.group, item.version, item.plural, namespace=item.namespace):
                if item.name is None or ref.name == item.name:
                    calico.append(ref.as_facts())
        files = frozenset(p for p in (plan.finalize.helm_values_path,) if (self.output_dir / p).exists())
        return obs.model_copy(update={"cilium_config": cm.data if cm else None,
                                      "calico_objects": tuple(calico), "files": files})


class _Kept(Generic[F]):
    """One kind's facts (nodes, or the pods of one namespace) kept from the cache's changes: the
    same tuple while nothing changed, so indexes over it carry over, and a ``Delta`` otherwise,
    from which indexes are updated rather than rebuilt. In name order (namespace/name)."""

    def __init__(self) -> None:
        self.facts: dict[tuple[str, str], F] = {}
        self.items: tuple[F, ...] = ()
        self.cursor: ChangeCursor | None = None

    def follow(self, changes_since: Callable[[ChangeCursor | None], tuple[dict[tuple[str, str], F | None] | None,
                                                                          ChangeCursor | None]],
               read_all: Callable[[], list[F]]) -> tuple[tuple[F, ...], Delta | None]:
        """The facts now, and how they changed since the last call (None: read whole)."""
        changes, self.cursor = changes_since(self.cursor)   # the cursor first: nothing slips between
        before = self.items
        if changes is None:
            self.facts = {_key(f): f for f in read_all()}
            self.items = tuple(self.facts.values())
            return self.items, None
        removed: list[F] = []
        added: list[F] = []
        arrived = False
        for key, facts in changes.items():
            old = self.facts.get(key)
            if old is facts:
                continue
            if old is not None:
                removed.append(old)
            if facts is None:
                self.facts.pop(key, None)
                continue
            arrived = arrived or old is None
            self.facts[key] = facts
            added.append(facts)
        if arrived:
            self.facts = dict(sorted(self.facts.items()))
        if removed or added:
            self.items = tuple(self.facts.values())
        return self.items, Delta(before, self.items, tuple(removed), tuple(added))


def _key(facts: Any) -> tuple[str, str]:
    return (getattr(facts, "namespace", "") or "", facts.name)
