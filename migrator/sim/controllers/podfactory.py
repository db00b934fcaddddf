"""Pods from templates: what every workload controller creates, built the same way.

The real API server defaults a pod on create (``restartPolicy``, ``dnsPolicy``,
``schedulerName``, ``terminationGracePeriodSeconds``, ``status.phase: Pending``, and the
admission plugin's 300 s not-ready/unreachable ``NoExecute`` tolerations); the
simulated controllers write straight into the store, so the defaults are applied here.
Names are ``<owner>-<5 random chars>``, drawn from one seeded generator per owner name,
so a run replays with the same pod names from the same seed however the controllers'
work happens to interleave.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from migrator.sim.controllers.matching import random_suffix
from migrator.sim.errors import AlreadyExists, Conflict, NotFound
from migrator.sim.store import Store

Obj = dict[str, Any]

_SPEC_DEFAULTS: dict[str, Any] = {
    "restartPolicy": "Always",
    "dnsPolicy": "ClusterFirst",
    "schedulerName": "default-scheduler",
    "terminationGracePeriodSeconds": 30,
    "securityContext": {},
    "serviceAccountName": "default",
    "enableServiceLinks": True,
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0,
}


def pod_from_template(template: Obj, *, namespace: str, labels: dict[str, str] | None = None,
                      owner_ref: Obj | None = None, node_name: str | None = None) -> Obj:
    """A pod dict (without a name) from a ``PodTemplateSpec``, defaulted as the API would."""
    tpl = copy.deepcopy(template)
    meta = tpl.get("metadata") or {}
    spec = tpl.get("spec") or {}
    for key, value in _SPEC_DEFAULTS.items():
        spec.setdefault(key, copy.deepcopy(value))
    if "serviceAccount" not in spec:
        spec["serviceAccount"] = spec["serviceAccountName"]
    for c in spec.get("containers") or []:
        c.setdefault("imagePullPolicy", "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("resources", {})
    tolerations = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in (None, "", "NoExecute") for t in tolerations) \
                and {"operator": "Exists"} not in tolerations:
            tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    if node_name:
        spec["nodeName"] = node_name
    pod_meta: Obj = {"namespace": namespace, "labels": {**(meta.get("labels") or {}), **(labels or {})}}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    if owner_ref is not None:
        pod_meta["ownerReferences"] = [owner_ref]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort"}}


class PodNames:
    """Seeded suffix generators, one per ``(namespace, owner name)``."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._streams: dict[tuple[str, str], random.Random] = {}

    def stream(self, namespace: str, prefix: str) -> random.Random:
        key = (namespace, prefix)
        rng = self._streams.get(key)
        if rng is None:
            rng = self._streams[key] = random.Random(f"{self._seed}/{namespace}/{prefix}")
        return rng


def create_named(store: Store, names: PodNames, pod: Obj, prefix: str) -> Obj:
    """Create ``pod`` as ``<prefix>-<suffix>``, drawing a new suffix on a name collision."""
    rng = names.stream(pod["metadata"].get("namespace", ""), prefix)
    for _ in range(20):
        pod["metadata"]["name"] = f"{prefix}-{random_suffix(rng)}"
        try:
            return store.create("pods", pod)
        except AlreadyExists:
            continue
    raise AlreadyExists(f"no free pod name for prefix {prefix!r}")


def delete_pod(store: Store, pod: Obj) -> bool:
    """Delete a pod as the API server would: gracefully only when a kubelet must stop it.

    A pod that is bound to no node, or already finished, goes at once (the real pod
    strategy sets a zero grace period for both). Returns False when it was already gone.
    """
    meta = pod["metadata"]
    graceful = bool((pod.get("spec") or {}).get("nodeName")) and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
    try:
        store.delete("pods", meta.get("namespace"), meta["name"], graceful=graceful, uid=meta.get("uid"))
    except (NotFound, Conflict):
        return False
    return True
