"""The facts the engine decides on: ``ClusterObservation`` and its parts.

The shell builds an observation from its watch-driven cache (through the cluster port) and
hands it to ``engine.decide``; raw Kubernetes objects never get this far. Every record is a
frozen pydantic model so an observation is a value: two equal observations lead to the same
decision. Lookups the engine needs on every loop (pods of a node, the agent pod of a node,
PDBs covering a pod) are indexed lazily and cached on the instance, so building the
observation stays cheap and deciding stays linear in the number of nodes.

Large observations (thousands of nodes) may be built with ``Model.model_construct`` by a caller
that already holds typed values; the indexes do not depend on validation having run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from migrator.model.findings import Finding
from migrator.model.handover import HandoverState
from migrator.model.selector import LabelSelector

ZONE_LABEL = "topology.kubernetes.io/zone"
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
NODE_ACTION_ANNOTATION = "sim.migrator.io/node-action"


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Taint(_Fact):
    """One node taint."""

    key: str = Field(description="Taint key.")
    value: str = Field(default="", description="Taint value ('' when absent).")
    effect: str = Field(description="NoSchedule, PreferNoSchedule or NoExecute.")


class NodeFacts(_Fact):
    """What the engine needs to know about one Node."""

    name: str = Field(description="Node name.")
    uid: str = Field(default="", description="metadata.uid (changes when a node is re-registered).")
    labels: dict[str, str] = Field(default_factory=dict, description="Node labels.")
    taints: tuple[Taint, ...] = Field(default=(), description="spec.taints.")
    unschedulable: bool = Field(default=False, description="spec.unschedulable (cordoned).")
    ready: bool = Field(default=True, description="The Ready condition is True.")
    zone: str | None = Field(default=None, description="topology.kubernetes.io/zone label, if any.")
    control_plane: bool = Field(
        default=False, description="Carries node-role.kubernetes.io/control-plane (or master).")
    internal_ip: str | None = Field(default=None, description="status.addresses InternalIP.")


class PodFacts(_Fact):
    """What the engine needs to know about one Pod."""

    namespace: str = Field(description="Pod namespace.")
    name: str = Field(description="Pod name.")
    uid: str = Field(description="metadata.uid, used as a precondition on evict/delete.")
    node: str | None = Field(default=None, description="spec.nodeName (None while pending).")
    phase: str = Field(default="Pending",
                       description="status.phase: Pending, Running, Succeeded, Failed, Unknown.")
    ready: bool = Field(default=False, description="The Ready condition is True.")
    host_network: bool = Field(default=False, description="spec.hostNetwork.")
    ip: str | None = Field(default=None, description="status.podIP, if assigned.")
    owner_kind: str | None = Field(
        default=None, description="Kind of the controller owner reference (None for a bare pod).")
    owner_name: str | None = Field(default=None, description="Name of the controller owner.")
    daemonset: bool = Field(default=False, description="Owned by a DaemonSet.")
    mirror: bool = Field(
        default=False, description="A static (mirror) pod: annotation kubernetes.io/config.mirror.")
    deleting: bool = Field(default=False, description="metadata.deletionTimestamp is set.")
    emptydir: bool = Field(default=False, description="Mounts at least one emptyDir volume.")
    labels: dict[str, str] = Field(default_factory=dict, description="Pod labels.")
    created_at: datetime | None = Field(default=None, description="metadata.creationTimestamp.")
    node_action: str | None = Field(
        default=None, description="Value of the sim.migrator.io/node-action annotation, if any.")

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def terminal(self) -> bool:
        """The pod has finished (Succeeded or Failed) and holds no IP that matters."""
        return self.phase in ("Succeeded", "Failed")

    @property
    def unmanaged(self) -> bool:
        """A bare pod with no controller: nothing recreates it once deleted."""
        return self.owner_kind is None and not self.mirror

    @property
    def unready(self) -> bool:
        """Pending or Running, not Ready and not being deleted: starting, or failing to."""
        return not self.ready and not self.deleting and self.phase in ("Pending", "Running")

    def ip_in(self, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
        """True when the pod has an IP and it lies inside ``cidr``."""
        return bool(self.ip) and _inside(self.ip or "", cidr)


class Delta:
    """How a source of indexes changed from one observation to the next: the items ``removed``
    and ``added`` (a changed item is both: its old facts removed, its new ones added)."""

    __slots__ = ("before", "after", "removed", "added")

    def __init__(self, before: Any, after: Any, removed: tuple[Any, ...], added: tuple[Any, ...]) -> None:
        self.before, self.after, self.removed, self.added = before, after, removed, added


#: How many observations back an index is looked for: one the engine did not ask for in the
#: last turns (no node at the step that reads it) is still derived by the changes since.
KEPT_OBSERVATIONS = 16


class Follows:
    """The indexes of the last observations, newest first, each with the deltas of the sources
    that changed from it to the next (``steps``: at most ``KEPT_OBSERVATIONS``)."""

    __slots__ = ("steps",)

    def __init__(self, memo: dict[str, tuple[Any, Any]], changes: dict[int, Delta],
                 older: Follows | None = None) -> None:
        kept = older.steps[:KEPT_OBSERVATIONS - 1] if older is not None else ()
        self.steps: tuple[tuple[dict[str, tuple[Any, Any]], dict[int, Delta]], ...] = ((memo, changes), *kept)

    def __eq__(self, other: object) -> bool:   # a cache, never state (see Checkpoint._derived)
        return other is None or isinstance(other, Follows)

    __hash__ = None  # type: ignore[assignment]


_UNDERIVED = object()


def _renamed(previous: dict[str, Any], delta: Delta) -> dict[str, Any]:
    """A by-name index after ``delta`` (an update for ``ClusterObservation.indexed``)."""
    index = dict(previous)
    for item in delta.removed:
        index.pop(item.name, None)
    for item in delta.added:
        index[item.name] = item
    return index


def _derive(follows: Follows | None, name: str, source: Any, update: Callable[[Any, Delta], Any] | None) -> Any:
    """The index ``name`` over ``source`` from the newest earlier observation that has it, brought
    forward by the deltas of its source since, joined into one (``update`` runs once), or
    ``_UNDERIVED``: no observation kept has it, or its source was read whole since (a new object
    no delta leads to)."""
    if follows is None:
        return _UNDERIVED
    depth = next((i for i, (memo, _) in enumerate(follows.steps) if name in memo), None)
    if depth is None:
        return _UNDERIVED
    held, value = follows.steps[depth][0][name]
    current, net = held, None
    for _, changes in reversed(follows.steps[:depth + 1]):   # oldest first
        delta = changes.get(id(current))
        if delta is None or delta.before is not current or delta.after is current:
            continue   # unchanged, or read whole (the identity check below then fails)
        net, current = (delta if net is None else _then(net, delta)), delta.after
    if current is not source:
        return _UNDERIVED
    if net is None:
        return value
    return _UNDERIVED if update is None else update(value, net)


def _then(first: Delta, second: Delta) -> Delta:
    """One delta for ``first`` then ``second`` (an update then costs what changed, once): an item
    added by the first and removed by the second was never there for the index."""
    added_first = {id(item) for item in first.added}
    removed_second = {id(item) for item in second.removed}
    return Delta(first.before, second.after,
                 first.removed + tuple(item for item in second.removed if id(item) not in added_first),
                 tuple(item for item in first.added if id(item) not in removed_second) + second.added)


@lru_cache(maxsize=1 << 16)
def _inside(ip: str, cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """``ip`` (a string; False when not an address) lies inside ``cidr``. Cached: the engine asks
    it of every probe pod on every turn, and parsing costs microseconds."""
    try:
        return ipaddress.ip_address(ip) in cidr
    except ValueError:
        return False


class PdbFacts(_Fact):
    """A PodDisruptionBudget and its current status."""

    namespace: str = Field(description="PDB namespace (it covers pods of this namespace only).")
    name: str = Field(description="PDB name.")
    selector: LabelSelector | None = Field(
        description="spec.selector; policy/v1: null selects no pod, empty selects every pod of the namespace.")
    unhealthy_pod_eviction_policy: Literal["IfHealthyBudget", "AlwaysAllow"] = Field(
        default="IfHealthyBudget", description="spec.unhealthyPodEvictionPolicy.")
    disruptions_allowed: int = Field(default=0, description="status.disruptionsAllowed.")
    current_healthy: int = Field(default=0, description="status.currentHealthy.")
    desired_healthy: int = Field(default=0, description="status.desiredHealthy.")
    expected_pods: int = Field(default=0, description="status.expectedPods.")
    room_changed_at: datetime | None = Field(
        default=None, description="lastTransitionTime of the DisruptionAllowed condition: when the budget last "
                                  "went from allowing a disruption to allowing none, or back.")

    def covers(self, pod: PodFacts) -> bool:
        """True when this PDB selects ``pod``."""
        return pod.namespace == self.namespace and self.selector is not None and self.selector.matches(pod.labels)

    def lets_unready_go(self) -> bool:
        """True when a Running pod that is not Ready is evicted without asking this budget's room:
        ``AlwaysAllow``, or (``IfHealthyBudget``) the application is not disrupted now."""
        return (self.unhealthy_pod_eviction_policy == "AlwaysAllow"
                or self.current_healthy >= self.desired_healthy > 0)


class NodeConfigFacts(_Fact):
    """The CiliumNodeConfig as served."""

    namespace: str = Field(description="Namespace (must be Cilium's, normally kube-system).")
    name: str = Field(description="Name, e.g. cilium-default.")
    api_version: str = Field(description="apiVersion it was read at, e.g. cilium.io/v2.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="spec.nodeSelector.matchLabels.")
    defaults: dict[str, str] = Field(default_factory=dict, description="spec.defaults.")


class DaemonSetFacts(_Fact):
    """A DaemonSet's rollout state (the cilium agent DaemonSet during finalize)."""

    namespace: str = Field(description="DaemonSet namespace.")
    name: str = Field(description="DaemonSet name.")
    generation: int = Field(default=0, description="metadata.generation.")
    observed_generation: int = Field(default=0, description="status.observedGeneration.")
    desired: int = Field(default=0, description="status.desiredNumberScheduled.")
    updated: int = Field(default=0, description="status.updatedNumberScheduled.")
    ready: int = Field(default=0, description="status.numberReady.")
    available: int = Field(default=0, description="status.numberAvailable.")
    restarted_at: str | None = Field(
        default=None, description="Template annotation kubectl.kubernetes.io/restartedAt.")

    @property
    def rolled_out(self) -> bool:
        """The controller saw the latest spec and every scheduled pod is updated and ready."""
        return (self.observed_generation >= self.generation
                and self.updated == self.desired == self.ready == self.available)


