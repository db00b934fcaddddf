"""The pods/eviction subresource: a delete that asks PodDisruptionBudgets first.

Follows the real API server's eviction REST handler:
* a pod that is already terminal (Succeeded/Failed), still Pending, or being deleted is
  evicted without consulting budgets;
* the pod's budgets are the PDBs of its namespace whose selector matches its labels; more
  than one is an error (500, as on a real server);
* a budget whose status was not computed for its current generation yet, or whose
  ``status.disruptionsAllowed`` is zero, refuses with 429 TooManyRequests and a
  ``DisruptionBudget`` cause;
* a Running pod that is not Ready is deleted without touching the budget when its
  ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow``, or (``IfHealthyBudget``, the default)
  when ``currentHealthy >= desiredHealthy > 0``: the application is not disrupted;
* otherwise the budget's ``disruptionsAllowed`` is decremented and the pod recorded in
  ``status.disruptedPods`` (the PDB controller counts it as unhealthy until it is gone) — in
  the same critical section as the pod's deletion — and the answer is 201 with a Status.
"""

from __future__ import annotations

from typing import Any

from migrator.sim.controllers.matching import pod_is_ready
from migrator.sim.errors import InternalError, TooManyRequests
from migrator.sim.operations import Target, delete
from migrator.sim.selectors import selects_or_not
from migrator.sim.store import Store, now_rfc3339

Obj = dict[str, Any]
PDB = "policy/poddisruptionbudgets"


def _blocked(message: str, cause: str) -> TooManyRequests:
    return TooManyRequests(message, details={"causes": [{"reason": "DisruptionBudget", "message": cause}]},
                           retry_after=None)


def evict(store: Store, pods: Target, body: Obj) -> Obj:
    options = (body or {}).get("deleteOptions") or {}
    with store.lock:
        pod = store.get("pods", pods.namespace, pods.name or "")
        meta, status = pod["metadata"], pod.get("status") or {}
        exempt = meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed", "Pending")
        if not exempt:
            budgets = [p for p in store.list(PDB, meta.get("namespace"))
                       if selects_or_not((p.get("spec") or {}).get("selector"), meta.get("labels"))]
            if len(budgets) > 1:
                raise InternalError("This pod has more than one PodDisruptionBudget, which the eviction "
                                    "subresource does not support.")
            if budgets and (pod_is_ready(pod) or not _lets_unready_go(budgets[0])):
                _consume(store, budgets[0], meta["name"])
        delete(store, pods, options, {})
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def _lets_unready_go(pdb: Obj) -> bool:
    spec, st = pdb.get("spec") or {}, pdb.get("status") or {}
    if spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    desired = int(st.get("desiredHealthy", 0))
    return desired > 0 and int(st.get("currentHealthy", 0)) >= desired


def _consume(store: Store, pdb: Obj, pod_name: str) -> None:
    st = pdb.get("status") or {}
    name = pdb["metadata"]["name"]
    if st.get("observedGeneration", 0) < pdb["metadata"].get("generation", 1):
        raise _blocked("Cannot evict pod as it would violate the pod's disruption budget.",
                       f"The disruption budget {name} is still being processed by the server.")
    if int(st.get("disruptionsAllowed", 0)) <= 0:
        raise _blocked("Cannot evict pod as it would violate the pod's disruption budget.",
                       f"The disruption budget {name} needs {st.get('desiredHealthy', 0)} healthy pods and has "
                       f"{st.get('currentHealthy', 0)} currently")

    def take(o: Obj) -> None:
        s = o.setdefault("status", {})
        s["disruptionsAllowed"] = int(s.get("disruptionsAllowed", 0)) - 1
        s.setdefault("disruptedPods", {})[pod_name] = now_rfc3339()

    store.mutate(PDB, pdb["metadata"]["namespace"], name, take, subresource="status")
