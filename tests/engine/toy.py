"""A tiny deterministic cluster model for engine tests: applies actions to facts.

It is not a mock of anything the engine calls (the engine calls nothing): it plays the
cluster's part of the loop so scenario tests can drive ``decide`` through whole node
migrations and count what was done. The real behaviour is tested against the simulated
API server elsewhere; this keeps the engine's tests pure and fast.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from migrator.engine.actions import (
    Action,
    ActionResult,
    Cordon,
    CreatePod,
    DeleteNodeConfig,
    DeleteObject,
    DeletePod,
    EmitEvent,
    EnsureNodeConfig,
    EvictPod,
    LabelNode,
    PatchConfigMap,
    RestartDaemonSet,
    RestoreNodeState,
    Uncordon,
    UnlabelNode,
    WriteFile,
)
from migrator.model.findings import Finding
from migrator.model.observation import (
    ClusterObservation,
    DaemonSetFacts,
    NodeConfigFacts,
    NodeFacts,
    ObjectFacts,
    PdbFacts,
    PodFacts,
)
from migrator.model.plan import MIGRATION_LABEL
from migrator.model.selector import LabelSelector

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)


class ToyCluster:
    """Nodes, pods, a CiliumNodeConfig and a cilium DaemonSet, changed only by ``apply``."""

    def __init__(self, workers: int = 3, control_plane: int = 1, zones: int = 2,
                 apps_per_node: int = 1) -> None:
        self.nodes: dict[str, NodeFacts] = {}
        self.pods: dict[str, PodFacts] = {}
        self.pdbs: list[PdbFacts] = []
        self.cilium_nodes: set[str] = set()
        self.node_config: NodeConfigFacts | None = None
        self.served = ("v2", "v2alpha1")
        self.calico = [ObjectFacts(group="apps", version="v1", plural="daemonsets",
                                   namespace="kube-system", name="calico-node")]
        self.cilium_config: dict[str, str] = {}
        self.restarted_at: str | None = None
        self.files: set[str] = set()
        self.blocked: set[str] = set()
        self.findings: tuple[Finding, ...] | None = ()  # preflight found nothing (None: not gathered)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.serial = 0
        self.agent_switches = True      # a restarted agent applies the CiliumNodeConfig
        self.agent_returns = True       # the DaemonSet recreates a deleted agent pod
        for i in range(control_plane):
            self._node(f"cp-{i + 1}", zone="z1", control_plane=True)
        for i in range(workers):
            self._node(f"node-{i + 1}", zone=f"z{i % zones + 1}")
        for name in list(self.nodes):
            self._agent(name)
            self._pod("shop", f"log-agent-{name}", name, owner=("DaemonSet", "log-agent"),
                      labels={"app": "log-agent"})
        for name in [n for n in self.nodes if not self.nodes[n].control_plane]:
            for j in range(apps_per_node):
                self._pod("shop", f"web-{name}-{j}", name, owner=("ReplicaSet", "web"),
                          labels={"app": "web"})

    # -- construction --------------------------------------------------------------------
    def _uid(self) -> str:
        self.serial += 1
        return f"uid-{self.serial:05d}"

    def _node(self, name: str, zone: str, control_plane: bool = False) -> None:
        labels = {"topology.kubernetes.io/zone": zone}
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        self.nodes[name] = NodeFacts(name=name, uid=self._uid(), labels=labels, zone=zone,
                                     control_plane=control_plane, ready=True)

    def _ip(self, node: str) -> str:
        base = "10.245" if node in self.cilium_nodes else "192.168"
        return f"{base}.{self.serial // 250}.{self.serial % 250 + 1}"

    def _pod(self, namespace: str, name: str, node: str, owner: tuple[str, str] | None = None,
             labels: dict[str, str] | None = None, host_network: bool = False,
             emptydir: bool = False) -> PodFacts:
        uid = self._uid()
        pod = PodFacts(namespace=namespace, name=name, uid=uid, node=node, phase="Running",
                       ready=True, host_network=host_network,
                       ip=self.nodes[node].internal_ip or "172.18.0.2" if host_network else self._ip(node),
                       owner_kind=owner[0] if owner else None, owner_name=owner[1] if owner else None,
                       daemonset=bool(owner and owner[0] == "DaemonSet"), labels=labels or {},
                       emptydir=emptydir, created_at=T0 + timedelta(seconds=self.serial))
        self.pods[f"{namespace}/{name}"] = pod
        return pod

    def _agent(self, node: str) -> PodFacts:
        return self._pod("kube-system", f"cilium-{node}-{self.serial}", node,
                         owner=("DaemonSet", "cilium"), labels={"k8s-app": "cilium"},
                         host_network=True)

    def add_bare_pod(self, node: str, name: str = "debug-shell") -> PodFacts:
        return self._pod("shop", name, node)

    def add_pdb(self, app: str, allowed: int) -> None:
        self.pdbs.append(PdbFacts(namespace="shop", name=f"{app}-pdb",
                                  selector=LabelSelector(match_labels={"app": app}),
                                  disruptions_allowed=allowed))

    # -- the cluster's part of the loop ---------------------------------------------------
    def observe(self) -> ClusterObservation:
        ds = DaemonSetFacts(namespace="kube-system", name="cilium", generation=2, observed_generation=2,
                            desired=len(self.nodes), updated=len(self.nodes), ready=len(self.nodes),
                            available=len(self.nodes), restarted_at=self.restarted_at)
        return ClusterObservation(
            nodes=tuple(self.nodes[n] for n in sorted(self.nodes)),
            pods=tuple(self.pods[k] for k in sorted(self.pods)), pdbs=tuple(self.pdbs),
            node_config=self.node_config, served_cnc_versions=self.served, cilium_daemonset=ds,
            cilium_config=dict(self.cilium_config), calico_objects=tuple(self.calico),
            files=frozenset(self.files), findings=self.findings)

    def settle(self) -> None:
        """Let controllers act: deleting pods go away and are replaced, new pods start."""
        for key, pod in sorted(self.pods.items()):
            if not pod.deleting:
                continue
            del self.pods[key]
            if pod.owner_kind == "DaemonSet" and pod.node in self.nodes:
                if pod.labels.get("k8s-app") == "cilium":
                    if self.nodes[pod.node].labels.get(MIGRATION_LABEL) == "true" and self.agent_switches:
                        self.cilium_nodes.add(pod.node)
                    elif MIGRATION_LABEL not in self.nodes[pod.node].labels:
                        self.cilium_nodes.discard(pod.node)   # restarted without the per-node config
                    if self.agent_returns:
                        self._agent(pod.node)
                else:
                    self._pod(pod.namespace, f"{pod.owner_name}-{pod.node}-{self.serial}", pod.node,
                              owner=(pod.owner_kind, pod.owner_name or ""), labels=pod.labels)
            elif pod.owner_kind == "ReplicaSet":
                uid = self._uid()
                name = f"{pod.owner_name}-{self.serial}"
                self.pods[f"{pod.namespace}/{name}"] = pod.model_copy(update={
                    "name": name, "uid": uid, "node": None, "phase": "Pending", "ready": False,
                    "ip": None, "deleting": False})
        workers = [n for n in sorted(self.nodes)
                   if not self.nodes[n].unschedulable and not self.nodes[n].control_plane]
        for key, pod in list(self.pods.items()):
            if pod.node is None and workers:
                pod = self.pods[key] = pod.model_copy(update={"node": workers[0]})
            if pod.phase == "Pending" and pod.node is not None:
                self.pods[key] = pod.model_copy(update={"phase": "Running", "ready": True,
                                                        "ip": self._ip(pod.node)})

    def apply(self, action: Action) -> ActionResult:  # noqa: C901 - one branch per kind
        self.counts[(action.kind, getattr(action, "uid", None) or action.node or "")] += 1
        if isinstance(action, EmitEvent):
            return ActionResult.success(action)
        if isinstance(action, EnsureNodeConfig):
            self.node_config = NodeConfigFacts(namespace=action.namespace, name=action.name,
                                               api_version=action.api_version,
                                               node_selector=action.node_selector, defaults=action.defaults)
        elif isinstance(action, DeleteNodeConfig):
            self.node_config = None
        elif isinstance(action, (Cordon, Uncordon, RestoreNodeState, LabelNode, UnlabelNode)):
            node = self.nodes[action.node]
            labels = dict(node.labels)
            if isinstance(action, Cordon):
                node = node.model_copy(update={"unschedulable": True})
            elif isinstance(action, Uncordon):
                node = node.model_copy(update={"unschedulable": False})
            elif isinstance(action, LabelNode):
                labels[action.key] = action.value
            elif isinstance(action, UnlabelNode):
                labels.pop(action.key, None)
            else:
                labels.pop(action.label_key, None)
                if action.label_value is not None:
                    labels[action.label_key] = action.label_value
                node = node.model_copy(update={"unschedulable": action.unschedulable})
            self.nodes[action.node] = node.model_copy(update={"labels": labels})
        elif isinstance(action, (EvictPod, DeletePod)):
            key = f"{action.namespace}/{action.name}"
            pod = self.pods.get(key)
            if pod is None or pod.uid != action.uid:
                return ActionResult.failure(action, "NotFound", "gone")
            if isinstance(action, EvictPod) and key in self.blocked:
                return ActionResult.failure(action, "DisruptionBudgetBlocked", "PDB", retry_after=1)
            self.pods[key] = pod.model_copy(update={"deleting": True})
        elif isinstance(action, CreatePod):
            spec = action.pod
            key = f"{spec.namespace}/{spec.name}"
            if key in self.pods:
                return ActionResult.failure(action, "AlreadyExists", "exists")
            node = action.node or ""
            uid = self._uid()
            self.pods[key] = PodFacts(namespace=spec.namespace, name=spec.name, uid=uid, node=node,
                                      phase="Succeeded" if action.purpose == "node-action" else "Pending",
                                      labels=dict(spec.labels), node_action=spec.annotations.get(
                                          "sim.migrator.io/node-action"))
        elif isinstance(action, PatchConfigMap):
            self.cilium_config.update(action.data)
        elif isinstance(action, RestartDaemonSet):
            self.restarted_at = action.restarted_at
        elif isinstance(action, DeleteObject):
            self.calico = [o for o in self.calico if o.name != action.name]
        elif isinstance(action, WriteFile):
            self.files.add(action.path)
        return ActionResult.success(action)
