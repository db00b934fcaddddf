"""Pure predicates the simulated controllers share: node affinity, taints, pod state.

Node selector terms (required node affinity, including ``matchFields`` on
``metadata.name``; label selectors are ``sim.selectors``'s), taints against
tolerations, and the questions every controller asks about a pod (is it Ready? still
active? who is its controller?). They live in one module so the scheduler, the DaemonSet
controller and the PDB controller answer them identically, as the real components do
through the same apimachinery helpers.

Nothing here touches the store: every function takes plain dicts and returns a value.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

Obj = dict[str, Any]

# Random suffixes as apimachinery's rand.String renders them (no vowels, no confusables).
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

# The tolerations the DaemonSet controller adds to every daemon pod (k8s.io/kubernetes
# pkg/controller/daemon/util.AddOrUpdateDaemonPodTolerations).
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_DAEMON_TOLERATION: Obj = {
    "key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(length))


def template_hash(template: Obj, *, salt: int = 0) -> str:
    """A stable short hash of a pod template (the ``pod-template-hash`` label value)."""
    tpl = json.loads(json.dumps(template, sort_keys=True))
    tpl.get("metadata", {}).get("labels", {}).pop("pod-template-hash", None)
    if tpl.get("metadata", {}).get("creationTimestamp", "") is None:   # a typed template's zero time: no field
        del tpl["metadata"]["creationTimestamp"]
    digest = hashlib.sha256((json.dumps(tpl, sort_keys=True) + f"/{salt}").encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(10):
        value, rem = divmod(value, len(_ALPHABET))
        out.append(_ALPHABET[rem])
    return "".join(out)


# ---------------------------------------------------------------------------- node affinity
def _expression_matches(values: dict[str, str], expr: Obj) -> bool:
    key, op = expr.get("key", ""), expr.get("operator", "")
    wanted = expr.get("values") or []
    present = key in values
    if op == "In":
        return present and values[key] in wanted
    if op == "NotIn":
        return not present or values[key] not in wanted
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            have, limit = int(values[key]), int(wanted[0])
        except (KeyError, IndexError, ValueError):
            return False
        return have > limit if op == "Gt" else have < limit
    return False


def node_term_matches(term: Obj, node: Obj) -> bool:
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = node["metadata"].get("labels") or {}
    if not all(_expression_matches(labels, e) for e in exprs):
        return False
    field_values = {"metadata.name": node["metadata"]["name"]}
    return all(_expression_matches(field_values, e) for e in fields)


def named_nodes(pod_spec: Obj) -> frozenset[str] | None:
    """The only nodes the pod's required node affinity can match, by ``matchFields`` on
    ``metadata.name`` (how the DaemonSet controller pins a pod to its node), or None when some
    term does not name its nodes. This is kube-scheduler's NodeAffinity PreFilter: its result's
    node names are the union over the terms, each term's the intersection of its ``In`` lists,
    and the scheduler then filters those nodes only. A narrowing, never a verdict: the nodes
    named still go through every filter."""
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    terms = (required or {}).get("nodeSelectorTerms") or []
    if not terms:
        return None
    names: set[str] = set()
    for term in terms:
        named: set[str] | None = None
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                values = set(field.get("values") or [])
                named = values if named is None else named & values
        if named is None:
            return None
        names |= named
    return frozenset(names)


def node_affinity_matches(pod_spec: Obj, node: Obj) -> bool:
    """``nodeSelector`` and required node affinity (terms ORed, expressions ANDed)."""
    labels = node["metadata"].get("labels") or {}
    for k, v in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(node_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


# ---------------------------------------------------------------------------- taints
def toleration_tolerates(toleration: Obj, taint: Obj) -> bool:
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    op = toleration.get("operator") or "Equal"
    key = toleration.get("key") or ""
    if op == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def node_is_ready(node: Obj) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def effective_taints(node: Obj) -> list[Obj]:
    """The node's taints plus those the node lifecycle controller would add.

    A cordoned node carries ``node.kubernetes.io/unschedulable:NoSchedule`` and a node whose
    Ready condition is not True carries ``node.kubernetes.io/not-ready:NoSchedule``; the
    simulated cluster derives them instead of writing them, so Node objects only show what
    users and the kubelet wrote.
    """
    taints = list((node.get("spec") or {}).get("taints") or [])
    if (node.get("spec") or {}).get("unschedulable"):
        taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
    if not node_is_ready(node):
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    return taints


def untolerated_taints(tolerations: list[Obj], taints: list[Obj], effects: tuple[str, ...]) -> list[Obj]:
    return [t for t in taints if t.get("effect") in effects
            and not any(toleration_tolerates(tol, t) for tol in tolerations)]


# ---------------------------------------------------------------------------- pods
def selector_matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    """A Service's (or a ReplicationController's) equality-based selector against ``labels``."""
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def pod_is_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_is_terminating(pod: Obj) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def pod_is_finished(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_is_active(pod: Obj) -> bool:
    """Counted by its controller: not being deleted and not finished."""
    return not pod_is_terminating(pod) and not pod_is_finished(pod)


def pod_is_available(pod: Obj) -> bool:
    return pod_is_active(pod) and pod_is_ready(pod)


def controller_ref(obj: Obj) -> Obj | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def controller_uid(obj: Obj) -> str | None:
    ref = controller_ref(obj)
    return ref.get("uid") if ref else None


def owner_reference(owner: Obj, *, api_version: str, kind: str) -> Obj:
    return {"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def set_condition(conditions: list[Obj], ctype: str, status: str, reason: str, message: str,
                  now: str, *, probe_times: bool = False) -> list[Obj]:
    """Upsert one condition, keeping ``lastTransitionTime`` unless the status flips."""
    out = []
    found = False
    for c in conditions:
        if c.get("type") != ctype:
            out.append(c)
            continue
        found = True
        changed = c.get("status") != status
        new = dict(c, status=status, reason=reason, message=message)
        if changed:
            new["lastTransitionTime"] = now
        if probe_times and (changed or c.get("reason") != reason):
            new["lastUpdateTime"] = now
        out.append(new)
    if not found:
        new = {"type": ctype, "status": status, "reason": reason, "message": message,
               "lastTransitionTime": now}
        if probe_times:
            new["lastUpdateTime"] = now
        out.append(new)
    return out
