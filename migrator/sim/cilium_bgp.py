"""Cilium's BGP control plane (v2 API) and MetalLB's sessions: who peers whom, and what is announced.

Behaviour follows Cilium's "BGP Control Plane Resources" documentation (v2 API,
``cilium.io/v2`` from 1.18, ``v2alpha1`` from 1.16, same shape):

* the agent runs the BGP control plane only with ``enable-bgp-control-plane: "true"`` in the
  configuration it resolved at its start, and only while it runs (its sessions live in the agent
  process; graceful restart is not modelled);
* a ``CiliumBGPClusterConfig`` applies to the nodes its ``nodeSelector`` matches (every node when
  empty); each of its ``bgpInstances[].peers[]`` is a session from the node to ``peerAddress``
  with the instance's ``localASN``;
* a peer's ``peerConfigRef`` names a ``CiliumBGPPeerConfig`` whose ``families[].advertisements``
  label selector picks ``CiliumBGPAdvertisement`` objects; without a reference the default peer
  config advertises nothing;
* an advertisement of type ``PodCIDR`` announces the node's own pod CIDR (cluster-pool IPAM:
  the ``CiliumNode``'s ``spec.ipam.podCIDRs``); of type ``Service`` with ``LoadBalancerIP`` in
  ``service.addresses`` it announces the ingress IPs of the LoadBalancer Services its
  ``selector`` matches (no selector: none), skipping Services of another ``loadBalancerClass``;
* BGP control plane does not program the datapath: other nodes reach an announced prefix through
  the router the announcement went to (the node's default gateway);
* graceful restart (``CiliumBGPPeerConfig.spec.gracefulRestart``, RFC 4724): while an agent
  restarts, a router keeps the routes its sessions carried for ``restartTimeSeconds`` (120 by
  default); without it, a stopped agent's routes are withdrawn at once.

Routers: an address outside the cluster's nodes is a router (the ToR) that accepts any session
and any prefix. On a node-router cluster (Calico backend ``none``, metal-stack) the node's own
FRR listens for iBGP from local speakers (``bgp listen range 0.0.0.0/0``, ``remote-as
internal``): a session to ``127.0.0.1`` or the node's own address with the node's ASN (label
``machine.metal-stack.io/network.primary.asn``) on both sides is Established, and what it learns
passes the fabric filter. A router keys its neighbours by source address (metallb/metallb#114):
two speakers on one node reaching the same router from the same address collide, and neither
session is Established while both try.

MetalLB speakers (BGP mode) open a session from the node's address to each selected
``BGPPeer.peerAddress``; ``lb_announcements`` (``routing.py``) lists what they announce. BIRD
(calico-node) does the same for a Calico ``BGPPeer`` whose ``peerIP`` is a router outside the
cluster; these sessions count here only for collisions (the routes BIRD learns are ``routing.py``'s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator.sim.calico_selector import calico_selects
from migrator.sim.selectors import label_selector_matches

if TYPE_CHECKING:
    from migrator.sim.routing import RoutingModel

Obj = dict[str, Any]
CILIUM_GROUP = "cilium.io"
ASN_LABEL = "machine.metal-stack.io/network.primary.asn"
LOCALHOST = "127.0.0.1"
BGP_CP_CLASS = "io.cilium/bgp-control-plane"


@dataclass(frozen=True)
class Session:
    """One BGP session a speaker on a node tries to hold."""

    node: str
    speaker: str          # cilium | metallb
    peer: str             # peer address
    source: str           # the address the session comes from
    established: bool
    reason: str = ""
    router: str = ""      # frr:<node> for the node's FRR, tor:<ip> for an outside router


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


class CiliumBgp:
    """Sessions and announcements of Cilium's BGP control plane and of MetalLB's speakers."""

    def __init__(self, routing: RoutingModel) -> None:
        self.routing = routing
        self.fleet = routing.fleet
        self.store = routing.store

    def _list(self, plural: str) -> list[Obj]:
        """Objects of a cilium.io kind; none when the cluster does not serve the kind."""
        key = f"{CILIUM_GROUP}/{plural}"
        if key not in {t.key for t in self.store.resources()}:
            return []
        return self.store.list(key)

    # ------------------------------------------------------------------ routers
    def _node_asn(self, node: str) -> int | None:
        try:
            return int(self.routing._labels(node).get(ASN_LABEL, ""))
        except ValueError:
            return None

    def _router(self, node: str, peer: str, my_asn: int | None, peer_asn: int | None) -> tuple[str, str]:
        """(router id, why no session) for a session from ``node`` to ``peer``."""
        rt = self.fleet.runtimes.get(node)
        own = rt.ip if rt else ""
        if peer in (LOCALHOST, own):
            if self.routing.backend() != "none":
                return "", f"nothing on {node} accepts BGP sessions at {peer} (no node router)"
            asn = self._node_asn(node)
            if asn is None or my_asn != asn or peer_asn not in (asn, 0, None):
                return "", (f"{node}'s FRR accepts only iBGP with AS {asn} from local speakers "
                            f"(session local AS {my_asn}, peer AS {peer_asn})")
            return f"frr:{node}", ""
        if peer in {r.ip for r in self.fleet.runtimes.values()}:
            return "", f"{peer} is another node's address, not a router the simulator models"
        return f"tor:{peer}", ""

    # ------------------------------------------------------------------ sessions
    def _cilium_wanted(self, restarting: bool = False) -> list[tuple[str, Obj, Obj]]:
        """(node, bgpInstance, peer) Cilium tries on every node running the BGP control plane (with
        ``restarting``: instead, on every node whose agent ran it and is restarting now)."""
        out = []
        configs = self._list("ciliumbgpclusterconfigs")
        for node in sorted(self.fleet.runtimes):
            st = self.fleet.runtimes[node].cilium
            up = st.running and st.healthy and not st.crashloop
            if not st.flag("enable-bgp-control-plane") or up == restarting \
                    or restarting and (st.stopped_at is None or st.crashloop):
                continue
            labels = self.routing._labels(node)
            for cfg in configs:
                spec = cfg.get("spec") or {}
                selector = spec.get("nodeSelector")
                if selector and not label_selector_matches(selector, labels):
                    continue
                for inst in spec.get("bgpInstances") or []:
                    for peer in inst.get("peers") or []:
                        if peer.get("peerAddress"):
                            out.append((node, inst, peer))
        return out

    def _metallb_wanted(self) -> list[tuple[str, Obj]]:
        peers = self.store.list("metallb.io/bgppeers")
        out = []
        for node in sorted(self.fleet.runtimes):
            if not self.routing._speaker_ready(node):
                continue
            labels = self.routing._labels(node)
            for peer in peers:
                selectors = (peer.get("spec") or {}).get("nodeSelectors") or []
                if not selectors or any(label_selector_matches(s, labels) for s in selectors):
                    out.append((node, peer))
        return out

    def _bird_wanted(self) -> list[tuple[str, str]]:
        """(node, router address) of the sessions BIRD (calico-node) holds to routers outside the
        cluster: a Calico ``BGPPeer`` with a ``peerIP`` that is no node's address, on the nodes its
        ``node`` or ``nodeSelector`` names (neither: every node), while calico-node runs there."""
        node_ips = {rt.ip for rt in self.fleet.runtimes.values()}
        out = []
        for peer in self.store.list("crd.projectcalico.org/bgppeers"):
            spec = peer.get("spec") or {}
            address = str(spec.get("peerIP") or "").split(":")[0]
            if not address or address in node_ips:
                continue
            for node in sorted(self.fleet.runtimes):
                mine = spec["node"] == node if spec.get("node") else calico_selects(spec.get("nodeSelector"),
                                                                                   self.routing._labels(node))
                if mine and self.routing._bird_up(node):
                    out.append((node, address))
        return out

    def sessions(self) -> list[Session]:
        """Every session a speaker tries (Cilium, MetalLB, and BIRD to routers outside the cluster),
        Established or not (and why not)."""
        tries: list[tuple[str, str, str, str, str]] = []   # node, speaker, peer, router, problem
        sources: dict[tuple[str, str], str] = {}
        for node, address in self._bird_wanted():
            tries.append((node, "bird", address, f"tor:{address}", ""))
            sources[(node, "bird")] = self.fleet.runtimes[node].ip
        for node, inst, peer in self._cilium_wanted():
            address = str(peer["peerAddress"]).strip()
            router, problem = self._router(node, address, inst.get("localASN"), peer.get("peerASN"))
            tries.append((node, "cilium", address, router, problem))
            sources[(node, "cilium")] = LOCALHOST if address == LOCALHOST else self.fleet.runtimes[node].ip
        for node, peer in self._metallb_wanted():
            spec = peer.get("spec") or {}
            address = str(spec.get("peerAddress") or "")
            router, problem = self._router(node, address, spec.get("myASN"), spec.get("peerASN"))
            tries.append((node, "metallb", address, router, problem))
            sources[(node, "metallb")] = self.fleet.runtimes[node].ip
        keyed: dict[tuple[str, str], set[str]] = {}
        for node, speaker, _address, router, problem in tries:
            if router and not problem:
                keyed.setdefault((router, sources[(node, speaker)]), set()).add(speaker)
        out = []
        for node, speaker, address, router, problem in tries:
            source = sources[(node, speaker)]
            rivals = keyed.get((router, source), set()) - {speaker}
            if not problem and rivals:
                problem = (f"session collision: {', '.join(sorted(rivals))} on {node} already peers {router} "
                           f"from {source}")
            out.append(Session(node, speaker, address, source, not problem, problem, router))
        return out

    # ------------------------------------------------------------------ advertisements
    def _advertisements(self, peer: Obj) -> list[Obj]:
        ref = (peer.get("peerConfigRef") or {}).get("name")
        if not ref:
            return []
        config = next((c for c in self._list("ciliumbgppeerconfigs") if c["metadata"]["name"] == ref), None)
        if config is None:
            return []
        ads = self._list("ciliumbgpadvertisements")
        out: list[Obj] = []
        for family in (config.get("spec") or {}).get("families") or []:
            selector = family.get("advertisements")
            if not selector:
                continue
            for ad in ads:
                if label_selector_matches(selector, _labels(ad)):
                    out += list((ad.get("spec") or {}).get("advertisements") or [])
        return out

    def _lb_ips(self, ad: Obj) -> list[str]:
        if "LoadBalancerIP" not in ((ad.get("service") or {}).get("addresses") or []) or not ad.get("selector"):
            return []
        out = []
        for svc in self.store.list("services"):
            spec = svc.get("spec") or {}
            if spec.get("type") != "LoadBalancer" or spec.get("loadBalancerClass") not in (None, BGP_CP_CLASS):
                continue
            if not label_selector_matches(ad["selector"], _labels(svc)):
                continue
            out += [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                    if i.get("ip")]
        return out

    def _peer_config(self, peer: Obj) -> Obj:
        ref = (peer.get("peerConfigRef") or {}).get("name")
        config = next((c for c in self._list("ciliumbgppeerconfigs") if c["metadata"]["name"] == ref), None)
        return (config or {}).get("spec") or {}

    def _retained(self) -> list[tuple[str, Obj, Obj, str]]:
        """(node, bgpInstance, peer, router) whose routes a router keeps while the node's agent
        restarts: graceful restart (RFC 4724) enabled in the peer's ``CiliumBGPPeerConfig``
        (``gracefulRestart.enabled``), and less than its ``restartTimeSeconds`` (default 120) since
        the agent stopped. The router is the helper (FRR's default mode); without graceful restart
        the session's end withdraws the routes at once."""
        out = []
        now, scale = time.monotonic(), self.fleet.world.time_scale
        for node, inst, peer in self._cilium_wanted(restarting=True):
            graceful = self._peer_config(peer).get("gracefulRestart") or {}
            stopped = self.fleet.runtimes[node].cilium.stopped_at
            if not graceful.get("enabled") or stopped is None \
                    or (now - stopped) * scale >= float(graceful.get("restartTimeSeconds") or 120):
                continue
            address = str(peer["peerAddress"]).strip()
            router, problem = self._router(node, address, inst.get("localASN"), peer.get("peerASN"))
            if router and not problem:
                out.append((node, inst, peer, router))
        return out

    def announcements(self) -> list[tuple[str, str, str, bool, str]]:
        """(prefix, node, router, accepted, kind) for every prefix Cilium announces on an
        Established session, or whose routes a router keeps through the agent's graceful restart;
        kind is ``pod`` or ``lb``."""
        established = {(s.node, s.peer) for s in self.sessions() if s.speaker == "cilium" and s.established}
        routers = {(s.node, s.peer): s.router for s in self.sessions() if s.speaker == "cilium"}
        held = [(node, peer, routers[(node, str(peer["peerAddress"]).strip())])
                for node, _inst, peer in self._cilium_wanted()
                if (node, str(peer["peerAddress"]).strip()) in established]
        held += [(node, peer, router) for node, _inst, peer, router in self._retained()]
        out = []
        for node, peer, router in held:
            for ad in self._advertisements(peer):
                kind = ad.get("advertisementType")
                if kind == "PodCIDR":
                    block = self.fleet.cilium_ipam.pod_cidrs.get(node)
                    prefixes = [(str(block.cidr), "pod")] if block else []
                elif kind == "Service":
                    prefixes = [(f"{ip}/32", "lb") for ip in self._lb_ips(ad)]
                else:
                    prefixes = []
                for prefix, what in prefixes:
                    ok = not router.startswith("frr:") or self.routing.fabric_accepts(prefix)
                    out.append((prefix, node, router, ok, what))
        return sorted(set(out))
