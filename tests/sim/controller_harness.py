"""A store, world and controllers without the API layer or node runtime, for controller tests.

``Harness`` registers the resource types the controllers touch and runs a minimal kubelet
(bound pods become Running, then Ready; gracefully deleted pods go) so each controller
can be tested on its own, fast and deterministically.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from typing import Any

from migrator.sim.builder import build_cluster
from migrator.sim.config import Latencies, SimConfig
from migrator.sim.controllers import install_controllers
from migrator.sim.controllers.coalesce import MAX_BACKOFF
from migrator.sim.controllers.matching import pod_is_terminating
from migrator.sim.store import Event, ResourceType, Store
from migrator.sim.world import World

Obj = dict[str, Any]
FINISH = "test.sim/finish"  # this harness's kubelet ends a pod so annotated in that phase

TYPES = [
    ResourceType("", "nodes", "Node", False, True),
    ResourceType("", "pods", "Pod", True, True),
    ResourceType("", "namespaces", "Namespace", False, True),
    ResourceType("", "services", "Service", True, True),
    ResourceType("", "endpoints", "Endpoints", True, False),
    ResourceType("", "configmaps", "ConfigMap", True, False),
    ResourceType("apps", "daemonsets", "DaemonSet", True, True),
    ResourceType("apps", "deployments", "Deployment", True, True),
    ResourceType("apps", "replicasets", "ReplicaSet", True, True),
    ResourceType("apps", "controllerrevisions", "ControllerRevision", True, False),
    ResourceType("batch", "jobs", "Job", True, True),
    ResourceType("policy", "poddisruptionbudgets", "PodDisruptionBudget", True, True),
    ResourceType("networking.k8s.io", "networkpolicies", "NetworkPolicy", True, False),
    ResourceType("crd.projectcalico.org", "ippools", "IPPool", False, False, custom=True),
    ResourceType("crd.projectcalico.org", "felixconfigurations", "FelixConfiguration", False, False, custom=True),
    ResourceType("crd.projectcalico.org", "networkpolicies", "NetworkPolicy", True, False, custom=True),
    ResourceType("cilium.io", "ciliumnodeconfigs", "CiliumNodeConfig", True, False, custom=True),
]

FAST = Latencies(schedule=0.0, sandbox=0.0, ready=0.0, terminate=0.0, agent_start=0.0, calico_start=0.0,
                 node_action=0.0, controller=0.0)


class Harness:
    def __init__(self, *, seed: int = 1, config: SimConfig | None = None, ready: bool = True) -> None:
        self.config = config or SimConfig(nodes=4, latencies=FAST)
        self.store = Store()
        for t in TYPES:
            self.store.register(t)
        self.store.add_index("pods", "nodeName", lambda o: (o.get("spec") or {}).get("nodeName"))
        self.world = World(self.store, seed=seed, time_scale=1.0)
        self.controllers = install_controllers(self.world, self.config)
        self.ready_pods = ready
        self.unready: set[str] = set()  # pod names the kubelet keeps NotReady
        self._ips = itertools.count(10)
        self.world.on("pods", self._kubelet)
        self.world.start()

    # a minimal kubelet: Running with an IP, Ready unless told otherwise; graceful deletes complete
    def _kubelet(self, event: Event) -> None:
        pod = event.obj
        if event.type == "DELETED" or not pod["spec"].get("nodeName"):
            return
        meta = pod["metadata"]
        if pod_is_terminating(pod):
            self.store.delete("pods", meta["namespace"], meta["name"])
            return
        status = pod.get("status") or {}
        if (meta.get("annotations") or {}).get(FINISH) and status.get("phase") not in ("Succeeded", "Failed"):
            outcome = meta["annotations"][FINISH]
            self.store.mutate("pods", meta["namespace"], meta["name"],
                              lambda d: d.setdefault("status", {}).update(phase=outcome), subresource="status")
            return
        want_ready = self.ready_pods and meta["name"] not in self.unready
        if status.get("phase") in ("Succeeded", "Failed"):
            return
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
        if status.get("phase") == "Running" and ready == want_ready:
            return
        ip = status.get("podIP") or f"10.0.{next(self._ips) // 250}.{next(self._ips) % 250}"

        def run(draft: Obj) -> None:
            st = draft.setdefault("status", {})
            st.update(phase="Running", podIP=ip, podIPs=[{"ip": ip}])
            conds = [c for c in st.get("conditions") or [] if c["type"] != "Ready"]
            conds.append({"type": "Ready", "status": "True" if want_ready else "False"})
            st["conditions"] = conds

        self.store.mutate("pods", meta["namespace"], meta["name"], run, subresource="status")

    def set_ready(self, name: str, ready: bool) -> None:
        (self.unready.discard if ready else self.unready.add)(name)
        for pod in self.store.list("pods", predicate=lambda p: p["metadata"]["name"] == name):
            self.world.call_soon(lambda p=pod: self._kubelet(Event(0, "MODIFIED", "pods", self.store.get(
                "pods", p["metadata"]["namespace"], p["metadata"]["name"]))))

    def node(self, name: str, *, labels: dict[str, str] | None = None, taints: list[Obj] | None = None,
             ready: bool = True, pods: int = 110, unschedulable: bool = False) -> Obj:
        return self.store.create("nodes", {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
            "spec": {"taints": taints or [], **({"unschedulable": True} if unschedulable else {})},
            "status": {"allocatable": {"pods": str(pods)},
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})

    def set_node(self, name: str, fn: Any) -> None:
        self.store.mutate("nodes", None, name, fn)
        self.store.mutate("nodes", None, name, fn, subresource="status")

    def build(self, scenario: str = "default", **shape: Any) -> None:
        from migrator.sim.scenarios import get_scenario
        chosen = get_scenario(scenario)
        self.config = chosen.apply_config(self.config)
        build_cluster(self.store, self.config, scenario=scenario, seed=1,
                      shape=dataclasses.replace(chosen.shape, **shape))
        for n in self.store.list("nodes"):
            self.store.mutate("nodes", None, n["metadata"]["name"], _mark_ready, subresource="status")

    def settle(self, timeout: float = 5.0) -> None:
        # A throttled controller flush may be due up to MAX_BACKOFF later on a loaded
        # machine; timers further out (PDB expiry, Job TTL) are what tests wait on themselves.
        horizon = MAX_BACKOFF + 0.05
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.world.settle(timeout=timeout, horizon=horizon):
                time.sleep(0.01)
                if self.world.settle(timeout=timeout, horizon=horizon):
                    return
        raise AssertionError("world did not settle")

    def pods(self, ns: str | None = None, **labels: str) -> list[Obj]:
        return [p for p in self.store.list("pods", ns)
                if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def stop(self) -> None:
        self.world.stop()
        assert not self.world.errors, self.world.errors[0]


def _mark_ready(draft: Obj) -> None:
    conds = [c for c in draft["status"].get("conditions") or [] if c["type"] != "Ready"]
    conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady"})
    draft["status"]["conditions"] = conds
