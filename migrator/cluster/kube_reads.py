"""The read half of ``KubeCluster``: observation facts, discovery, preflight inventories.

Kept apart from ``kube.py`` so each stays small. It never imports ``kubernetes``: it calls
the typed client functions held by ``KubeCluster`` through ``self._call`` (which maps errors
and returns JSON) and converts raw dicts with ``cluster/convert.py``. Reads of the cached
kinds (nodes, pods, PDBs, DaemonSets in the agent namespace, the CiliumNodeConfig) come from
the watch cache once it runs, so observing costs no requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migrator.cluster import convert
from migrator.cluster.cache import Raw, WatchCache
from migrator.cluster.errors import NotFound
from migrator.cluster.port import (
    ChangeCursor,
    ConfigMapSnapshot,
    DaemonSetInfo,
    FelixInfo,
    IPPoolInfo,
    LeaseRecord,
    ObjectRef,
    PolicyInfo,
    WatchScope,
    WorkloadInfo,
)
from migrator.model.observation import NodeConfigFacts, NodeFacts, PdbFacts, PodFacts
from migrator.policy import model as policy_model

CALICO_GROUP, CALICO_VERSION = "crd.projectcalico.org", "v1"
POLICY_KINDS = (  # (kind label, group, version, plural, namespaced)
    ("CalicoNetworkPolicy", CALICO_GROUP, CALICO_VERSION, "networkpolicies", True),
    ("GlobalNetworkPolicy", CALICO_GROUP, CALICO_VERSION, "globalnetworkpolicies", False),
    ("CiliumNetworkPolicy", "cilium.io", "v2", "ciliumnetworkpolicies", True),
    ("CiliumClusterwideNetworkPolicy", "cilium.io", "v2", "ciliumclusterwidenetworkpolicies", False),
)


CALICO_POLICY_KINDS = (  # (plural, namespaced)
    ("networkpolicies", True), ("globalnetworkpolicies", False), ("networksets", True),
    ("globalnetworksets", False), ("hostendpoints", False), ("tiers", False),
)


class KubeReads:
    """Mixin with every read of ``ClusterPort``; ``KubeCluster`` supplies the clients."""

    core: Any
    apps: Any
    policy: Any
    custom: Any
    coordination: Any
    networking: Any
    extensions: Any
    version_api: Any
    cache: WatchCache | None
    scope: WatchScope | None

    _call: Callable[..., Raw]           # (what, typed client function, *args) -> JSON body
    _core_request: Callable[..., Raw]   # (method, ObjectRef, body=..., query=...) -> JSON body

    def _get_or_none(self, what: str, fn: Any, *args: Any) -> Raw | None:
        try:
            return self._call(what, fn, *args)
        except NotFound:
            return None

    # -- discovery -----------------------------------------------------------------------------
    def server_version(self) -> str:
        return str(self._call("get version", self.version_api.get_code).get("gitVersion", ""))

    def served_versions(self, crd_name: str) -> list[str]:
        crd = self._get_or_none(f"get crd {crd_name}",
                                self.extensions.read_custom_resource_definition, crd_name)
        if crd is None:
            return []
        versions = [v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served")]
        versions.sort(key=lambda v: not v.get("storage"))  # stable: storage first, then CRD order
        return [str(v["name"]) for v in versions]

    def crd_has_field(self, crd_name: str, version: str, path: str) -> bool:
        crd = self._get_or_none(f"get crd {crd_name}",
                                self.extensions.read_custom_resource_definition, crd_name)
        found = [v for v in ((crd or {}).get("spec") or {}).get("versions") or []
                 if v.get("name") == version and v.get("served")]
        if not found:
            return False
        node = (found[0].get("schema") or {}).get("openAPIV3Schema") or {}
        for name in path.split("."):
            while node.get("type") == "array":
                node = node.get("items") or {}
            props = node.get("properties") or {}
            if name not in props:
                return False
            node = props[name]
        return True

    # -- cached kinds ------------------------------------------------------------------------
    def _cached(self, kind: str) -> WatchCache | None:
        return self.cache if self.cache is not None and self.cache.has(kind) else None

    def _node_raw(self, name: str, *, missing_ok: bool = False) -> Raw:
        cache = self._cached("nodes")
        if cache is not None:
            entry = cache.get("nodes", None, name)
            if entry is not None:
                return entry.raw
        raw = self._get_or_none(f"get node {name}", self.core.read_node, name)
        if raw is None:
            if missing_ok:
                return {}
            raise NotFound(f"node {name} not found", status=404)
        return raw

    def list_nodes(self) -> list[NodeFacts]:
        cache = self._cached("nodes")
        if cache is not None:
            return [e.facts for e in cache.entries("nodes")]
        items = self._call("list nodes", self.core.list_node).get("items") or []
        return [convert.node_facts(o) for o in sorted(items, key=convert.sort_key)]

    def _changes(self, kind: str, cursor: ChangeCursor | None, namespace: str | None = None
                 ) -> tuple[dict[tuple[str, str], Any] | None, ChangeCursor | None]:
        """The facts of ``kind`` put or dropped (None) since ``cursor`` (of one namespace, if given);
        None when everything must be read again."""
        cache = self._cached(kind)
        if cache is None:
            return None, None
        changed, end = cache.changes(kind, cursor)
        if changed is None:
            return None, end
        return {key: entry.facts if entry is not None else None for key, entry in changed.items()
                if namespace is None or key[0] == namespace}, end

    def node_changes(self, cursor: ChangeCursor | None
                     ) -> tuple[dict[tuple[str, str], NodeFacts | None] | None, ChangeCursor | None]:
        return self._changes("nodes", cursor)

    def pod_changes(self, namespace: str, cursor: ChangeCursor | None
                    ) -> tuple[dict[tuple[str, str], PodFacts | None] | None, ChangeCursor | None]:
        return self._changes("pods", cursor, namespace)

    def list_pods(self, *, node: str | None = None, namespace: str | None = None,
                  labels: dict[str, str] | None = None, unready: bool = False) -> list[PodFacts]:
        cache = self._cached("pods")
        if cache is not None:
            if node:
                entries = cache.indexed("pods", "node", node)
            elif unready and namespace:
                entries = cache.indexed("pods", "unready", namespace)
            elif namespace:
                entries = cache.indexed("pods", "namespace", namespace)
                if not labels and not unready:   # the index is the whole answer
                    return [e.facts for e in entries]
            else:
                entries = cache.entries("pods")
            return [e.facts for e in entries if convert.pod_matches(e.raw, namespace=namespace, labels=labels)
                    and (not unready or e.facts.unready)]
        kwargs: dict[str, Any] = {}
        if node:
            kwargs["field_selector"] = f"spec.nodeName={node}"
        if labels:
            kwargs["label_selector"] = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        if namespace:
            body = self._call("list pods", self.core.list_namespaced_pod, namespace, **kwargs)
        else:
            body = self._call("list pods", self.core.list_pod_for_all_namespaces, **kwargs)
        items = sorted(body.get("items") or [], key=convert.sort_key)
        pods = [convert.pod_facts(o) for o in items]
        return [p for p in pods if p.unready] if unready else pods

    def get_pod(self, namespace: str, name: str) -> PodFacts | None:
        cache = self._cached("pods")
        if cache is not None:
            entry = cache.get("pods", namespace, name)
            return entry.facts if entry else None
        raw = self._read_pod_raw(namespace, name)
        return convert.pod_facts(raw) if raw else None

    def _read_pod_raw(self, namespace: str, name: str) -> Raw | None:
        return self._get_or_none(f"get pod {namespace}/{name}",
                                 self.core.read_namespaced_pod, name, namespace)

    def list_pdbs(self) -> list[PdbFacts]:
        cache = self._cached("pdbs")
        if cache is not None:
            return [e.facts for e in cache.entries("pdbs")]
        body = self._call("list pdbs", self.policy.list_pod_disruption_budget_for_all_namespaces)
        return [convert.pdb_facts(o) for o in sorted(body.get("items") or [], key=convert.sort_key)]

    def get_node_config(self, namespace: str, name: str, *, version: str) -> NodeConfigFacts | None:
        cache = self._cached("nodeconfigs")
        if cache is not None and self.scope and self.scope.node_config_version == version \
                and self.scope.node_config_namespace == namespace:
            entry = cache.get("nodeconfigs", namespace, name)
            return entry.facts if entry else None
        raw = self._get_custom("cilium.io", version, "ciliumnodeconfigs", name, namespace)
        return convert.node_config_facts(raw) if raw else None

    def get_daemonset(self, namespace: str, name: str) -> DaemonSetInfo | None:
        cache = self._cached("daemonsets")
        if cache is not None and self.scope and self.scope.agent_namespace == namespace:
            entry = cache.get("daemonsets", namespace, name)
            return entry.facts if entry else None
        raw = self._get_or_none(f"get daemonset {namespace}/{name}",
                                self.apps.read_namespaced_daemon_set, name, namespace)
        return convert.daemonset_info(raw) if raw else None

    # -- direct reads ----------------------------------------------------------------------------
    def _get_custom(self, group: str, version: str, plural: str, name: str,
                    namespace: str | None = None) -> Raw | None:
        if namespace:
            return self._get_or_none(f"get {plural}.{group} {namespace}/{name}",
                                     self.custom.get_namespaced_custom_object,
                                     group, version, namespace, plural, name)
        return self._get_or_none(f"get {plural}.{group} {name}",
                                 self.custom.get_cluster_custom_object, group, version, plural, name)

    def _read_configmap_raw(self, namespace: str, name: str) -> Raw | None:
        return self._get_or_none(f"get configmap {namespace}/{name}",
                                 self.core.read_namespaced_config_map, name, namespace)

    def read_configmap(self, namespace: str, name: str) -> ConfigMapSnapshot | None:
        raw = self._read_configmap_raw(namespace, name)
        return convert.configmap_snapshot(raw) if raw else None

    def list_configmaps(self, namespace: str, label_selector: str) -> list[ConfigMapSnapshot]:
        body = self._call(f"list configmaps {namespace} -l {label_selector}",
                          self.core.list_namespaced_config_map, namespace, label_selector=label_selector)
        return [convert.configmap_snapshot(item) for item in body.get("items") or []]

    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        raw = self._get_or_none(f"get lease {namespace}/{name}",
                                self.coordination.read_namespaced_lease, name, namespace)
        return convert.lease_record(raw) if raw else None

    def _list_custom(self, group: str, version: str, plural: str,
                     namespace: str | None = None, label_selector: str | None = None) -> list[Raw]:
        extra = {"label_selector": label_selector} if label_selector else {}
        try:
            if namespace:
                body = self._call(f"list {plural}.{group}", self.custom.list_namespaced_custom_object,
                                  group, version, namespace, plural, **extra)
            else:
                body = self._call(f"list {plural}.{group}", self.custom.list_cluster_custom_object,
                                  group, version, plural, **extra)
        except NotFound:
            return []
        return sorted(body.get("items") or [], key=convert.sort_key)

    def list_objects(self, group: str, version: str, plural: str, *,
                     namespace: str | None = None) -> list[ObjectRef]:
        if group:
            items = self._list_custom(group, version, plural, namespace)
        else:
            try:
                body = self._core_request("GET", ObjectRef("", version, plural, "", namespace))
            except NotFound:
                return []
            items = sorted(body.get("items") or [], key=convert.sort_key)
        return [ObjectRef(group, version, plural, (o.get("metadata") or {}).get("name", ""),
                          (o.get("metadata") or {}).get("namespace")) for o in items]

    # -- preflight inventories ---------------------------------------------------------------------
    def list_ippools(self) -> list[IPPoolInfo]:
        return [convert.ippool_info(o) for o in self._list_custom(CALICO_GROUP, CALICO_VERSION, "ippools")]

    def get_felix_configuration(self, name: str = "default") -> FelixInfo | None:
        raw = self._get_custom(CALICO_GROUP, CALICO_VERSION, "felixconfigurations", name)
        return convert.felix_info(raw) if raw else None

    def get_service_cluster_ip(self, namespace: str = "default", name: str = "kubernetes") -> str | None:
        raw = self._get_or_none(f"get service {namespace}/{name}",
                                self.core.read_namespaced_service, name, namespace)
        ip = ((raw or {}).get("spec") or {}).get("clusterIP")
        return ip if ip and ip != "None" else None

    def list_policies(self) -> list[PolicyInfo]:
        body = self._call("list networkpolicies",
                          self.networking.list_network_policy_for_all_namespaces)
        found = [PolicyInfo("NetworkPolicy", o["metadata"]["name"], o["metadata"].get("namespace"))
                 for o in sorted(body.get("items") or [], key=convert.sort_key)]
        for kind, group, version, plural, _namespaced in POLICY_KINDS:
            found += [convert.policy_info(kind, o) for o in self._list_custom(group, version, plural)]
        return found

    def list_workloads(self) -> list[WorkloadInfo]:
        out: list[WorkloadInfo] = []
        for kind, fn in (("Deployment", self.apps.list_deployment_for_all_namespaces),
                         ("StatefulSet", self.apps.list_stateful_set_for_all_namespaces)):
            try:
                items = self._call(f"list {kind.lower()}s", fn).get("items") or []
            except NotFound:  # the kind is not served by this server
                continue
            out += [convert.workload_info(kind, o) for o in sorted(items, key=convert.sort_key)]
        return out

    def list_policy_objects(self, label_selector: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for plural, kind, known in (("ciliumcidrgroups", "CiliumCIDRGroup", ("v2", "v2alpha1")),
                                    ("ciliumnetworkpolicies", "CiliumNetworkPolicy", ("v2",)),
                                    ("ciliumclusterwidenetworkpolicies", "CiliumClusterwideNetworkPolicy", ("v2",))):
            served = self.served_versions(f"{plural}.cilium.io")
            version = next((v for v in known if v in served), None)
            if version is None:
                continue
            for o in self._list_custom("cilium.io", version, plural, label_selector=label_selector):
                meta = o.get("metadata") or {}
                kept = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
                out.append({"apiVersion": f"cilium.io/{version}", "kind": kind, "metadata": kept,
                            **{k: o[k] for k in ("spec", "specs") if k in o}})
        return out

    def read_policy_inventory(self) -> policy_model.Inventory:
        group, version = (("projectcalico.org", "v3") if self.served_versions("networkpolicies.projectcalico.org")
                          else (CALICO_GROUP, CALICO_VERSION))
        calico = {plural: self._list_custom(group, version, plural) for plural, _ in CALICO_POLICY_KINDS}
        knps = self._call("list networkpolicies", self.networking.list_network_policy_for_all_namespaces)
        pods = self._call("list pods", self.core.list_pod_for_all_namespaces)
        namespaces = self._call("list namespaces", self.core.list_namespace)
        policies = ([policy_model.calico_policy("NetworkPolicy", o) for o in calico["networkpolicies"]]
                    + [policy_model.calico_policy("GlobalNetworkPolicy", o) for o in calico["globalnetworkpolicies"]]
                    + [policy_model.kubernetes_policy(o)
                       for o in sorted(knps.get("items") or [], key=convert.sort_key)])
        return policy_model.Inventory(
            policies=tuple(policies),
            network_sets=tuple([policy_model.network_set(o, global_=False) for o in calico["networksets"]]
                               + [policy_model.network_set(o, global_=True) for o in calico["globalnetworksets"]]),
            host_endpoints=tuple(policy_model.host_endpoint(o) for o in calico["hostendpoints"]),
            tiers=tuple(policy_model.tier(o) for o in calico["tiers"]),
            pods=tuple(policy_model.pod(o) for o in sorted(pods.get("items") or [], key=convert.sort_key)
                       if (o.get("status") or {}).get("podIP") and not (o.get("spec") or {}).get("hostNetwork")),
            namespaces={(o.get("metadata") or {}).get("name", ""): dict((o.get("metadata") or {}).get("labels") or {})
                        for o in namespaces.get("items") or []})
