"""What Cilium knows about the other end of a flow: its security identity.

Written from Cilium's policy documentation (layer3: entities, CIDR rules; identity-relevant
labels) and the reference's account of the dual-overlay migration:

* a pod Cilium manages (on the Cilium overlay) has a label identity: its labels that are
  identity-relevant, plus ``io.kubernetes.pod.namespace``, ``io.cilium.k8s.namespace.labels.*``,
  ``io.cilium.k8s.policy.serviceaccount`` and ``io.cilium.k8s.policy.cluster``;
* a pod Cilium does not manage (on the Calico overlay) is ``unmanaged``: the pod watcher puts its
  address in the ipcache with the reserved identity, so no label selector matches it — unless
  Calico masqueraded the packet to its node's address, which is then ``host`` (the local node) or
  ``remote-node``;
* node addresses are ``host`` / ``remote-node`` (with ``kube-apiserver`` where the API server runs);
* anything else is ``world``.

Identity-relevant labels: Cilium's default filter ignores ``io.kubernetes*``, ``kubernetes.io*``,
``*beta.kubernetes.io*``, ``k8s.io*``, the StatefulSet/Job/index labels, the template and revision
hashes, ``annotation*`` and ``etcd_node``, but keeps ``app.kubernetes.io*`` and the namespace
labels; the agent's ``labels`` option adds patterns (``!`` ignores; an inclusive pattern makes the
filter an allow-list). Patterns match the start of a key; the longest inclusive match beats a
shorter ignoring one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

Obj = dict[str, Any]
NAMESPACE = "io.kubernetes.pod.namespace"
NS_LABELS = "io.cilium.k8s.namespace.labels."
SERVICE_ACCOUNT = "io.cilium.k8s.policy.serviceaccount"
CLUSTER = "io.cilium.k8s.policy.cluster"
DEFAULT_PATTERNS = (
    r"io\.kubernetes\.pod\.namespace", r"io\.cilium\.k8s\.namespace\.labels", r"app\.kubernetes\.io",
    r"!io\.kubernetes", r"!kubernetes\.io", r"!statefulset\.kubernetes\.io/pod-name",
    r"!apps\.kubernetes\.io/pod-index", r"!batch\.kubernetes\.io/job-completion-index",
    r"!batch\.kubernetes\.io/controller-uid", r"!.*beta\.kubernetes\.io", r"!k8s\.io",
    r"!pod-template-generation", r"!pod-template-hash", r"!controller-revision-hash", r"!annotation.*",
    r"!controller-uid", r"!etcd_node",
)
#: the reserved identities each entity name selects
ENTITIES = {
    "all": None,
    "world": {"world"}, "world-ipv4": {"world"},
    "cluster": {"cluster-pod", "unmanaged", "host", "remote-node", "init", "health", "kube-apiserver", "ingress"},
    "host": {"host"}, "remote-node": {"remote-node"}, "unmanaged": {"unmanaged"},
    "kube-apiserver": {"kube-apiserver"}, "health": {"health"}, "init": {"init"}, "ingress": {"ingress"},
}


@dataclass(frozen=True)
class Identity:
    """``kinds``: reserved identities it carries (``cluster-pod`` for a managed pod); ``labels``:
    the label identity of a managed pod, else empty; ``ip``: the address on the packet."""

    kinds: frozenset[str]
    ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    pod: Obj | None = None

    @property
    def is_world(self) -> bool:
        return "world" in self.kinds

    def entity(self, name: str) -> bool:
        wanted = ENTITIES.get(name, set())
        return wanted is None or bool(self.kinds & wanted)


def _pattern(text: str) -> tuple[re.Pattern[str], bool]:
    """``[!][source:][!]regex`` -> (regex, ignore?)."""
    ignore = text.startswith("!")
    text = text.lstrip("!")
    if re.match(r"^[a-z0-9-]+:", text):
        text = text.split(":", 1)[1]
    ignore = ignore or text.startswith("!")
    return re.compile(text.lstrip("!")), ignore


@lru_cache(maxsize=64)
def _patterns(extra: str) -> tuple[tuple[tuple[re.Pattern[str], bool], ...], bool]:
    user = tuple(_pattern(p) for p in extra.split())
    return tuple(_pattern(p) for p in DEFAULT_PATTERNS) + user, any(not ignore for _, ignore in user)


@lru_cache(maxsize=65536)
def relevant(key: str, extra: str = "") -> bool:
    """Whether Cilium keeps label ``key`` in identities, under the agent's ``labels`` option ``extra``."""
    patterns, allow_list = _patterns(extra)
    included = ignored = 0
    for regex, ignore in patterns:
        m = regex.match(key)
        if m is None:
            continue
        if ignore:
            ignored = m.end() if ignored == 0 else min(ignored, m.end())
        else:
            included = max(included, m.end())
    return (not allow_list and ignored == 0) or included > ignored


def pod_identity(pod: Obj, ns_labels: Mapping[str, str], extra: str = "") -> Identity:
    meta, spec = pod["metadata"], pod.get("spec") or {}
    ns = meta.get("namespace", "")
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if relevant(k, extra)}
    labels.update({f"{NS_LABELS}{k}": v for k, v in ns_labels.items()})
    labels.update({NAMESPACE: ns, SERVICE_ACCOUNT: spec.get("serviceAccountName") or "default", CLUSTER: "default"})
    return Identity(frozenset({"cluster-pod"}), (pod.get("status") or {}).get("podIP") or "", labels, pod)


def reserved(ip: str, *kinds: str) -> Identity:
    return Identity(frozenset(kinds), ip)


def selector_matches(selector: Obj, ident: Identity) -> bool:
    """A Cilium EndpointSelector (a LabelSelector whose keys may carry a source prefix: ``k8s:``,
    ``any:`` or none match the label identity, ``reserved:NAME`` the reserved identity NAME)."""
    labels: Mapping[str, str] = ident.labels

    def value(key: str) -> str | None:
        source, _, bare = key.partition(":") if ":" in key else ("any", "", key)
        if source == "reserved":
            return "" if bare in ident.kinds else None
        if source in ("k8s", "any"):
            return labels.get(bare)
        return None

    for key, want in (selector.get("matchLabels") or {}).items():
        if value(key) != str(want):
            return False
    for expr in selector.get("matchExpressions") or []:
        have, op, values = value(expr.get("key") or ""), expr.get("operator"), expr.get("values") or []
        if op == "In" and have not in values:
            return False
        if op == "NotIn" and have is not None and have in values:
            return False
        if op == "Exists" and have is None:
            return False
        if op == "DoesNotExist" and have is not None:
            return False
    return True


def has_key(selector: Obj, bare: str) -> bool:
    keys = list(selector.get("matchLabels") or {}) + [e.get("key") or "" for e in selector.get("matchExpressions") or []]
    return any(k.split(":", 1)[-1] == bare for k in keys)
