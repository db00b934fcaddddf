"""The network model: can endpoint A reach endpoint B right now, and if not, why.

Endpoints are pod IPs (on the Calico or the Cilium overlay), node IPs (host network), Service
ClusterIPs (resolved through a kube-proxy model to a Ready backend) and addresses outside the
cluster's ranges (reached through the source node's egress; nothing answers there but the API
server of a managed control plane). The rules follow
the dual-overlay migration as the guide describes it (cilium-migration.md §1.1, §3):

* an endpoint on an overlay needs its node Ready and that overlay's datapath on its node: Calico's
  needs calico-node healthy; Cilium's was set up by an agent that turned healthy there and keeps
  forwarding while the agent restarts (the BPF programs, routes and tunnel device stay in the
  kernel and the next agent restores its endpoints), but not under a crash-looping agent;
* Calico across nodes: both calico-node healthy with correct node addresses (pitfall #1:
  an address autodetected on ``cilium_host`` breaks it), and no Cilium tunnel bound to Calico's
  VXLAN port on either node (pitfall #2, EADDRINUSE);
* Cilium across nodes: both Cilium datapaths up on the same tunnel port; with native routing
  (``routing-mode: native``) on both nodes, each node's pod CIDR announced by Cilium's BGP control
  plane to a router that accepts it; a tunnel-mode node and a native one do not reach each other;
* across the overlays (Calico pod ↔ Cilium pod, same node or not): only through the host
  stack — ``enable-host-legacy-routing: "true"`` on the Cilium side, both datapaths up on both
  nodes, distinct tunnel ports, and the Cilium pool disjoint from every Calico pool (pitfall #3);
* without a Calico overlay, a Calico pod across nodes is reachable only while its node's pod
  prefix is announced to the other end's node (BIRD, or node-init + the node's FRR through the
  fabric's filter: ``routing.py``); this holds for the Cilium ↔ Calico legs too;
* policy is enforced by the engine that owns each endpoint, egress at the source and ingress at
  the destination: Calico (``calico_policy``: Calico NetworkPolicy, GlobalNetworkPolicy, tiers,
  network sets and Kubernetes NetworkPolicy) on Calico pods, always; Cilium (``cilium_policy``:
  CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and Kubernetes NetworkPolicy) on Cilium pods
  unless ``enable-policy`` resolved on that node is ``never`` (``always``: default-deny). Calico
  sees every pod by its labels; Cilium gives label identities to the pods it manages only, and sees
  a Calico pod as ``unmanaged``, or as its node (``host``/``remote-node``) when Calico's
  natOutgoing masquerades the packet (``cilium_identity``).
Every refusal carries a precise reason, which netexec's ``/dial`` reports as an error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from migrator.sim.agents import calico as calico_agent
from migrator.sim.agents import cilium as cilium_agent
from migrator.sim.calico_policy import CalicoPolicies
from migrator.sim.cilium_identity import Identity, reserved
from migrator.sim.cilium_policy import CiliumPolicies
from migrator.sim.controllers.matching import pod_is_ready, pod_is_terminating, selector_matches
from migrator.sim.errors import Gone
from migrator.sim.registry import CLUSTER_IP_INDEX
from migrator.sim.routing import RoutingModel

#: The API server's address when no node is a control-plane node (a managed control plane:
#: the apiserver runs outside the cluster's nodes and is reached through the node's egress).
MANAGED_APISERVER_IP = "172.31.255.254"
APISERVER_PORT = 6443

if TYPE_CHECKING:
    from migrator.sim.fleet import NodeFleet
    from migrator.sim.store import Store

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    ip: str
    node: str | None          # None: not in the cluster (unknown address)
    network: str              # calico | cilium | host | service | unknown
    pod: Obj | None = None


def _backend(pod: Obj, target: Any) -> tuple[str, int, Obj] | None:
    """The (ip, targetPort, pod) a Ready pod not being deleted serves behind a Service, else None."""
    st = pod.get("status") or {}
    if not pod_is_ready(pod) or not st.get("podIP") or pod_is_terminating(pod):
        return None
    tport = target
    if isinstance(target, str):
        tport = next((p.get("containerPort") for c in pod["spec"].get("containers") or []
                      for p in c.get("ports") or [] if p.get("name") == target), None)
    return None if tport is None else (st["podIP"], int(tport), pod)


@dataclass
class _Backends:
    """One Service port's backends by pod name, and the store's version they were worked out at."""

    service: tuple[str, str]           # the Service's uid and resourceVersion
    selector: dict[str, str]
    target: Any
    pods_version: int = -1             # the namespace's pods version they answer for
    seen: int = 0                      # the store's resourceVersion they were last brought up to
    by_pod: dict[str, tuple[str, int, Obj]] = field(default_factory=dict)
    _sorted: list[tuple[str, int, Obj]] | None = None

    def refill(self, store: Store, ns: str) -> None:
        """Every selected pod looked at afresh (the caller holds the store's lock)."""
        self.seen = store.resource_version
        self.by_pod = {pod["metadata"]["name"]: entry for pod in store.list("pods", ns, labels=self.selector)
                       if (entry := _backend(pod, self.target)) is not None}
        self._sorted = None

    def update(self, store: Store, ns: str) -> None:
        """Only the pods of ``ns`` written since ``seen`` looked at again; afresh when the store's
        history no longer reaches back that far."""
        try:
            events = store.events_since(self.seen)
        except Gone:
            self.refill(store, ns)
            return
        self.seen = store.resource_version
        changed = {e.obj["metadata"]["name"] for e in events
                   if e.resource == "pods" and e.obj["metadata"].get("namespace") == ns}
        for name in changed:
            pod = store.try_get("pods", ns, name)
            entry = _backend(pod, self.target) if pod is not None and \
                selector_matches(self.selector, pod["metadata"].get("labels")) else None
            if entry is None:
                self.by_pod.pop(name, None)
            else:
                self.by_pod[name] = entry
        if changed:
            self._sorted = None

    def sorted(self) -> list[tuple[str, int, Obj]]:
        if self._sorted is None:
            self._sorted = [self.by_pod[name] for name in sorted(self.by_pod)]
        return self._sorted


class NetworkModel:
    """Reachability over the fleet's current state and the cluster's configuration objects."""

    def __init__(self, fleet: NodeFleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.calico_policy = CalicoPolicies(self.store)
        self.cilium_policy = CiliumPolicies(self.store)
        self.routing = RoutingModel(fleet)
        #: (namespace, service, port) -> the Service's backends as last worked out
        self._backends: dict[tuple[str, str, int], _Backends] = {}

    # ------------------------------------------------------------------ lookups
    def endpoint(self, ip: str) -> Endpoint:
        ref = self.fleet.ip_index.get(ip)
        if ref is not None:
            ns, name, node, network = ref
            pod = self.store.try_get("pods", ns, name)
            return Endpoint(ip, node, network, pod)
        host = self.fleet.node_at(ip)
        if host is not None:
            return Endpoint(ip, host, "host")
        if self.service_for(ip) is not None:
            return Endpoint(ip, None, "service")
        if ip == MANAGED_APISERVER_IP or not self._in_cluster_ranges(ip):
            return Endpoint(ip, None, "external")
        return Endpoint(ip, None, "unknown")

    def _in_cluster_ranges(self, ip: str) -> bool:
        """Whether ``ip`` lies in the nodes', Services' or pods' ranges (where an address nobody holds
        goes nowhere); any other address is outside the cluster, reached through the node's egress."""
        addr = ipaddress.ip_address(ip)
        config = self.fleet.config
        ranges = [config.node_cidr, config.service_cidr, config.cilium_pool]
        ranges += [(p.get("spec") or {}).get("cidr") or "" for p in self.store.list("crd.projectcalico.org/ippools")]
        ranges += [rt.cilium.config.get("cluster-pool-ipv4-cidr", "") for rt in self.fleet.runtimes.values()]
        return any(addr in ipaddress.ip_network(r, strict=False) for r in ranges if r)

    def service_for(self, ip: str) -> Obj | None:
        """The Service holding ClusterIP ``ip`` (the first by namespace and name), else None."""
        found = self.store.list("services", index=(CLUSTER_IP_INDEX, ip))
        return found[0] if found else None

    def backends(self, svc: Obj, port: int) -> list[tuple[str, int, Obj]]:
        """Ready (ip, targetPort, pod) behind a Service port, as kube-proxy programs them, in
        the order of the pods' names. For a Service with a selector the answer is kept until the
        Service or a pod of its namespace changes (a probe round asks it on every try), and then
        only the pods written since are looked at again (a probe DaemonSet's Service on 1,000
        nodes has 1,000 pods, and one of them changes between most rounds)."""
        spec = svc.get("spec") or {}
        sport = next((p for p in spec.get("ports") or [] if int(p.get("port", 0)) == port), None)
        if sport is None:
            return []
        target = sport.get("targetPort", port)
        out: list[tuple[str, int, Obj]] = []
        ns = svc["metadata"]["namespace"]
        if not spec.get("selector"):   # endpoints managed by someone else (default/kubernetes)
            ep = self.store.try_get("endpoints", ns, svc["metadata"]["name"]) or {}
            for subset in ep.get("subsets") or []:
                eport = next((p for p in subset.get("ports") or [] if p.get("name") == sport.get("name")),
                             (subset.get("ports") or [{}])[0])
                for addr in subset.get("addresses") or []:
                    out.append((addr["ip"], int(eport.get("port", target)), {}))
            return out
        with self.store.lock:   # the pods' version, the changes since and the answer read together
            service = (svc["metadata"]["uid"], svc["metadata"]["resourceVersion"])
            pods_version = self.store.namespace_version("pods", ns)
            known = self._backends.get((ns, svc["metadata"]["name"], port))
            if known is None or known.service != service:
                known = _Backends(service, svc["spec"]["selector"], target)
                known.refill(self.store, ns)
                self._backends[(ns, svc["metadata"]["name"], port)] = known
            elif known.pods_version != pods_version:
                known.update(self.store, ns)
            known.pods_version = pods_version
            return list(known.sorted())

    def felix_vxlan_port(self) -> int:
        felix = self.store.try_get("crd.projectcalico.org/felixconfigurations", None, "default")
        return int(((felix or {}).get("spec") or {}).get("vxlanPort") or 4789)

    def calico_pools(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for pool in self.store.list("crd.projectcalico.org/ippools"):
            cidr = (pool.get("spec") or {}).get("cidr")
            if cidr and not (pool.get("spec") or {}).get("disabled"):
                out.append(ipaddress.ip_network(cidr, strict=False))
        return out

    # ------------------------------------------------------------------ node-level facts
    def _node_problem(self, node: str) -> str | None:
        if not self.fleet.node_ready(node):
            return f"node {node} is NotReady"
        return None

    def _calico_problem(self, node: str) -> str | None:
        rt = self.fleet.runtimes[node]
        if rt.calico.crashloop or not rt.calico.healthy:
            return f"calico-node is not healthy on {node}"
        return None

    def _cilium_problem(self, node: str) -> str | None:
        """Why the node's Cilium datapath does not forward: a crash-looping agent (taken, to be
        safe, as having lost it) or no agent healthy since the datapath was last set up. An agent
        restarting keeps it (see ``CiliumState.datapath``)."""
        rt = self.fleet.runtimes[node]
        if rt.cilium.crashloop:
            return f"cilium agent is crash-looping on {node}"
        if not rt.cilium.healthy and not rt.cilium.datapath:
            return f"no Cilium datapath on {node}: its cilium agent has not been Ready there"
        return None

    def _calico_address_problem(self, node: str) -> str | None:
        rt = self.fleet.runtimes[node]
        _, iface = calico_agent.address(rt, self.fleet.cilium_host_ip(node))
        if iface == "cilium_host":
            return (f"calico-node on {node} autodetected its address on cilium_host "
                    f"(IP_AUTODETECTION_METHOD={rt.calico.autodetect})")
        return None

    def _port_clash(self, node: str) -> str | None:
        port = cilium_agent.tunnel_port(self.fleet.runtimes[node])
        vxlan = self.felix_vxlan_port()
        if port is not None and port == vxlan:
            return f"cilium tunnel port {port} clashes with Calico vxlanPort {vxlan} on {node} (EADDRINUSE)"
        return None

    def _overlap(self, node: str) -> str | None:
        cidr = self.fleet.runtimes[node].cilium.config.get("cluster-pool-ipv4-cidr")
        if not cidr:
            return None
        mine = ipaddress.ip_network(cidr, strict=False)
        for pool in self.calico_pools():
            if mine.overlaps(pool):
                return f"Cilium pool {mine} overlaps Calico IPPool {pool}"
        return None

    def _calico_routes(self, src: Endpoint, dst: Endpoint) -> str | None:
        """Without a Calico overlay, the node at the other end needs a route to each Calico pod's
        announced prefix (``routing.py``): the forward leg to a Calico destination, the return leg
        to a Calico source. A Cilium pod's leg runs through its node's host stack, so the same holds."""
        for ep, other in ((dst, src), (src, dst)):
            if ep.network == "calico" and other.node and ep.node and other.node != ep.node:
                problem = self.routing.route_problem(other.node, ep.node, ep.ip)
                if problem:
                    return problem
        return None

    def _first(self, *checks: str | None) -> str | None:
        return next((c for c in checks if c), None)

    # ------------------------------------------------------------------ paths
    def _path(self, src: Endpoint, dst: Endpoint) -> str | None:
        """None when packets flow from src to dst, else why not."""
        a, b = src.node, dst.node
        assert a is not None and b is not None
        problem = self._first(self._node_problem(a), self._node_problem(b))
        if problem:
            return problem
        for ep in (src, dst):
            if ep.network == "calico":
                problem = self._calico_problem(ep.node or "")
            elif ep.network == "cilium":
                problem = self._cilium_problem(ep.node or "")
            if problem:
                return problem
        nets = {src.network, dst.network}
        if nets == {"host"}:
            return None
        if "calico" in nets and "cilium" in nets:
            cil = src if src.network == "cilium" else dst
            rt = self.fleet.runtimes[cil.node or ""]
            if not rt.cilium.flag("enable-host-legacy-routing"):
                return (f"no route between the overlays: enable-host-legacy-routing is not \"true\" "
                        f"on {cil.node}")
            checks = []
            for n in {a, b}:
                checks += [self._calico_problem(n), self._cilium_problem(n), self._calico_address_problem(n),
                           self._port_clash(n), self._overlap(n)]
            return self._first(*checks, self._calico_routes(src, dst))
        if a == b:
            return None
        if "calico" in nets or (nets == {"host", "calico"}):
            return self._first(*(f(n) for n in (a, b) for f in (self._calico_problem, self._calico_address_problem,
                                                                   self._port_clash)),
                               self._calico_routes(src, dst))
        if "cilium" in nets:
            problem = self._first(self._cilium_problem(a), self._cilium_problem(b))
            if problem:
                return problem
            return self._cilium_between(a, b)
        return None

    def _cilium_between(self, a: str, b: str) -> str | None:
        """Cilium pod to Cilium pod across nodes, both legs. A node in tunnel mode encapsulates to
        every other Cilium node; a node in native routing has no tunnel device, so it neither takes
        encapsulated packets nor sends them: it routes through its gateway, which knows the other
        node's pod CIDR only while that node announces it (``routing.cilium_route_problem``)."""
        ra, rb = self.fleet.runtimes[a], self.fleet.runtimes[b]
        native_a, native_b = (self.routing.native(r.cilium.config) for r in (ra, rb))
        if not native_a and not native_b:
            pa, pb = cilium_agent.tunnel_port(ra), cilium_agent.tunnel_port(rb)
            if pa != pb:
                return f"cilium tunnel ports differ between {a} ({pa}) and {b} ({pb})"
            return None
        for src, dst, native_src in ((a, b, native_a), (b, a, native_b)):
            if not native_src:
                return (f"{src} (tunnel mode) encapsulates to {dst}, which routes natively and has no "
                        "tunnel device to take the packets")
            problem = self.routing.cilium_route_problem(src, dst)
            if problem:
                return problem
        return None

    def _policy_engine(self, ep: Endpoint) -> str | None:
        if ep.network == "calico":
            return "calico"
        if ep.network == "cilium":
            rt = self.fleet.runtimes[ep.node or ""]
            return None if rt.cilium.config.get("enable-policy", "default") == "never" else "cilium"
        return None

    def reachable(self, src_ip: str, dst_ip: str, port: int, protocol: str = "tcp") -> tuple[bool, str]:
        src = self.endpoint(src_ip)
        if src.node is None:
            return False, f"{src_ip} is not an address in the cluster"
        dst = self.endpoint(dst_ip)
        if dst.network == "service":
            svc = self.service_for(dst_ip)
            assert svc is not None
            backends = self.backends(svc, port)
            if not backends:
                return False, f"service {svc['metadata']['namespace']}/{svc['metadata']['name']} has no ready endpoints on port {port}"
            rng = self.fleet.world.rng
            ip, tport, _ = backends[rng.randrange(len(backends))]
            ok, why = self.reachable(src_ip, ip, tport, protocol)
            return ok, why if ok else f"via service {svc['metadata']['name']}: {why}"
        if dst.network == "external":  # leaves the cluster through the source node's egress
            problem = self._node_problem(src.node)
            if problem is None and src.network == "calico":
                problem = self._calico_problem(src.node)
            elif problem is None and src.network == "cilium":
                problem = self._cilium_problem(src.node)
            if problem is None:
                problem = self._policy(src, dst, port, protocol)
            return problem is None, problem or "ok"
        if dst.node is None:
            return False, f"no route to {dst_ip}"
        problem = self._path(src, dst)
        if problem:
            return False, problem
        problem = self._policy(src, dst, port, protocol)
        return problem is None, problem or "ok"

    # ------------------------------------------------------------------ policy
    def _policy(self, src: Endpoint, dst: Endpoint, port: int, protocol: str) -> str | None:
        """None when the source's engine lets the flow out and the destination's lets it in."""
        for ep, direction, peer in ((src, "egress", dst), (dst, "ingress", src)):
            engine = self._policy_engine(ep)
            if engine is None or ep.pod is None:
                continue
            if engine == "calico":
                ok, why = self.calico_policy.verdict(ep.pod, direction, peer.ip, peer.pod, port, protocol)
            else:
                config = self.fleet.runtimes[ep.node or ""].cilium.config
                local = self.cilium_policy.identity(ep.pod, config.get("labels", ""))
                ok, why = self.cilium_policy.verdict(
                    local, direction, self.identity(peer, ep, direction), port, protocol,
                    mode=config.get("enable-policy", "default"),
                    cidr_nodes="nodes" in config.get("policy-cidr-match-mode", ""))
            if not ok:
                return f"denied by NetworkPolicy ({engine}): {why}"
        return None

    def identity(self, peer: Endpoint, local: Endpoint, direction: str) -> Identity:
        """The identity Cilium on ``local``'s node gives ``peer`` (see ``cilium_identity``)."""
        if peer.network == "cilium" and peer.pod is not None:
            rt = self.fleet.runtimes.get(peer.node or "")
            return self.cilium_policy.identity(peer.pod, rt.cilium.config.get("labels", "") if rt else "")
        if peer.network == "calico":
            if direction == "ingress" and self.calico_policy.nat_outgoing(peer.ip, local.ip):
                node_ip = self.fleet.runtimes[peer.node or ""].ip
                return reserved(node_ip, "host" if peer.node == local.node else "remote-node")
            return reserved(peer.ip, "unmanaged")
        if peer.network == "host":
            kinds = ["host" if peer.node == local.node else "remote-node"]
            if self.fleet.is_apiserver(peer.ip, APISERVER_PORT):
                kinds.append("kube-apiserver")
            return reserved(peer.ip, *kinds)
        if peer.ip == MANAGED_APISERVER_IP:
            return reserved(peer.ip, "kube-apiserver", "world")
        return reserved(peer.ip, "world")
