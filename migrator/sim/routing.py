"""Routing by announced prefixes: which node has a route to which Calico pod prefix, and why not.

With an overlay (an IPPool with ``vxlanMode`` or ``ipipMode`` other than ``Never``) Calico
reaches a remote pod through its tunnel and no prefix needs announcing. Without one, a packet
for a pod on node B leaves node A by a plain kernel route, which exists only when B's prefix
was announced to A:

* **BIRD** (calico-node ``CALICO_NETWORKING_BACKEND=bird``): each node's BIRD (inside calico-node,
  so only while calico-node is healthy there) announces the node's IPAM blocks. Node A learns
  them over a BGP session with B (the node-to-node mesh, on unless the ``default``
  BGPConfiguration sets ``nodeToNodeMeshEnabled: false``; or a ``BGPPeer`` whose ``node``/
  ``nodeSelector`` selects one end and ``peerSelector`` the other), through a route reflector
  (a node with a ``projectcalico.org/RouteReflectorClusterID`` annotation) both sessions reach, or
  through an external router (``BGPPeer.peerIP`` outside the cluster) both peer with. iBGP never
  passes a route on from one non-reflector peer to another.
* **A node router** (``CALICO_NETWORKING_BACKEND=none``, metal-stack): Calico programs nothing
  between nodes. ``node-init`` (a DaemonSet) puts the node's ``spec.podCIDR`` on ``lo`` while its
  pod runs there; the machine's FRR redistributes that kernel route to the leaf switches, which
  accept it only inside the announceable CIDRs (``SimConfig.fabric_announceable``); every node
  then routes to it through the fabric.

MetalLB speakers (BGP mode) announce each LoadBalancer IP from every node whose speaker pod is
Ready and which a ``BGPPeer`` selects (``nodeSelectors``: label selectors), while the IP's pool
still allocates to the Service (``serviceAllocation``); on a node-router cluster the peer is the node's FRR, so
the same fabric filter decides whether the leaf accepts the /32 (``lb_announcements``).

Cilium's BGP control plane and the sessions of every speaker are ``cilium_bgp.py``; a Cilium
node in native routing (``routing-mode: native``) is reached only through the announcement of its
pod CIDR (``cilium_route_problem``). ``violations`` names, at one moment, every prefix announced
by two kinds of speaker at once and every prefix someone needs that nobody announces.

Selectors on BGPPeers support the forms the scenarios and Calico's route reflector guide use:
``all()``, ``has(k)``, ``k == 'v'`` (and ``&&`` of those).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.sim.calico_selector import calico_selects
from migrator.sim.cilium_bgp import CiliumBgp
from migrator.sim.controllers.loadbalancer import allocates_to
from migrator.sim.selectors import label_selector_matches

if TYPE_CHECKING:
    from migrator.sim.fleet import NodeFleet

Obj = dict[str, Any]
RR_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
CALICO_GROUP = "crd.projectcalico.org"
METALLB_GROUP = "metallb.io"
EXCLUDE_LB = "node.kubernetes.io/exclude-from-external-load-balancers"


@dataclass(frozen=True)
class Announcement:
    """One prefix one speaker on one node announces, and whether the next hop accepts it."""

    prefix: str
    node: str
    speaker: str          # bird | frr | metallb | cilium
    accepted: bool
    reason: str = ""


class RoutingModel:
    """Routes between nodes for Calico pod prefixes, computed from the cluster's objects."""

    def __init__(self, fleet: NodeFleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self.bgp = CiliumBgp(self)

    # ------------------------------------------------------------------ what the cluster runs
    def backend(self) -> str:
        """calico-node's ``CALICO_NETWORKING_BACKEND`` (bird when unset, as Calico defaults)."""
        for ns in ("kube-system", "calico-system"):
            ds = self.store.try_get("apps/daemonsets", ns, "calico-node")
            if ds is None:
                continue
            for c in ds["spec"]["template"]["spec"].get("containers") or []:
                for env in c.get("env") or []:
                    if env.get("name") == "CALICO_NETWORKING_BACKEND":
                        return str(env.get("value") or "bird")
            return "bird"
        return "none"

    def _pool_of(self, ip: str) -> Obj | None:
        addr = ipaddress.ip_address(ip)
        for pool in self.store.list(f"{CALICO_GROUP}/ippools"):
            spec = pool.get("spec") or {}
            if spec.get("cidr") and addr in ipaddress.ip_network(spec["cidr"], strict=False):
                return pool
        return None

    def encapsulated(self, ip: str) -> bool:
        """The Calico pod address is reached through Calico's VXLAN/IPIP tunnel."""
        pool = self._pool_of(ip)
        if pool is None:
            return True   # host-local outside every pool: not a case the scenarios build
        spec = pool.get("spec") or {}
        return (spec.get("vxlanMode") or "Never") != "Never" or (spec.get("ipipMode") or "Never") != "Never"

    def _node(self, name: str) -> Obj:
        return self.store.try_get("nodes", None, name) or {"metadata": {"name": name}, "spec": {}}

    def prefix_of(self, node: str, ip: str) -> str:
        """The announced prefix holding a Calico pod address on ``node``: its IPAM block, or the
        node's podCIDR with host-local IPAM."""
        addr = ipaddress.ip_address(ip)
        cidr = (self._node(node).get("spec") or {}).get("podCIDR")
        if cidr and addr in ipaddress.ip_network(cidr, strict=False):
            return str(cidr)
        for block in self.fleet.calico_ipam.node_blocks(node):
            if addr in ipaddress.ip_network(block):
                return block
        return f"{ip}/32"

    # ------------------------------------------------------------------ BIRD
    def _mesh(self) -> bool:
        cfg = self.store.try_get(f"{CALICO_GROUP}/bgpconfigurations", None, "default")
        value = ((cfg or {}).get("spec") or {}).get("nodeToNodeMeshEnabled")
        return True if value is None else bool(value)

    def _labels(self, node: str) -> dict[str, str]:
        return dict(self._node(node)["metadata"].get("labels") or {})

    def _is_reflector(self, node: str) -> bool:
        return bool((self._node(node)["metadata"].get("annotations") or {}).get(RR_ANNOTATION))

    def _sessions(self) -> set[frozenset[str]]:
        """BGP sessions: pairs of node names, or a node and ``router:<ip>``."""
        nodes = sorted(self.fleet.runtimes)
        sessions: set[frozenset[str]] = set()
        if self._mesh():
            sessions |= {frozenset((a, b)) for a in nodes for b in nodes if a < b}
        by_ip = {rt.ip: n for n, rt in self.fleet.runtimes.items()}
        for peer in self.store.list(f"{CALICO_GROUP}/bgppeers"):
            spec = peer.get("spec") or {}
            if spec.get("node"):
                local = [n for n in nodes if n == spec["node"]]
            else:
                local = [n for n in nodes if calico_selects(spec.get("nodeSelector"), self._labels(n))]
            if spec.get("peerSelector"):
                remote = [n for n in nodes if calico_selects(spec["peerSelector"], self._labels(n))]
            elif spec.get("peerIP"):
                ip = str(spec["peerIP"]).split(":")[0]
                remote = [by_ip.get(ip, f"router:{ip}")]
            else:
                remote = []
            sessions |= {frozenset((a, b)) for a in local for b in remote if a != b}
        return sessions

    def _bird_up(self, node: str) -> bool:
        rt = self.fleet.runtimes.get(node)
        return rt is not None and rt.calico.healthy and not rt.calico.crashloop

    def _bird_learns(self, at: str, origin: str) -> bool:
        """``at`` has a BGP route to a prefix ``origin`` announces."""
        sessions = self._sessions()

        def peers(x: str) -> set[str]:
            return {y for s in sessions if x in s for y in s if y != x}
        if origin in peers(at):
            return True
        for hop in peers(origin):
            relays = hop.startswith("router:") or self._is_reflector(hop)
            if not relays or (not hop.startswith("router:") and not self._bird_up(hop)):
                continue
            if at in peers(hop):
                return True
            for hop2 in peers(hop):   # a reflector passes a client's route to another reflector
                if hop2 != origin and self._is_reflector(hop2) and self._bird_up(hop2) and at in peers(hop2):
                    return True
        return False

    # ------------------------------------------------------------------ node router and fabric
    def fabric_accepts(self, prefix: str) -> bool:
        allowed = self.fleet.config.fabric_announceable
        if not allowed:
            return True
        net = ipaddress.ip_network(prefix, strict=False)
        return any(net.version == (a := ipaddress.ip_network(c, strict=False)).version and net.subnet_of(a)  # type: ignore[arg-type]
                   for c in allowed)

    def _node_init_running(self, node: str) -> bool:
        for pod in self.store.list("pods", index=("nodeName", node)):
            if (pod["metadata"].get("labels") or {}).get("app") == "node-init" and \
                    (pod.get("status") or {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp"):
                return True
        return False

    def _filter_text(self) -> str:
        return ", ".join(self.fleet.config.fabric_announceable)

    # ------------------------------------------------------------------ the question
    def route_problem(self, at: str, origin: str, ip: str) -> str | None:
        """None when node ``at`` routes to the Calico pod ``ip`` on node ``origin``, else why not."""
        if at == origin or self.encapsulated(ip):
            return None
        prefix = self.prefix_of(origin, ip)
        backend = self.backend()
        if backend == "bird":
            if not self._bird_up(origin):
                return f"no route to {prefix} on {at}: BIRD on {origin} (calico-node) is down, nothing announces it"
            if not self._bird_learns(at, origin):
                return (f"no route to {prefix} on {at}: no BGP session or route reflector carries {origin}'s "
                        "announcement (node-to-node mesh off and no BGPPeer joins them)")
            return None
        if backend == "none":
            if not self._node_init_running(origin):
                return (f"no route to {prefix} on {at}: node-init is not running on {origin}, so no route "
                        "for its podCIDR sits on lo for FRR to announce")
            if not self.fabric_accepts(prefix):
                return (f"no route to {prefix} on {at}: the fabric filter (announceable CIDRs "
                        f"{self._filter_text()}) drops {prefix} announced by {origin}'s FRR")
            return None
        return f"no route to {prefix} on {at}: Calico routes with backend {backend!r}, which the simulator does not model"

    # ------------------------------------------------------------------ announcements (introspection)
    def calico_announcements(self) -> list[Announcement]:
        """Every Calico pod prefix announced by a node's BIRD or FRR, and whether it is accepted."""
        out: list[Announcement] = []
        backend = self.backend()
        for node in sorted(self.fleet.runtimes):
            if backend == "bird" and self._bird_up(node):
                out += [Announcement(b, node, "bird", True) for b in self.fleet.calico_ipam.node_blocks(node)]
            elif backend == "none" and self._node_init_running(node):
                cidr = (self._node(node).get("spec") or {}).get("podCIDR")
                if cidr:
                    ok = self.fabric_accepts(cidr)
                    out.append(Announcement(cidr, node, "frr", ok, "" if ok else "fabric filter"))
        return out

    def lb_announcements(self) -> list[Announcement]:
        """LoadBalancer IPs MetalLB's speakers announce in BGP mode, per node."""
        pools = self.store.list(f"{METALLB_GROUP}/ipaddresspools")
        adverts = self.store.list(f"{METALLB_GROUP}/bgpadvertisements")
        peers = self.store.list(f"{METALLB_GROUP}/bgppeers")
        advertised = {p["metadata"]["name"] for p in pools
                      if any(not (a.get("spec") or {}).get("ipAddressPools")
                             or p["metadata"]["name"] in a["spec"]["ipAddressPools"] for a in adverts)}
        ranges = [(p, ipaddress.ip_network(c, strict=False))
                  for p in pools for c in (p.get("spec") or {}).get("addresses") or [] if "-" not in c]
        out: list[Announcement] = []
        collided = {s.node: s.reason for s in self.bgp.sessions() if s.speaker == "metallb" and not s.established}
        for svc in self.store.list("services"):
            if (svc.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                ip = ingress.get("ip")
                if not ip or not any(pool["metadata"]["name"] in advertised and ipaddress.ip_address(ip) in net
                                     and allocates_to(pool, svc) for pool, net in ranges):
                    continue
                for node in sorted(self.fleet.runtimes):
                    if EXCLUDE_LB in self._labels(node):    # MetalLB skips these nodes by default
                        continue
                    if not self._speaker_ready(node) or not self._peer_for(node, peers):
                        continue
                    frr = self.backend() == "none"
                    ok = not frr or self.fabric_accepts(f"{ip}/32")
                    why = "" if ok else "fabric filter"
                    if node in collided:
                        ok, why = False, collided[node]
                    out.append(Announcement(f"{ip}/32", node, "metallb", ok, why))
        return out

    def _speaker_ready(self, node: str) -> bool:
        for pod in self.store.list("pods", index=("nodeName", node)):
            labels = pod["metadata"].get("labels") or {}
            if labels.get("app") == "metallb" and labels.get("component") == "speaker":
                return any(c.get("type") == "Ready" and c.get("status") == "True"
                           for c in (pod.get("status") or {}).get("conditions") or [])
        return False

    def _peer_for(self, node: str, peers: list[Obj]) -> bool:
        labels = self._labels(node)
        for peer in peers:
            selectors = (peer.get("spec") or {}).get("nodeSelectors") or []
            if not selectors or any(label_selector_matches(s, labels) for s in selectors):
                return True
        return False

    # ------------------------------------------------------------------ Cilium's announcements
    def cilium_announcements(self) -> list[Announcement]:
        """Prefixes Cilium's BGP control plane announces on Established sessions."""
        return [Announcement(prefix, node, "cilium", ok, "" if ok else "fabric filter")
                for prefix, node, _router, ok, _kind in self.bgp.announcements()]

    @staticmethod
    def native(rt_config: dict[str, str]) -> bool:
        return rt_config.get("routing-mode", "tunnel") == "native"

    def cilium_route_problem(self, at: str, origin: str) -> str | None:
        """None when ``at`` has a route to the Cilium pod CIDR of ``origin``, a node in native
        routing: Cilium on ``origin`` announces it to a router that accepts it (the node's FRR
        through the fabric filter, or the ToR), which is the default gateway of ``at``."""
        block = self.fleet.cilium_ipam.pod_cidrs.get(origin)
        if block is None:
            return f"{origin} has no Cilium pod CIDR"
        prefix = str(block.cidr)
        mine = [a for a in self.cilium_announcements() if a.prefix == prefix and a.node == origin]
        if any(a.accepted for a in mine):
            return None
        if mine:
            return (f"no route to {prefix} on {at}: the fabric filter (announceable CIDRs "
                    f"{self._filter_text()}) drops {prefix} announced by Cilium on {origin}")
        tried = [s for s in self.bgp.sessions() if s.node == origin and s.speaker == "cilium"]
        why = "; ".join(s.reason for s in tried if s.reason) or \
            "no Cilium BGP session advertises its PodCIDR (enable-bgp-control-plane, CiliumBGPClusterConfig, " \
            "peerConfigRef, CiliumBGPAdvertisement)"
        return f"no route to {prefix} on {at}: {origin} routes natively and nothing announces its pod CIDR: {why}"

    # ------------------------------------------------------------------ the ledger
    def _needed(self) -> dict[str, str]:
        """Prefix -> what needs it announced: Calico prefixes of live pods without an overlay, Cilium
        pod CIDRs of nodes in native routing, LoadBalancer IPs."""
        need: dict[str, str] = {}
        bird = self.backend() == "bird"
        for ip, (_ns, _name, node, net) in self.fleet.ip_index.items():
            if net == "calico" and not self.encapsulated(ip):
                prefix = self.prefix_of(node, ip)
                if bird:     # BIRD announces the IPAM blocks, whatever the node's podCIDR
                    addr = ipaddress.ip_address(ip)
                    prefix = next((b for b in self.fleet.calico_ipam.node_blocks(node)
                                   if addr in ipaddress.ip_network(b)), prefix)
                need.setdefault(prefix, f"Calico pods on {node}")
        for node, rt in self.fleet.runtimes.items():
            block = self.fleet.cilium_ipam.pod_cidrs.get(node)
            if block is not None and (rt.cilium.running or rt.cilium.datapath) and self.native(rt.cilium.config):
                need.setdefault(str(block.cidr), f"Cilium pods on {node} (native routing)")
        for svc in self.store.list("services"):
            if (svc.get("spec") or {}).get("type") == "LoadBalancer":
                for ingress in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []:
                    if ingress.get("ip"):
                        need[f"{ingress['ip']}/32"] = (f"LoadBalancer {svc['metadata']['namespace']}/"
                                                       f"{svc['metadata']['name']}")
        return need

    def violations(self) -> list[str]:
        """At this moment: prefixes two kinds of speaker on one node announce at once (BIRD or the
        node router and Cilium, MetalLB and Cilium: one node's address, two origins of one route),
        and prefixes someone needs that no speaker announces (accepted by the next hop). One kind
        of speaker announcing a LoadBalancer IP from several nodes is ECMP, as MetalLB does."""
        speakers: dict[tuple[str, str], set[str]] = {}
        for a in self.calico_announcements() + self.lb_announcements() + self.cilium_announcements():
            if a.accepted:
                speakers.setdefault((a.prefix, a.node), set()).add(a.speaker)
        out = [f"{prefix} announced by {' and '.join(sorted(who))} at once on {node}"
               for (prefix, node), who in sorted(speakers.items()) if len(who) > 1]
        announced = {prefix for prefix, _node in speakers}
        out += [f"{prefix} ({what}) announced by nobody"
                for prefix, what in sorted(self._needed().items()) if prefix not in announced]
        return out
