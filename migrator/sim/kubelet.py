"""Simulated kubelets: pod sandboxes, their network, readiness, termination and the Node status.

For each pod bound to a node (``spec.nodeName``):
1. after ``latencies.sandbox`` the sandbox is created: a hostNetwork pod takes the node IP;
   any other pod gets its network from the **first CNI config file by name** in the node's
   ``/etc/cni/net.d`` (``05-cilium.conflist`` beats ``10-calico.conflist``; ``*.cilium_bak`` is
   not a config). No config, or the CNI's agent not running → the sandbox fails and is retried,
   the pod stays ``ContainerCreating``. Calico pods get an IP from the node's IPAM block and the
   ``cni.projectcalico.org/*`` annotations; Cilium pods an IP from the node's podCIDR and a
   CiliumEndpoint;
2. the pod is ``Running``; ``latencies.ready`` later it is Ready (an agent pod when its agent is
   healthy; a node-action pod instead runs its action and ends ``Succeeded``);
3. a pod marked for deletion is stopped after ``latencies.terminate``: its IP is released and
   the kubelet removes it from the API.
A pod keeps its IP and network until it is recreated — which is why the migration recycles pods.

A sandbox that fails for a reason of its node (NotReady, no CNI config, its agent not running or
not healthy, no Calico pool) waits for that node to change: whatever changes those (an agent
starting or stopping, a node action, readiness, an IPPool) calls ``wake(node)``, and the node's
waiting pods are tried again ``RETRY`` later. Retrying each of them every ``RETRY`` instead made
the kubelets poll: at 2,000 nodes and a large time scale, three quarters of the worker's time
went to pods retrying while their node's calico-node waited its turn behind them. A sandbox that
fails for want of an address (the node's IPAM range is full) is still retried on its own.

The Node's ``Ready`` condition is posted when the node appears, and follows injected faults.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from migrator.sim import node_actions
from migrator.sim.agents import calico, cilium
from migrator.sim.errors import ApiError, NotFound
from migrator.sim.store import now_rfc3339

if TYPE_CHECKING:
    from migrator.sim.fleet import NodeFleet

Obj = dict[str, Any]
RETRY = 0.25
CALICO_POOLS = "crd.projectcalico.org/ippools"


def is_agent(pod: Obj, app: str) -> bool:
    return (pod["metadata"].get("labels") or {}).get("k8s-app") == app


class Kubelets:
    """Pod lifecycle on every simulated node."""

    def __init__(self, fleet: NodeFleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.world = fleet.world
        self.lat = fleet.config.latencies
        self._starting: set[str] = set()
        self._stopping: set[str] = set()
        self._parked: dict[str, dict[tuple[str, str, str], None]] = {}   # node -> pods waiting for it
        self.world.on(CALICO_POOLS, lambda _: self.wake_all())

    def wake(self, node: str) -> None:
        """Something that decides ``node``'s sandboxes changed: try its waiting pods again."""
        parked = self._parked.pop(node, None)
        if parked:
            def retry() -> None:
                for key in parked:
                    self._sandbox(*key)
            self.world.call_later(RETRY, retry)

    def wake_all(self) -> None:
        for node in list(self._parked):
            self.wake(node)

    def _park(self, node: str, ns: str, name: str, uid: str) -> None:
        self._parked.setdefault(node, {})[(ns, name, uid)] = None

    # ------------------------------------------------------------------ events
    def on_pod(self, event: Any) -> None:
        pod = event.obj
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid, node = meta["uid"], spec.get("nodeName")
        if event.type == "DELETED":
            self._forget(pod)
            return
        if not node or node not in self.fleet.runtimes:
            return
        if meta.get("deletionTimestamp"):
            if uid not in self._stopping:
                self._stopping.add(uid)
                grace = 0.0 if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") else self.lat.terminate
                self.world.call_later(grace, lambda: self._terminate(meta.get("namespace", ""), meta["name"], uid))
            return
        status = pod.get("status") or {}
        if status.get("phase") == "Pending" and uid not in self._starting:
            self._starting.add(uid)
            self.world.call_later(self.lat.sandbox, lambda: self._sandbox(meta.get("namespace", ""), meta["name"], uid))

    # ------------------------------------------------------------------ sandbox
    def _current(self, ns: str, name: str, uid: str) -> Obj | None:
        pod = self.store.try_get("pods", ns, name)
        if pod is None or pod["metadata"]["uid"] != uid or pod["metadata"].get("deletionTimestamp"):
            return None
        return pod

    def _sandbox(self, ns: str, name: str, uid: str) -> None:
        pod = self._current(ns, name, uid)
        if pod is None:
            self._starting.discard(uid)
            return
        node = pod["spec"]["nodeName"]
        rt = self.fleet.runtimes.get(node)
        if rt is None:
            self._starting.discard(uid)
            return
        if not self.fleet.node_ready(node):
            self._park(node, ns, name, uid)
            return
        annotations: dict[str, str] = {}
        ip: str | None
        network: str | None
        if pod["spec"].get("hostNetwork"):
            ip, network = rt.ip, "host"
        else:
            conf = rt.active_cni()
            network = rt.network_of(conf)
            ip = None
            agent_ready = False
            if network == "calico" and rt.calico.running:
                pool = self._calico_pool()
                pod_cidr = self._host_local_range(node)
                if pod_cidr:
                    agent_ready = True
                    ip = self.fleet.host_local_ipam.allocate(node, pod_cidr)
                elif pool:
                    agent_ready = True
                    ip = self.fleet.calico_ipam.allocate(node, pool[0], pool[1])
                if ip:
                    annotations = {"cni.projectcalico.org/podIP": f"{ip}/32", "cni.projectcalico.org/podIPs": f"{ip}/32",
                                   "cni.projectcalico.org/containerID": uid.replace("-", "")[:32]}
            elif network == "cilium" and rt.cilium.running and rt.cilium.healthy:
                agent_ready = True
                ip = self.fleet.cilium_ipam.allocate(node)
            if ip is None or network is None:
                reason = "no CNI configuration file in /etc/cni/net.d" if conf is None else \
                    f"plugin type={network!r} failed (add): agent not ready on {node}"
                self._set_waiting(pod, "ContainerCreating", f"NetworkPluginNotReady: {reason}")
                if agent_ready:   # the node's range is full: retry until an address is released
                    self.world.call_later(RETRY, lambda: self._sandbox(ns, name, uid))
                else:
                    self._park(node, ns, name, uid)
                return
        self._starting.discard(uid)
        if annotations:
            self.store.mutate("pods", ns, name, lambda o: o["metadata"].setdefault("annotations", {}).update(annotations))
        self.fleet.record_ip(ip, pod, network)
        if network == "cilium":
            self._create_endpoint(pod, ip, node)
        now = now_rfc3339()

        def running(o: Obj) -> None:
            st = o.setdefault("status", {})
            st.update(phase="Running", podIP=ip, podIPs=[{"ip": ip}], hostIP=rt.ip, hostIPs=[{"ip": rt.ip}],
                      startTime=now)
            st["conditions"] = [
                {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "ContainersNotReady"},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now, "reason": "ContainersNotReady"},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}]
            st["containerStatuses"] = [{
                "name": c["name"], "image": c.get("image", ""), "imageID": f"sim://{c.get('image', '')}",
                "containerID": f"containerd://{uid.replace('-', '')}{i}", "ready": False, "started": True,
                "restartCount": 0, "state": {"running": {"startedAt": now}}}
                for i, c in enumerate(o["spec"].get("containers") or [])]
        self.store.mutate("pods", ns, name, running, subresource="status")
        self._after_start(pod, rt)

    def _after_start(self, pod: Obj, rt: Any) -> None:
        meta = pod["metadata"]
        ns, name, uid = meta.get("namespace", ""), meta["name"], meta["uid"]
        if node_actions.action_of(pod):
            self.world.call_later(self.lat.node_action, lambda: self._run_action(ns, name, uid))
        elif is_agent(pod, "calico-node") and ns == "kube-system":
            calico.start(rt, pod)
            self.wake(rt.name)
            self.world.call_later(self.lat.calico_start, lambda: self._calico_healthy(rt, ns, name, uid))
        elif is_agent(pod, "cilium") and ns == "kube-system":
            config, sources = self.fleet.resolve_cilium_config(rt.name, pod)
            cilium.start(rt, uid, config, sources)
            self.fleet.ensure_cilium_node(rt.name, config)
            self.wake(rt.name)
            self.world.call_later(self.lat.agent_start, lambda: self._cilium_healthy(rt, ns, name, uid))
        else:
            self.world.call_later(self.lat.ready, lambda: self.set_ready(ns, name, uid, True))

    def _calico_healthy(self, rt: Any, ns: str, name: str, uid: str) -> None:
        calico.become_healthy(rt)
        self.wake(rt.name)
        self.set_ready(ns, name, uid, rt.calico.healthy)

    def _cilium_healthy(self, rt: Any, ns: str, name: str, uid: str) -> None:
        cilium.become_healthy(rt, uid)
        self.wake(rt.name)
        self.set_ready(ns, name, uid, rt.cilium.healthy and rt.cilium.pod_uid == uid)

    def set_ready(self, ns: str, name: str, uid: str, ready: bool, *, waiting: str | None = None) -> None:
        pod = self._current(ns, name, uid)
        if pod is None or (pod.get("status") or {}).get("phase") != "Running":
            return
        if ready and not self.fleet.node_ready(pod["spec"]["nodeName"]):
            ready = False
        now = now_rfc3339()
        flag = "True" if ready else "False"

        def update(o: Obj) -> None:
            st = o.setdefault("status", {})
            for cond in st.get("conditions") or []:
                if cond["type"] in ("Ready", "ContainersReady") and cond["status"] != flag:
                    cond.update(status=flag, lastTransitionTime=now)
                    cond.pop("reason", None) if ready else cond.update(reason="ContainersNotReady")
            for cs in st.get("containerStatuses") or []:
                cs["ready"] = ready
                if waiting:
                    cs["restartCount"] = int(cs.get("restartCount", 0)) + 1
                    cs["state"] = {"waiting": {"reason": waiting, "message": "back-off restarting failed container"}}
                elif "waiting" in (cs.get("state") or {}):
                    cs["state"] = {"running": {"startedAt": now}}
        self.store.mutate("pods", ns, name, update, subresource="status")

    def _set_waiting(self, pod: Obj, reason: str, message: str) -> None:
        """Every container of ``pod`` waiting for ``reason``; no write when they already are (a
        sandbox retried every quarter second must not copy the pod each time to learn that)."""
        def waiting(o: Obj) -> list[Obj]:
            return [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                     "started": False, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}
                    for c in o["spec"].get("containers") or []]

        if "containerStatuses" in (pod.get("status") or {}) and pod["status"]["containerStatuses"] == waiting(pod):
            return

        def update(o: Obj) -> None:
            o.setdefault("status", {})["containerStatuses"] = waiting(o)
        meta = pod["metadata"]
        try:
            self.store.mutate("pods", meta.get("namespace", ""), meta["name"], update, subresource="status")
        except NotFound:
            pass

    def _run_action(self, ns: str, name: str, uid: str) -> None:
        pod = self._current(ns, name, uid)
        if pod is None:
            return
        rt = self.fleet.runtimes.get(pod["spec"]["nodeName"])
        ok, message = node_actions.apply(rt, node_actions.action_of(pod) or "") if rt else (False, "node gone")
        if rt:
            self.wake(rt.name)
        phase = "Succeeded" if ok else "Failed"
        now = now_rfc3339()

        def finish(o: Obj) -> None:
            st = o.setdefault("status", {})
            st["phase"] = phase
            st["message"] = message
            for cond in st.get("conditions") or []:
                if cond["type"] in ("Ready", "ContainersReady"):
                    cond.update(status="False", reason="PodCompleted")
            for cs in st.get("containerStatuses") or []:
                cs.update(ready=False, started=False,
                          state={"terminated": {"exitCode": 0 if ok else 1, "reason": "Completed" if ok else "Error",
                                                "message": message, "finishedAt": now}})
        self.store.mutate("pods", ns, name, lambda o: o["metadata"].setdefault("annotations", {}).update(
            {"sim.migrator.io/log": message}))
        self.store.mutate("pods", ns, name, finish, subresource="status")
        self.fleet.release_ip(pod)

    # ------------------------------------------------------------------ termination
    def _terminate(self, ns: str, name: str, uid: str) -> None:
        self._stopping.discard(uid)
        pod = self.store.try_get("pods", ns, name)
        if pod is None or pod["metadata"]["uid"] != uid:
            return
        try:
            self.store.delete("pods", ns, name, uid=uid)
        except ApiError:
            return

    def _forget(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self._starting.discard(meta["uid"])
        self.fleet.release_ip(pod)
        node = (pod.get("spec") or {}).get("nodeName")
        rt = self.fleet.runtimes.get(node or "")
        if rt is not None and meta.get("namespace") == "kube-system":
            if is_agent(pod, "cilium"):
                cilium.stop(rt, meta["uid"])
            elif is_agent(pod, "calico-node"):
                calico.stop(rt)
            self.wake(rt.name)
        try:
            self.store.delete("cilium.io/ciliumendpoints", meta.get("namespace"), meta["name"])
        except NotFound:
            pass

    # ------------------------------------------------------------------ helpers
    def _host_local_range(self, node: str) -> str | None:
        """The node's ``spec.podCIDR`` when Calico's CNI config (``calico-config``
        ``cni_network_config``, which install-cni renders) uses host-local IPAM, else None."""
        cm = self.store.try_get("configmaps", "kube-system", "calico-config") or {}
        if '"host-local"' not in ((cm.get("data") or {}).get("cni_network_config") or ""):
            return None
        node_obj = self.store.try_get("nodes", None, node) or {}
        cidr = (node_obj.get("spec") or {}).get("podCIDR")
        return str(cidr) if cidr else None

    def _calico_pool(self) -> tuple[str, int] | None:
        for pool in self.store.list(CALICO_POOLS):
            spec = pool.get("spec") or {}
            if not spec.get("disabled") and spec.get("cidr"):
                return spec["cidr"], int(spec.get("blockSize") or 26)
        return None

    def _create_endpoint(self, pod: Obj, ip: str, node: str) -> None:
        meta = pod["metadata"]
        cep = {"apiVersion": "cilium.io/v2", "kind": "CiliumEndpoint",
               "metadata": {"name": meta["name"], "namespace": meta.get("namespace", ""),
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"],
                                                 "uid": meta["uid"]}]},
               "status": {"id": abs(hash(meta["uid"])) % 65000 + 1, "state": "ready",
                          "networking": {"node": self.fleet.runtimes[node].ip, "addressing": [{"ipv4": ip}]}}}
        try:
            self.store.create("cilium.io/ciliumendpoints", cep)
        except ApiError:
            pass
