"""What Cilium's operator and agents publish about BGP: one ``CiliumBGPNodeConfig`` per node.

Behaviour from Cilium's "BGP Control Plane Resources" documentation (v2 API) and the
``CiliumBGPNodeConfig`` type (``pkg/k8s/apis/cilium.io/v2``, same shape in ``v2alpha1``):

* the operator creates a ``CiliumBGPNodeConfig`` named after each node whose labels a
  ``CiliumBGPClusterConfig``'s ``nodeSelector`` matches, carrying that config's ``bgpInstances``
  (name, localASN, peers with peerAddress, peerASN and peerConfigRef), owned by the cluster config,
  and deletes it once no cluster config selects the node; a node two configs select keeps the
  first by name (the operator reports a conflict on the other, not modelled);
* the agent, while it runs with ``enable-bgp-control-plane`` (status reporting is on by default),
  writes ``status.bgpInstances[].peers[]``: ``peeringState`` (``established`` once the session is
  up, ``active`` while it tries) and ``routeCount`` for ipv4/unicast (routes advertised to the
  peer, routes received: 0, the simulated routers send none). An agent that is down or runs
  without the BGP control plane leaves the status as it was last written.

Sessions and what they announce come from ``cilium_bgp.py``; this module only publishes them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Event

if TYPE_CHECKING:
    from migrator.sim.fleet import NodeFleet

Obj = dict[str, Any]
NODE_CONFIGS = "cilium.io/ciliumbgpnodeconfigs"
CLUSTER_CONFIGS = "cilium.io/ciliumbgpclusterconfigs"
TRIGGERS = ("nodes", "pods", "services", CLUSTER_CONFIGS, "cilium.io/ciliumbgppeerconfigs",
            "cilium.io/ciliumbgpadvertisements", "cilium.io/ciliumnodes")


class BgpNodeConfigs:
    """The operator's ``CiliumBGPNodeConfig`` objects and the agents' status in them."""

    def __init__(self, fleet: NodeFleet) -> None:
        self.fleet = fleet
        self.store = fleet.store
        self._sync = Coalescer(fleet.world, self.sync, delay=fleet.config.latencies.controller)
        for kind in TRIGGERS:
            fleet.world.on(kind, self._on_event)

    def _served(self) -> bool:
        keys = {t.key for t in self.store.resources()}
        return NODE_CONFIGS in keys and CLUSTER_CONFIGS in keys

    def _on_event(self, event: Event) -> None:
        if event.resource == "pods" and (event.obj["metadata"].get("namespace") != "kube-system"):
            return
        if self.store.count(CLUSTER_CONFIGS) or self.store.count(NODE_CONFIGS):   # cheap: on every event
            self._sync.mark("all")

    def wanted(self) -> dict[str, tuple[Obj, list[Obj]]]:
        """Node name -> (the cluster config selecting it, its bgpInstances)."""
        out: dict[str, tuple[Obj, list[Obj]]] = {}
        configs = sorted(self.store.list(CLUSTER_CONFIGS), key=lambda o: o["metadata"]["name"])
        for node in self.store.list("nodes"):
            labels = node["metadata"].get("labels") or {}
            for cfg in configs:
                selector = (cfg.get("spec") or {}).get("nodeSelector")
                if not selector or label_selector_matches(selector, labels):
                    out[node["metadata"]["name"]] = (cfg, list((cfg.get("spec") or {}).get("bgpInstances") or []))
                    break
        return out

    def _status(self, node: str, instances: list[Obj]) -> Obj | None:
        """What the node's agent reports, or None when it reports nothing now."""
        rt = self.fleet.runtimes.get(node)
        st = rt.cilium if rt else None
        if st is None or not (st.running and st.healthy and not st.crashloop) or not st.flag("enable-bgp-control-plane"):
            return None
        bgp = self.fleet.network.routing.bgp
        sessions = {s.peer: s for s in bgp.sessions() if s.node == node and s.speaker == "cilium"}
        routes: dict[str, int] = {}
        for _prefix, where, router, _accepted, _kind in bgp.announcements():
            if where == node:
                routes[router] = routes.get(router, 0) + 1
        out = []
        for inst in instances:
            peers = []
            for peer in inst.get("peers") or []:
                address = str(peer.get("peerAddress") or "").strip()
                session = sessions.get(address)
                up = session is not None and session.established
                entry: Obj = {"name": peer.get("name", ""), "peerAddress": address,
                              "peeringState": "established" if up else "active"}
                if peer.get("peerASN") is not None:
                    entry["peerASN"] = peer["peerASN"]
                if session is not None and up:
                    entry["routeCount"] = [{"afi": "ipv4", "safi": "unicast",
                                            "advertised": routes.get(session.router, 0), "received": 0}]
                peers.append(entry)
            out.append({"name": inst.get("name", ""), "localASN": inst.get("localASN"), "peers": peers})
        return {"bgpInstances": out}

    def sync(self, _key: str) -> None:
        if not self._served():
            return
        wanted = self.wanted()
        for existing in self.store.list(NODE_CONFIGS):
            name = existing["metadata"]["name"]
            if name not in wanted:
                self.store.delete(NODE_CONFIGS, None, name)
        for node, (cfg, instances) in sorted(wanted.items()):
            spec = {"bgpInstances": copy.deepcopy(instances)}
            current: Obj | None = self.store.try_get(NODE_CONFIGS, None, node)
            if current is None:
                current = self.store.create(NODE_CONFIGS, {
                    "apiVersion": cfg.get("apiVersion", "cilium.io/v2"), "kind": "CiliumBGPNodeConfig",
                    "metadata": {"name": node, "ownerReferences": [{
                        "apiVersion": cfg.get("apiVersion", "cilium.io/v2"), "kind": "CiliumBGPClusterConfig",
                        "name": cfg["metadata"]["name"], "uid": cfg["metadata"].get("uid", ""),
                        "controller": True}]},
                    "spec": spec})
            elif current.get("spec") != spec:
                self.store.mutate(NODE_CONFIGS, None, node, _setter("spec", spec))
            status = self._status(node, instances)
            if status is not None and (current.get("status") or {}) != status:
                self.store.mutate(NODE_CONFIGS, None, node, _setter("status", status), subresource="status")


def _setter(key: str, value: Obj) -> Callable[[Obj], None]:
    def put(obj: Obj) -> None:
        obj[key] = value
    return put
