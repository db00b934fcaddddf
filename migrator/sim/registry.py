"""Which resources the simulated API server serves, at which versions, and how to find them.

A real kube-apiserver learns built-in resources from its compiled-in scheme and custom
resources from CustomResourceDefinitions. The simulated one does the same: a table of the
built-in kinds the migrator and kubectl touch, plus every CRD shipped in
``migrator/sim/crds/`` (the real Cilium and Calico CRDs). Each served group/version/plural
maps to one storage key in the ``Store``; objects are stored once and their ``apiVersion`` is
rewritten when read at another served version (CiliumNodeConfig at ``cilium.io/v2`` and
``v2alpha1``).

``install_api`` registers everything, adds the pod index by ``spec.nodeName`` and creates the
objects every cluster starts with (the four namespaces, the ``kubernetes`` Service, the default
RBAC roles and bindings).
"""

from __future__ import annotations

import ipaddress
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from migrator.sim.rbac import bootstrap_objects
from migrator.sim.store import ResourceType, Store

#: The store index of Services by ``spec.clusterIP`` (the network model finds a ClusterIP's Service).
CLUSTER_IP_INDEX = "clusterIP"

CRD_DIR = Path(__file__).with_name("crds")


@dataclass(frozen=True)
class ApiResource:
    """One served resource at one version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    subresources: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    singular: str = ""
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    storage_version: str = ""       # the version objects are stored at (for conversion on read)
    deprecated: str | None = None   # a deprecation warning served as a Warning header
    crd_schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    categories: tuple[str, ...] = ()
    #: a custom resource version's ``additionalPrinterColumns`` (the columns of its Table)
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def is_custom(self) -> bool:
        return self.crd_schema is not None

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


def _r(group: str, version: str, plural: str, kind: str, namespaced: bool, sub: tuple[str, ...] = (),
       short: tuple[str, ...] = (), verbs: tuple[str, ...] | None = None) -> ApiResource:
    kw: dict[str, Any] = {}
    if verbs is not None:
        kw["verbs"] = verbs
    return ApiResource(group, version, plural, kind, namespaced, sub, short, singular=kind.lower(),
                       storage_version=version, **kw)


BUILTIN: tuple[ApiResource, ...] = (
    _r("", "v1", "namespaces", "Namespace", False, ("status",), ("ns",)),
    _r("", "v1", "nodes", "Node", False, ("status", "proxy"), ("no",)),
    _r("", "v1", "pods", "Pod", True, ("status", "eviction", "binding", "proxy", "log"), ("po",)),
    _r("", "v1", "configmaps", "ConfigMap", True, (), ("cm",)),
    _r("", "v1", "secrets", "Secret", True),
    _r("", "v1", "services", "Service", True, ("status", "proxy"), ("svc",)),
    _r("", "v1", "endpoints", "Endpoints", True, (), ("ep",)),
    _r("", "v1", "serviceaccounts", "ServiceAccount", True, ("token",), ("sa",)),
    _r("", "v1", "events", "Event", True, (), ("ev",)),
    _r("apps", "v1", "daemonsets", "DaemonSet", True, ("status",), ("ds",)),
    _r("apps", "v1", "deployments", "Deployment", True, ("status", "scale"), ("deploy",)),
    _r("apps", "v1", "replicasets", "ReplicaSet", True, ("status", "scale"), ("rs",)),
    _r("apps", "v1", "controllerrevisions", "ControllerRevision", True),
    _r("batch", "v1", "jobs", "Job", True, ("status",)),
    _r("batch", "v1", "cronjobs", "CronJob", True, ("status",), ("cj",)),
    _r("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("status",), ("pdb",)),
    _r("coordination.k8s.io", "v1", "leases", "Lease", True),
    _r("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
       ("status",), ("crd", "crds")),
    _r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _r("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _r("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, (), ("netpol",)),
    _r("events.k8s.io", "v1", "events", "Event", True, (), ("ev",)),
    # created, never stored: answered from RBAC (reviews.py)
    _r("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
       verbs=("create",)),
    _r("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False, verbs=("create",)),
    _r("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=("create",)),
)

# The subresource kinds discovery advertises (kubectl drain needs pods/eviction as policy/v1 Eviction).
SUBRESOURCE_KINDS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("pods", "eviction"): ("policy", "v1", "Eviction"),
    ("pods", "binding"): ("", "v1", "Binding"),
    ("pods", "proxy"): ("", "v1", "PodProxyOptions"),
    ("pods", "log"): ("", "v1", "Pod"),
    ("nodes", "proxy"): ("", "v1", "NodeProxyOptions"),
    ("services", "proxy"): ("", "v1", "ServiceProxyOptions"),
    ("serviceaccounts", "token"): ("authentication.k8s.io", "v1", "TokenRequest"),
    ("deployments", "scale"): ("autoscaling", "v1", "Scale"),
    ("replicasets", "scale"): ("autoscaling", "v1", "Scale"),
}


class Registry:
    """Lookup of served resources by group/version/plural and by kind."""

    def __init__(self) -> None:
        self._by_gvr: dict[tuple[str, str, str], ApiResource] = {}
        self.crds: list[dict[str, Any]] = []

    def add(self, res: ApiResource) -> None:
        self._by_gvr[(res.group, res.version, res.plural)] = res

    def get(self, group: str, version: str, plural: str) -> ApiResource | None:
        return self._by_gvr.get((group, version, plural))

    def all(self) -> list[ApiResource]:
        return list(self._by_gvr.values())

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (storage) version first."""
        out: dict[str, list[str]] = {}
        for res in self._by_gvr.values():
            versions = out.setdefault(res.group, [])
            if res.version not in versions:
                if res.version == res.storage_version:
                    versions.insert(0, res.version)
                else:
                    versions.append(res.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ApiResource]:
        return [r for (g, v, _), r in self._by_gvr.items() if g == group and v == version]


