"""The one interface the shell uses to talk to a cluster: ``ClusterPort``.

Everything above ``cluster/`` (observe, execute, runner, preflight, the checkpoint store and
the lease) depends on this Protocol, never on the ``kubernetes`` package. ``cluster/kube.py``
implements it over HTTP; tests of the shell may pass an in-memory implementation.

Rules every implementation keeps:
- Raw Kubernetes dicts never cross this boundary: reads return the observation facts of
  ``migrator/model/observation.py`` or the small frozen records declared here.
- Errors are the classes of ``cluster/errors.py``; implementations never retry: ``cluster/guard.py``
  wraps the port once, where it is wired, with the policy of ``retry.py``.
- Writes are idempotent where Kubernetes allows it: cordoning a cordoned node, setting a label
  to the value it has, deleting something already gone are no-ops that report ``False``
  ("nothing changed") instead of raising.
- Reads of nodes, pods, PDBs, the CiliumNodeConfig and DaemonSets in the agent namespace are
  served from a watch-driven cache once ``start_watching`` was called (waiting costs no
  requests); before that, each read is a direct LIST/GET.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from migrator.model.handover import HandoverState
from migrator.model.observation import (
    DaemonSetFacts,
    NodeConfigFacts,
    NodeFacts,
    ObjectFacts,
    PdbFacts,
    PodFacts,
)
from migrator.model.pod import PodRequest as PodRequest
from migrator.model.routing import RoutingInventory  # what create_pod takes; CreatePod carries it
from migrator.policy.model import Inventory as PolicyInventory

# --------------------------------------------------------------------------------------------
# Records the port returns or accepts that are not part of the engine's observation model.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectRef:
    """Address of any API object: ``group`` is ``""`` for the core group."""

    group: str
    version: str
    plural: str
    name: str
    namespace: str | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def as_facts(self) -> ObjectFacts:
        """The engine's ``ObjectFacts`` for this address."""
        return ObjectFacts(group=self.group, version=self.version, plural=self.plural,
                           name=self.name, namespace=self.namespace)

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        kind = f"{self.plural}.{self.group}" if self.group else self.plural
        return f"{kind} {where}{self.name}"

#: Where a reader of ``pod_changes`` left off (opaque to it).
ChangeCursor = tuple[int, int]


@dataclass(frozen=True)
class WatchScope:
    """What the watch-driven cache follows (one LIST then WATCH per resource kind)."""

    agent_namespace: str = "kube-system"
    node_config_namespace: str = "kube-system"
    node_config_version: str | None = None  # served CiliumNodeConfig version; None = not watched


@dataclass(frozen=True)
class ConfigMapSnapshot:
    """A ConfigMap's data with the resourceVersion it was read at (for compare-and-swap)."""

    namespace: str
    name: str
    data: dict[str, str]
    resource_version: str


@dataclass(frozen=True)
class LeaseRecord:
    """A coordination.k8s.io/v1 Lease as the lock sees it. Times are timezone-aware UTC."""

    namespace: str
    name: str
    holder: str | None
    duration_seconds: int | None
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int = 0
    resource_version: str = ""


@dataclass(frozen=True)
class LeaseEvent:
    """One event of a watch on a single Lease.

    ``BOOKMARK`` carries only a resourceVersion to resume from (``record`` is None);
    ``DELETED`` carries the Lease as it was last stored."""

    type: Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
    resource_version: str
    record: LeaseRecord | None


class LeaseWatch(Protocol):
    """An open watch on one Lease (``ClusterPort.watch_lease``): iterate it for events.

    Iteration ends when the watch's timeout has passed, when the server ends the stream, or
    once ``stop`` was called (from any thread); a stream that breaks or an ``ERROR`` event
    raises the error of ``cluster/errors.py`` (410 Gone is ``Expired``)."""

    def __iter__(self) -> Iterator[LeaseEvent]: ...

    def stop(self) -> None:
        """End the watch now (another thread may be iterating it). Idempotent."""


