"""The simulated nodes as a whole: per-node runtimes, kubelets, agents, IPAM, network, probes.

``NodeFleet`` is what the rest of the simulator talks to about nodes. It creates a
``NodeRuntime`` for every Node object, runs the kubelets (``kubelet.py``), keeps the address
book (pod IP → pod, network), answers the API server's pods/proxy hook through simulated
agnhost netexec pods, exposes the network model, and offers the fault knobs (agent crash
loop, node NotReady) and introspection (CNI files, reachability matrix) that scenarios and
tests use. All of it runs on the world's thread, driven by store events.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from migrator.sim.cilium_bgp_status import BgpNodeConfigs
from migrator.sim.config import SimConfig
from migrator.sim.errors import ApiError
from migrator.sim.ipam import CalicoIpam, CiliumIpam, HostLocalIpam
from migrator.sim.kubelet import Kubelets, is_agent
from migrator.sim.netexec import Netexec
from migrator.sim.network import APISERVER_PORT, MANAGED_APISERVER_IP, NetworkModel
from migrator.sim.node import NodeRuntime
from migrator.sim.store import Event, now_rfc3339
from migrator.sim.world import World

Obj = dict[str, Any]
CNC = "cilium.io/ciliumnodeconfigs"

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}


class NodeFleet:
    """Every simulated node's runtime state and behaviour."""

    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self.config = config
        self.runtimes: dict[str, NodeRuntime] = {}
        self._node_ips: dict[str, str] = {}   # node IP -> the first node (by arrival) holding it
        self.calico_ipam = CalicoIpam()
        self.cilium_ipam = CiliumIpam()
        self.host_local_ipam = HostLocalIpam()
        self.ip_index: dict[str, tuple[str, str, str, str]] = {}   # ip -> (ns, name, node, network)
        self._ip_of: dict[tuple[str, str], str] = {}                # (ns, name) -> its current ip
        self.kubelets = Kubelets(self)
        self.network = NetworkModel(self)
        self.netexec = Netexec(self)
        self.bgp_status = BgpNodeConfigs(self)
        world.on("nodes", self._on_node)
        world.on("pods", self.kubelets.on_pod)

    # ------------------------------------------------------------------ nodes
    def _on_node(self, event: Event) -> None:
        name = event.obj["metadata"]["name"]
        if event.type == "DELETED":
            if self.runtimes.pop(name, None) is not None:
                self._node_ips = {}
                for rt in self.runtimes.values():
                    self._node_ips.setdefault(rt.ip, rt.name)
            return
        if name not in self.runtimes:
            addrs = {a.get("type"): a.get("address") for a in (event.obj.get("status") or {}).get("addresses") or []}
            self.runtimes[name] = NodeRuntime(name=name, ip=addrs.get("InternalIP") or "")
            self._node_ips.setdefault(self.runtimes[name].ip, name)
            self._post_node_status(name)
            if CONTROL_PLANE_LABEL in (event.obj["metadata"].get("labels") or {}) \
                    or self.store.try_get("endpoints", "default", "kubernetes") is None:
                self._reconcile_apiserver_endpoints()   # only a control-plane node moves them
            for pod in self.store.list("pods", index=("nodeName", name)):
                self.kubelets.on_pod(Event(0, "MODIFIED", "pods", pod))

    def _reconcile_apiserver_endpoints(self) -> None:
        """Point ``default/kubernetes`` at the control-plane nodes (the apiserver's endpoint reconciler)."""
        ips = sorted(rt.ip for n, rt in self.runtimes.items()
                     if CONTROL_PLANE_LABEL in
                     ((self.store.try_get("nodes", None, n) or {}).get("metadata", {}).get("labels") or {}))
        ips = ips or [MANAGED_APISERVER_IP]
        current = self.store.try_get("endpoints", "default", "kubernetes")
        if current is not None and [a.get("ip") for s in current.get("subsets") or []
                                    for a in s.get("addresses") or []] == ips:
            return
        body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "namespace": "default"},
                "subsets": [{"addresses": [{"ip": ip} for ip in ips],
                             "ports": [{"name": "https", "port": APISERVER_PORT, "protocol": "TCP"}]}]}
        if self.store.try_get("endpoints", "default", "kubernetes") is None:
            self.store.create("endpoints", body)
        else:
            self.store.mutate("endpoints", "default", "kubernetes", lambda o: o.update(subsets=body["subsets"]))

    def node_at(self, ip: str) -> str | None:
        """The node whose address is ``ip`` (a node's InternalIP, fixed when it joined), else None."""
        return self._node_ips.get(ip)

    def is_apiserver(self, ip: str, port: int) -> bool:
        ep = self.store.try_get("endpoints", "default", "kubernetes") or {}
        return port == APISERVER_PORT and any(a.get("ip") == ip for s in ep.get("subsets") or []
                                              for a in s.get("addresses") or [])

    def node_ready(self, node: str) -> bool:
        rt = self.runtimes.get(node)
        return rt is not None and not rt.forced_not_ready

    def _post_node_status(self, node: str) -> None:
        rt = self.runtimes.get(node)
        if rt is None:
            return
        ready = not rt.forced_not_ready
        now = now_rfc3339()

        def status(o: Obj) -> None:
            st = o.setdefault("status", {})
            conds = [c for c in st.get("conditions") or [] if c.get("type") != "Ready"]
            old: Obj = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), {})
            flag = "True" if ready else "Unknown"
            since = old.get("lastTransitionTime") if old.get("status") == flag else now
            conds.append({"type": "Ready", "status": flag, "lastHeartbeatTime": now, "lastTransitionTime": since,
                          "reason": "KubeletReady" if ready else "NodeStatusUnknown",
                          "message": "kubelet is posting ready status" if ready else "Kubelet stopped posting node status."})
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure"):
                if not any(c.get("type") == t for c in conds):
                    conds.insert(0, {"type": t, "status": "False", "lastHeartbeatTime": now,
                                     "lastTransitionTime": now, "reason": f"KubeletHasNo{t}"})
            st["conditions"] = conds

        def taints(o: Obj) -> None:
            spec = o.setdefault("spec", {})
            rest = [t for t in spec.get("taints") or [] if t.get("key") != NOT_READY_TAINT["key"]]
            if not ready:
                rest.append(dict(NOT_READY_TAINT, timeAdded=now))
            if rest:
                spec["taints"] = rest
            else:
                spec.pop("taints", None)
        try:
            self.store.mutate("nodes", None, node, status, subresource="status")
            self.store.mutate("nodes", None, node, taints)
        except ApiError:
            return

    # ------------------------------------------------------------------ addresses
    def record_ip(self, ip: str, pod: Obj, network: str) -> None:
        """The pod's sandbox got ``ip``. A new sandbox of a pod that had one (its old sandbox torn
        down, e.g. when the node's CNI agent restarted) releases the old sandbox's address, as the
        CNI DEL of that sandbox does."""
        if network != "host":
            meta = pod["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            old = self._ip_of.get(key)
            if old is not None and old != ip:
                self._release(old, key)
            self.ip_index[ip] = (key[0], key[1], pod["spec"]["nodeName"], network)
            self._ip_of[key] = ip

    def release_ip(self, pod: Obj) -> None:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or (pod.get("spec") or {}).get("hostNetwork"):
            return
        self._release(ip, (pod["metadata"].get("namespace", ""), pod["metadata"]["name"]))

    def _release(self, ip: str, key: tuple[str, str]) -> None:
        ref = self.ip_index.get(ip)
        if ref and (ref[0], ref[1]) == key:
            del self.ip_index[ip]
            if self._ip_of.get(key) == ip:
                del self._ip_of[key]
            if ref[3] == "cilium":
                self.cilium_ipam.release(ip)
            else:
                self.calico_ipam.release(ip)
                self.host_local_ipam.release(ip)

    def cilium_host_ip(self, node: str) -> str | None:
        block = self.cilium_ipam.pod_cidrs.get(node)
        return str(block.cidr.network_address + 1) if block else None

    # ------------------------------------------------------------------ cilium
    def resolve_cilium_config(self, node: str, pod: Obj) -> tuple[dict[str, str], list[str]]:
        from migrator.sim.agents.cilium import resolve_config
        ns = pod["metadata"].get("namespace", "kube-system")
        cm = self.store.try_get("configmaps", ns, "cilium-config")
        node_obj = self.store.try_get("nodes", None, node) or {"metadata": {}}
        return resolve_config((cm or {}).get("data") or {}, node_obj["metadata"].get("labels") or {},
                              self.store.list(CNC, ns), ns)

    def ensure_cilium_node(self, node: str, config: dict[str, str]) -> None:
        pool = config.get("cluster-pool-ipv4-cidr") or self.config.cilium_pool
        mask = int(config.get("cluster-pool-ipv4-mask-size") or self.config.cilium_mask_size)
        cidr = self.cilium_ipam.pod_cidr(node, pool, mask)
        rt = self.runtimes[node]
        obj = {"apiVersion": "cilium.io/v2", "kind": "CiliumNode",
               "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}},
               "spec": {"addresses": [{"type": "InternalIP", "ip": rt.ip}],
                        "ipam": {"podCIDRs": [cidr] if cidr else []}}}
        if self.store.try_get("cilium.io/ciliumnodes", None, node) is None:
            try:
                self.store.create("cilium.io/ciliumnodes", obj)
            except ApiError:
                pass

    # ------------------------------------------------------------------ faults
    def crash_agent(self, node: str, agent: str = "cilium", crashloop: bool = True) -> None:
        """Make ``agent`` crash-loop on ``node`` (``crashloop=False`` heals it)."""
        def apply() -> None:
            rt = self.runtimes[node]
            state = rt.cilium if agent == "cilium" else rt.calico
            state.crashloop = crashloop
            if crashloop:
                state.healthy = False
            elif state.running:
                state.healthy = True
            self.kubelets.wake(node)
            app = "cilium" if agent == "cilium" else "calico-node"
            for pod in self.store.list("pods", index=("nodeName", node)):
                if is_agent(pod, app) and not pod["metadata"].get("deletionTimestamp"):
                    meta = pod["metadata"]
                    self.kubelets.set_ready(meta["namespace"], meta["name"], meta["uid"], not crashloop,
                                            waiting="CrashLoopBackOff" if crashloop else None)
        if node not in self.runtimes:
            raise KeyError(f"unknown node {node!r}")
        self.world.call_soon(apply)

    def set_node_ready(self, node: str, ready: bool) -> None:
        """Make ``node`` NotReady (its pods stop being Ready) or Ready again."""
        if node not in self.runtimes:
            raise KeyError(f"unknown node {node!r}")

        def apply() -> None:
            self.runtimes[node].forced_not_ready = not ready
            self.kubelets.wake(node)
            self._post_node_status(node)
            for pod in self.store.list("pods", index=("nodeName", node)):
                meta = pod["metadata"]
                if (pod.get("status") or {}).get("phase") != "Running" or meta.get("deletionTimestamp"):
                    continue
                rt = self.runtimes[node]
                agent_ok = not (is_agent(pod, "cilium") and not rt.cilium.healthy) and \
                    not (is_agent(pod, "calico-node") and not rt.calico.healthy)
                self.kubelets.set_ready(meta["namespace"], meta["name"], meta["uid"], ready and agent_ok)
        self.world.call_soon(apply)

    # ------------------------------------------------------------------ probes and introspection
    def proxy(self, pod: Obj, port: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        """The ApiServer's pods/proxy hook (called on an API request thread)."""
        with self.store.lock:
            return self.netexec.proxy(pod, port, path, query)

    def cni_files(self, node: str) -> list[str]:
        return self.runtimes[node].cni_files()

    def runtime(self, node: str) -> NodeRuntime:
        return self.runtimes[node]

    def reachability_matrix(self) -> list[dict[str, Any]]:
        """Pod-to-pod reachability between one representative pod per node and overlay."""
        reps: dict[tuple[str, str], str] = {}
        for ip, (_ns, _name, node, network) in sorted(self.ip_index.items(), key=lambda kv: ipaddress.ip_address(kv[0])):
            reps.setdefault((node, network), ip)
        rows = []
        with self.store.lock:
            for (sn, snet), sip in sorted(reps.items()):
                for (dn, dnet), dip in sorted(reps.items()):
                    if sip == dip:
                        continue
                    ok, why = self.network.reachable(sip, dip, 8080)
                    rows.append({"src": sip, "src_node": sn, "src_net": snet, "dst": dip, "dst_node": dn,
                                 "dst_net": dnet, "ok": ok, "reason": why})
        return rows