#: libyaml's loader where PyYAML was built with it: the CRDs are megabytes of YAML, which the
#: pure-Python loader takes seconds to read and libyaml a tenth of that.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_PARSED: dict[Path, bytes] = {}   # directory -> its CRDs, pickled: parsed once per process


def load_crds(directory: Path = CRD_DIR) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition YAML shipped with the simulator, parsed once per process;
    each call gets its own copy (a cluster may change what it was given)."""
    if directory not in _PARSED:
        crds = []
        for path in sorted(directory.glob("*.yaml")):
            for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=_LOADER):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(doc)
        _PARSED[directory] = pickle.dumps(crds)
    crds_copy: list[dict[str, Any]] = pickle.loads(_PARSED[directory])
    return crds_copy


def serve_versions(crds: list[dict[str, Any]], served: Mapping[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    """The CRDs as an older release ships them: ``served`` maps a CRD's name to the versions it
    serves, the first one its storage version; no versions leaves the CRD out (not installed).
    Applied before the API is installed, so discovery, the writable versions and the
    CustomResourceDefinition objects clients read all agree."""
    out = []
    for crd in crds:
        versions = served.get(crd["metadata"]["name"])
        if versions is None:
            out.append(crd)
            continue
        kept = [dict(v, served=True, storage=v["name"] == versions[0])
                for v in crd["spec"]["versions"] if v["name"] in versions]
        missing = set(versions) - {v["name"] for v in kept}
        if missing:
            raise ValueError(f"{crd['metadata']['name']} has no version {sorted(missing)} to serve")
        if kept:
            out.append(dict(crd, spec=dict(crd["spec"], versions=kept)))
    return out


def crd_resources(crd: dict[str, Any]) -> list[ApiResource]:
    """The served versions of one CRD as ApiResources."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec["versions"] if v.get("served", True)]
    storage = next((v["name"] for v in spec["versions"] if v.get("storage")), versions[0]["name"])
    out = []
    for v in versions:
        sub = tuple(k for k in (v.get("subresources") or {}))
        out.append(ApiResource(
            group=spec["group"], version=v["name"], plural=names["plural"], kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced", subresources=sub,
            short_names=tuple(names.get("shortNames") or ()), singular=names.get("singular", ""),
            storage_version=storage,
            deprecated=v.get("deprecationWarning") or (
                f"{spec['group']}/{v['name']} {names['kind']} is deprecated" if v.get("deprecated") else None),
            crd_schema=(v.get("schema") or {}).get("openAPIV3Schema") or {"type": "object",
                                                                           "x-kubernetes-preserve-unknown-fields": True},
            categories=tuple(names.get("categories") or ()),
            printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
        ))
    return out


def build_registry(crds: list[dict[str, Any]] | None = None) -> Registry:
    reg = Registry()
    for res in BUILTIN:
        reg.add(res)
    reg.crds = load_crds() if crds is None else crds
    for crd in reg.crds:
        for res in crd_resources(crd):
            reg.add(res)
    return reg


_REGISTRIES: dict[int, Registry] = {}


def registry_for(store: Store) -> Registry:
    """The registry installed on ``store`` by ``install_api``."""
    return _REGISTRIES[id(store)]


def install_api(store: Store, *, service_cidr: str = "10.96.0.0/12",
                crds: list[dict[str, Any]] | None = None) -> Registry:
    """Register every served resource on ``store`` and create a new cluster's first objects."""
    reg = build_registry(crds)
    for res in reg.all():
        store.register(ResourceType(res.group, res.plural, res.kind, res.namespaced, res.has_status,
                                    custom=res.is_custom))
    store.add_index("pods", "nodeName", lambda o: (o.get("spec") or {}).get("nodeName") or None)
    store.add_index("services", CLUSTER_IP_INDEX, lambda o: (o.get("spec") or {}).get("clusterIP") or None)
    _REGISTRIES[id(store)] = reg
    from migrator.sim.admission import apply_defaults
    store.defaulter = apply_defaults
    store.service_cidr = service_cidr
    for crd in reg.crds:
        obj = dict(crd)
        obj.pop("status", None)
        meta = dict(obj.get("metadata") or {})
        meta.pop("creationTimestamp", None)
        obj["metadata"] = meta
        versions = [v["name"] for v in crd["spec"]["versions"]]
        obj["status"] = {"acceptedNames": crd["spec"]["names"], "storedVersions": versions[:1],
                         "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted"}]}
        store.create("apiextensions.k8s.io/customresourcedefinitions", obj)
    for key, obj in bootstrap_objects():
        store.create(key, obj)
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                    "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    first = str(next(ipaddress.ip_network(service_cidr).hosts()))
    store.create("services", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": first, "clusterIPs": [first], "type": "ClusterIP", "sessionAffinity": "None",
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
    })
    return reg