@dataclass(frozen=True)
class DaemonSetInfo:
    """A DaemonSet's rollout status plus the env of its containers (for preflight)."""

    namespace: str
    name: str
    generation: int
    observed_generation: int
    desired: int
    current: int
    updated: int
    ready: int
    available: int
    restarted_at: str | None                        # template annotation kubectl.kubernetes.io/restartedAt
    selector: dict[str, str] = field(default_factory=dict)
    env: dict[str, dict[str, str]] = field(default_factory=dict)   # container -> {name: literal value}

    @property
    def rolled_out(self) -> bool:
        """True when the controller saw the latest spec and every scheduled pod is updated and ready."""
        return (self.observed_generation >= self.generation
                and self.updated == self.desired and self.ready == self.desired
                and self.available == self.desired)

    def as_facts(self) -> DaemonSetFacts:
        """The engine's ``DaemonSetFacts`` (rollout state only)."""
        return DaemonSetFacts(namespace=self.namespace, name=self.name, generation=self.generation,
                              observed_generation=self.observed_generation, desired=self.desired,
                              updated=self.updated, ready=self.ready, available=self.available,
                              restarted_at=self.restarted_at)


@dataclass(frozen=True)
class WorkloadInfo:
    """A Deployment or StatefulSet and its desired replica count."""

    kind: str
    namespace: str
    name: str
    replicas: int


@dataclass(frozen=True)
class IPPoolInfo:
    """A Calico IPPool (crd.projectcalico.org/v1)."""

    name: str
    cidr: str
    vxlan_mode: str        # Never | Always | CrossSubnet
    ipip_mode: str         # Never | Always | CrossSubnet
    nat_outgoing: bool
    disabled: bool


@dataclass(frozen=True)
class FelixInfo:
    """The Calico FelixConfiguration that matters for the migration."""

    name: str
    vxlan_port: int | None        # None = Calico default 4789
    vxlan_enabled: bool | None
    bpf_enabled: bool


@dataclass(frozen=True)
class PolicyInfo:
    """One network policy object in the inventory. ``actions`` lists Calico rule actions seen."""

    kind: str              # NetworkPolicy | CalicoNetworkPolicy | GlobalNetworkPolicy | CiliumNetworkPolicy | CiliumClusterwideNetworkPolicy
    name: str
    namespace: str | None = None
    actions: frozenset[str] = frozenset()


# --------------------------------------------------------------------------------------------
# The port.
# --------------------------------------------------------------------------------------------