class ObjectFacts(_Fact):
    """Address of an API object that exists (Calico objects to remove during finalize)."""

    group: str = Field(description="API group ('' for core).")
    version: str = Field(description="API version within the group, e.g. v1.")
    plural: str = Field(description="Resource plural, e.g. daemonsets.")
    name: str = Field(description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace; None if cluster-scoped.")


class PolicyObjectFacts(_Fact):
    """A Cilium policy object the run applied (it carries the run's policy label)."""

    kind: str = Field(description="CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or CiliumCIDRGroup.")
    api_version: str = Field(description="apiVersion it was read at, e.g. cilium.io/v2.")
    name: str = Field(description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace; None if cluster-scoped.")
    shim: bool = Field(default=False, description="A migration shim (allows `unmanaged`), removed at finalize.")
    digest: str = Field(default="", description="Digest of its spec(s): a changed object is verified afresh.")

    @property
    def ref(self) -> tuple[str, str | None, str]:
        """(kind, namespace, name): what identifies it among the run's objects."""
        return (self.kind, self.namespace, self.name)


class GapFacts(_Fact):
    """The gap of a node's switch (``policy.transition``): the flows whose verdict, with one side
    judged by Cilium (Calico pods only ``unmanaged``) and the other by Calico, differs from Calico's
    before the run."""

    flows: int = Field(ge=0, description="How many (source group, destination group, port) flows.")
    lines: tuple[str, ...] = Field(default=(), description="The first few, for people.")


class PolicyFacts(_Fact):
    """What ``policy.mode: continuous`` decides on: the objects the run must apply (the translation
    and the shims, computed by the shell from the live inventory), those it applied that exist,
    the Calico policy objects, and — when finalizing — whether the live translation verifies."""

    wanted: tuple[dict[str, Any], ...] = Field(
        default=(), description="Manifests to apply before the first node switches (translation, then shims).")
    present: tuple[PolicyObjectFacts, ...] | None = Field(
        default=None, description="Objects carrying the run's policy label that exist now; None when not listed "
                                  "(while nodes migrate nothing is applied or removed).")
    calico: tuple[ObjectFacts, ...] = Field(
        default=(), description="Calico NetworkPolicies, GlobalNetworkPolicies, NetworkSets and GlobalNetworkSets.")
    differences: tuple[str, ...] | None = Field(
        default=None, description="When finalizing: `policy verify` over the live translation, one line per "
                                  "difference (capped); empty when it passes, None when not checked.")
    gaps: dict[str, GapFacts] = Field(
        default_factory=dict, description="Per node in flight: the gap of its switch.")
    error: str | None = Field(
        default=None, description="Why the live policy could not be translated (an object that cannot be read): "
                                  "nothing is wanted and no gap is known until it is fixed.")

    @property
    def wanted_refs(self) -> frozenset[tuple[str, str | None, str]]:
        """(kind, namespace, name) of every wanted manifest."""
        return frozenset((str(m["kind"]), (m.get("metadata") or {}).get("namespace"),
                          str((m.get("metadata") or {}).get("name"))) for m in self.wanted)

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Wanted manifests not present yet (all of them when not listed)."""
        have = {o.ref for o in self.present or ()}
        return [m for m in self.wanted if (m["kind"], (m.get("metadata") or {}).get("namespace"),
                                           (m.get("metadata") or {}).get("name")) not in have]


class ClusterObservation(_Fact):
    """One consistent-enough look at the cluster, taken just before ``decide``.

    ``pods`` holds every pod (all namespaces) bound to the nodes listed in ``pod_nodes``; when
    ``pod_nodes`` is None the pods of every node are included. The engine asks for the nodes
    it has in flight (``engine.ordering.pod_scope``) and those it may start next
    (``engine.ordering.starting_soon``).
    """

    nodes: tuple[NodeFacts, ...] = Field(default=(), description="Every node in the cluster.")
    pods: tuple[PodFacts, ...] = Field(default=(), description="Pods on the observed nodes.")
    pod_nodes: frozenset[str] | None = Field(
        default=None, description="Nodes whose pods are in `pods`; None means all nodes.")
    blocking_pods: tuple[PodFacts, ...] = Field(
        default=(), description="Pods matching the plan's gates.blocking_pods selector.")
    pdbs: tuple[PdbFacts, ...] = Field(default=(), description="Every PodDisruptionBudget.")
    budget_pods: tuple[PodFacts, ...] = Field(
        default=(), description="Pods not Ready (``PodFacts.unready``) in the namespaces of budgets allowing no "
                                "disruption, on any node or none yet: the replacements such a budget waits "
                                "for, wherever they land. Empty when `pods` holds every node's pods.")
    node_config: NodeConfigFacts | None = Field(
        default=None, description="The plan's CiliumNodeConfig, None when absent.")
    served_cnc_versions: tuple[str, ...] = Field(
        default=(), description="Served versions of ciliumnodeconfigs.cilium.io, e.g. ('v2', 'v2alpha1').")
    cilium_daemonset: DaemonSetFacts | None = Field(
        default=None, description="The cilium agent DaemonSet, None when absent.")
    cilium_config: dict[str, str] | None = Field(
        default=None, description="Data of the cilium-config ConfigMap (None when not read).")
    calico_objects: tuple[ObjectFacts, ...] = Field(
        default=(), description="Calico objects from the plan's finalize list that still exist.")
    files: frozenset[str] = Field(
        default=frozenset(), description="Local files the shell reports as already written.")
    probe_pods: tuple[PodFacts, ...] = Field(
        default=(), description="Every pod of the probe fleet (both DaemonSets), on every node.")
    probe_service_ip: str | None = Field(default=None, description="ClusterIP of the probe Service.")
    policy_probe_pods: tuple[PodFacts, ...] = Field(
        default=(), description="Every pod of the policy probe (probes.policy), in its three namespaces.")
    apiserver_ip: str | None = Field(default=None, description="ClusterIP of default/kubernetes.")
    policy: PolicyFacts | None = Field(
        default=None, description="Policy continuity facts (plan policy.mode continuous); None when not read.")
    handover: HandoverState | None = Field(
        default=None, description="What the routing hand-over reads (`migrator handover`); None when not read.")
    findings: tuple[Finding, ...] | None = Field(
        default=None, description="Preflight findings, gathered once per process while the run is in "
                                  "PREFLIGHT; None when not gathered.")

    _memo: dict[str, tuple[Any, Any]] = PrivateAttr(default_factory=dict)
    _follows: Follows | None = PrivateAttr(default=None)

    def follow(self, previous: ClusterObservation, changes: dict[int, Delta]) -> None:
        """Take this observation as the next after ``previous``: an index whose source is the
        very object it was computed from is carried over, and one given an ``update`` is derived
        from the previous one by the source's ``Delta`` (``changes``, keyed by the ``id`` of the
        previous source), at the cost of what changed rather than of the cluster's size. An index
        the previous observation did not compute comes from the newest of the last
        ``KEPT_OBSERVATIONS`` that did, by each delta since."""
        private: dict[str, Any] = previous.__pydantic_private__  # type: ignore[assignment]
        self.__pydantic_private__["_follows"] = Follows(private["_memo"], changes, private["_follows"])  # type: ignore[index]

    def indexed(self, name: str, source: Any, build: Callable[[], Any],
                update: Callable[[Any, Delta], Any] | None = None) -> Any:
        """An index computed once per ``source`` object (a field's tuple: safe across
        ``model_copy``), kept under ``name``; the engine's modules keep theirs here too. With
        ``update``, it is derived from the previous observation's (see ``follow``) when that
        observation recorded how the source changed."""
        # the private attribute through its slot: pydantic's __getattr__ costs microseconds, and
        # the engine asks for indexes thousands of times a turn on a large cluster
        private: dict[str, Any] = self.__pydantic_private__  # type: ignore[assignment]
        memo: dict[str, tuple[Any, Any]] = private["_memo"]
        entry = memo.get(name)
        if entry is None or entry[0] is not source:
            value = _derive(private["_follows"], name, source, update)
            entry = (source, build() if value is _UNDERIVED else value)
            memo[name] = entry
        return entry[1]

    # -- indexes (computed once per observation) ----------------------------------------
    @property
    def node_by_name(self) -> dict[str, NodeFacts]:
        """Nodes keyed by name."""
        return self.indexed("nodes", self.nodes, lambda: {n.name: n for n in self.nodes}, _renamed)

    @property
    def pods_by_node(self) -> dict[str, tuple[PodFacts, ...]]:
        """Pods grouped by node name, each group sorted by namespace/name."""
        return self.indexed("pods_by_node", self.pods, self._group_pods)

    def _group_pods(self) -> dict[str, tuple[PodFacts, ...]]:
        grouped: dict[str, list[PodFacts]] = {}
        for pod in self.pods:
            if pod.node is not None:
                grouped.setdefault(pod.node, []).append(pod)
        return {node: tuple(sorted(pods, key=lambda p: (p.namespace, p.name)))
                for node, pods in grouped.items()}

    @property
    def pdbs_by_namespace(self) -> dict[str, tuple[PdbFacts, ...]]:
        """PDBs grouped by namespace."""
        return self.indexed("pdbs", self.pdbs, self._group_pdbs)

    def _group_pdbs(self) -> dict[str, tuple[PdbFacts, ...]]:
        grouped: dict[str, list[PdbFacts]] = {}
        for pdb in self.pdbs:
            grouped.setdefault(pdb.namespace, []).append(pdb)
        return {ns: tuple(items) for ns, items in grouped.items()}

    @property
    def pod_by_key(self) -> dict[str, PodFacts]:
        """Pods keyed by ``namespace/name``."""
        return self.indexed("pod_by_key", self.pods, lambda: {p.key: p for p in self.pods})

    # -- helpers ------------------------------------------------------------------------
    def observes_pods_of(self, node: str) -> bool:
        """True when the pods of ``node`` are part of this observation."""
        return self.pod_nodes is None or node in self.pod_nodes

    def pods_on(self, node: str) -> tuple[PodFacts, ...]:
        """Pods bound to ``node`` (empty when the node's pods were not observed)."""
        return self.pods_by_node.get(node, ())

    def pod(self, namespace: str, name: str) -> PodFacts | None:
        """A pod by namespace and name, if observed."""
        return self.pod_by_key.get(f"{namespace}/{name}")

    def pdbs_covering(self, pod: PodFacts) -> tuple[PdbFacts, ...]:
        """PDBs that select ``pod``."""
        return tuple(p for p in self.pdbs_by_namespace.get(pod.namespace, ()) if p.covers(pod))

    def agent_pod(self, node: str, namespace: str, selector: dict[str, str]) -> PodFacts | None:
        """The newest non-deleting agent pod on ``node`` (namespace + equality selector)."""
        found = [p for p in self.pods_on(node)
                 if p.namespace == namespace and not p.deleting
                 and all(p.labels.get(k) == v for k, v in selector.items())]
        if not found:
            return None
        return max(found, key=lambda p: (p.created_at.timestamp() if p.created_at else 0.0, p.name))

    def agent_pods(self, node: str, namespace: str,
                   selector: dict[str, str]) -> tuple[PodFacts, ...]:
        """Every agent pod on ``node``, deleting ones included."""
        return tuple(p for p in self.pods_on(node)
                     if p.namespace == namespace
                     and all(p.labels.get(k) == v for k, v in selector.items()))

    @staticmethod
    def has_cilium_ip(pod: PodFacts,
                      cidr: ipaddress.IPv4Network | ipaddress.IPv6Network | str) -> bool:
        """Does ``pod`` have an IP inside the Cilium pod CIDR ``cidr``?"""
        network = ipaddress.ip_network(cidr) if isinstance(cidr, str) else cidr
        return pod.ip_in(network)