@runtime_checkable
class ClusterPort(Protocol):
    """Everything the migrator may ask of a cluster. See the module docstring for the rules."""

    # -- discovery ------------------------------------------------------------------------
    def server_version(self) -> str:
        """The API server's gitVersion, e.g. ``v1.32.4``."""

    def served_versions(self, crd_name: str) -> list[str]:
        """Served versions of a CRD (e.g. ``ciliumnodeconfigs.cilium.io``), storage version
        first then in the CRD's order; ``[]`` if the CRD is not installed."""

    def crd_has_field(self, crd_name: str, version: str, path: str) -> bool:
        """Whether a served version of a CRD declares a field in its schema, ``path`` dotted through
        object properties (array items are stepped through), e.g. ``spec.ingress.toPorts.ports.endPort``;
        False when the CRD or the version is absent (the API server prunes undeclared fields)."""

    # -- watch-driven cache -----------------------------------------------------------------
    def start_watching(self, scope: WatchScope) -> None:
        """LIST then WATCH nodes, pods, PDBs, DaemonSets in the agent namespace and the
        CiliumNodeConfig kind; returns once every cache is filled. Idempotent."""

    def wait_for_change(self, timeout: float) -> bool:
        """Block until a cached object changed since the previous call returned (or since
        ``start_watching``), or ``timeout`` seconds passed. True if something changed."""

    def close(self) -> None:
        """Stop the watches and release connections. Idempotent."""

    # -- observation (cached once watching) ------------------------------------------------
    def list_nodes(self) -> list[NodeFacts]:
        """All nodes, sorted by name."""

    def list_pods(self, *, node: str | None = None, namespace: str | None = None,
                  labels: dict[str, str] | None = None, unready: bool = False) -> list[PodFacts]:
        """Pods filtered by node, namespace, equality label selector and (``unready``) to those
        ``PodFacts.unready``, sorted by namespace/name."""

    def node_changes(self, cursor: ChangeCursor | None
                     ) -> tuple[dict[tuple[str, str], NodeFacts | None] | None, ChangeCursor | None]:
        """The nodes that changed since ``cursor`` (keyed ``("", name)``), as ``pod_changes``."""

    def pod_changes(self, namespace: str, cursor: ChangeCursor | None
                    ) -> tuple[dict[tuple[str, str], PodFacts | None] | None, ChangeCursor | None]:
        """The pods of ``namespace`` that changed since ``cursor`` (by namespace/name; None for a
        pod that is gone) and the cursor for next time. None instead of the changes when they
        cannot be told (not watching, the first call, a relist since): list the pods then."""

    def list_pdbs(self) -> list[PdbFacts]:
        """All PodDisruptionBudgets, sorted by namespace/name."""

    def get_node_config(self, namespace: str, name: str, *, version: str) -> NodeConfigFacts | None:
        """The CiliumNodeConfig at the given served version, or None."""

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetInfo | None:
        """A DaemonSet's status (cached for the agent namespace), or None."""

    # -- node writes --------------------------------------------------------------------
    def cordon_node(self, name: str) -> bool:
        """Set spec.unschedulable=true (merge patch). False if it already was."""

    def uncordon_node(self, name: str) -> bool:
        """Set spec.unschedulable=false. False if it already was schedulable."""

    def set_node_taint(self, name: str, key: str, effect: str, present: bool) -> bool:
        """Add (present) or remove one taint, leaving the others; True when something changed."""

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        """Set (or with ``None`` remove) one node label. False if nothing changed."""

    def emit_node_event(self, node: str, *, reason: str, message: str,
                        type: str = "Normal", namespace: str = "default") -> None:
        """Create a core/v1 Event about a Node (source component and reportingController
        ``migrator``)."""

    # -- pod writes ---------------------------------------------------------------------
    def evict_pod(self, namespace: str, name: str, *, uid: str | None = None,
                  grace_period_seconds: int | None = None) -> bool:
        """Evict through policy/v1 Eviction with a uid precondition. False if the pod (with that
        uid) is already gone. Raises ``DisruptionBudgetBlocked`` when a PDB forbids it."""

    def delete_pod(self, namespace: str, name: str, *, uid: str | None = None,
                   grace_period_seconds: int | None = None) -> bool:
        """Delete with a uid precondition. False if the pod (with that uid) is already gone."""

    def create_pod(self, request: PodRequest) -> PodFacts:
        """Create a pod. Raises ``AlreadyExists`` when a pod with that name exists."""

    def get_pod(self, namespace: str, name: str) -> PodFacts | None:
        """One pod by name (cached once watching), or None."""

    # -- Cilium / ConfigMaps / DaemonSets -------------------------------------------------
    def ensure_node_config(self, namespace: str, name: str, *, version: str,
                           node_selector: dict[str, str], defaults: dict[str, str]) -> bool:
        """Create the CiliumNodeConfig, or replace its spec if it differs. False if it was
        already exactly so."""

    def delete_node_config(self, namespace: str, name: str, *, version: str) -> bool:
        """Delete the CiliumNodeConfig. False if it was already gone."""

    def read_configmap(self, namespace: str, name: str) -> ConfigMapSnapshot | None:
        """A ConfigMap's data and resourceVersion (always a direct GET), or None."""

    def list_configmaps(self, namespace: str, label_selector: str) -> list[ConfigMapSnapshot]:
        """The ConfigMaps of ``namespace`` matching ``label_selector`` (one direct LIST)."""

    def create_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                         labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        """Create a ConfigMap. Raises ``AlreadyExists``."""

    def replace_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                          resource_version: str,
                          labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        """Replace data and labels with compare-and-swap (one PUT). Raises ``Conflict`` on a
        stale version, ``NotFound`` if the ConfigMap is gone."""

    def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> bool:
        """Merge keys into a ConfigMap's data. False if every key already had that value."""

    def restart_daemonset(self, namespace: str, name: str, *, restarted_at: datetime) -> bool:
        """Set the template annotation ``kubectl.kubernetes.io/restartedAt`` (like ``kubectl
        rollout restart``). False if it already carries that exact timestamp."""

    # -- generic objects (Calico removal) ----------------------------------------------------
    def list_objects(self, group: str, version: str, plural: str, *,
                     namespace: str | None = None) -> list[ObjectRef]:
        """Names of every object of a kind ([] if the kind is not served), sorted."""

    def apply_object(self, manifest: dict[str, Any]) -> bool:
        """Create the object or merge its labels/spec; True when something changed."""

    def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str,
                     patch: dict[str, Any]) -> bool:
        """JSON merge patch (RFC 7386) of any object; False when it already holds what the patch says."""

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: dict[str, str]) -> str:
        """GET ``path`` on a pod's port through the API server's pods/proxy; the body as text."""

    def delete_object(self, ref: ObjectRef) -> bool:
        """Delete any object (background propagation). False if already gone."""

    # -- lease ----------------------------------------------------------------------------
    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease, or None."""

    def create_lease(self, record: LeaseRecord) -> LeaseRecord:
        """Create the Lease. Raises ``AlreadyExists`` if someone else created it first."""

    def replace_lease(self, record: LeaseRecord) -> LeaseRecord:
        """Replace the Lease with compare-and-swap on ``record.resource_version``
        (``Conflict`` when stale)."""

    def delete_lease(self, namespace: str, name: str, *, resource_version: str) -> bool:
        """Delete the Lease if unchanged since ``resource_version``. False if already gone."""

    def watch_lease(self, namespace: str, name: str, *, resource_version: str,
                    timeout: float) -> LeaseWatch:
        """Open one WATCH on this Lease alone (field selector ``metadata.name``) for the changes
        after ``resource_version``, ending after ``timeout`` seconds. Raises when the watch
        cannot be opened; never retried (the caller decides what to do meanwhile)."""

    # -- preflight reads -----------------------------------------------------------------
    def list_ippools(self) -> list[IPPoolInfo]:
        """Calico IPPools; [] when Calico's CRDs are absent."""

    def get_felix_configuration(self, name: str = "default") -> FelixInfo | None:
        """A Calico FelixConfiguration, or None."""

    def get_service_cluster_ip(self, namespace: str = "default", name: str = "kubernetes") -> str | None:
        """A Service's ClusterIP (the ``kubernetes`` Service hints at the service CIDR)."""

    def list_policies(self) -> list[PolicyInfo]:
        """Kubernetes NetworkPolicies, Calico NetworkPolicies/GlobalNetworkPolicies and
        Cilium CNPs/CCNPs (kinds not served are skipped)."""

    def list_workloads(self) -> list[WorkloadInfo]:
        """Deployments and StatefulSets with their desired replicas."""

    def list_policy_objects(self, label_selector: str) -> list[dict[str, Any]]:
        """Cilium policy objects (CiliumNetworkPolicies, CiliumClusterwideNetworkPolicies,
        CiliumCIDRGroups) matching ``label_selector``, as manifests (apiVersion, kind, metadata
        with labels, spec/specs) in the form the translation writes them; kinds not served are
        skipped."""

    def read_policy_inventory(self) -> PolicyInventory:
        """What policy translation reads: Calico NetworkPolicies, GlobalNetworkPolicies, NetworkSets,
        GlobalNetworkSets, HostEndpoints and Tiers (``projectcalico.org/v3`` when its CRDs are served,
        else ``crd.projectcalico.org/v1``; kinds not served are empty), Kubernetes NetworkPolicies,
        pods with an address (labels, service account, named ports) and namespace labels. Raises
        ``PolicyInputError`` for an object whose spec cannot be read."""

    def read_handover_state(self) -> HandoverState:
        """The routing inventory, the manifests of the objects the routing hand-over writes and each
        node's Cilium BGP sessions as its ``CiliumBGPNodeConfig`` status reports them
        (``model/handover.py``)."""

    def read_routing_inventory(self) -> RoutingInventory:
        """Calico's routing (pools, backend, BGPConfiguration, BGPPeers), node pod CIDRs, MetalLB's
        pools, peers and advertisements, LoadBalancer Services and the served Cilium BGP / LB IPAM
        API versions (``model/routing.py``); kinds not served read as empty."""
