"""Who gives a LoadBalancer Service its IP: MetalLB's controller or Cilium's LB IPAM.

* MetalLB (its documentation, "IPAddressPool" and "Requesting specific IPs"): a Service of no
  ``loadBalancerClass`` takes an address from a pool whose ``serviceAllocation`` (``namespaces``,
  ``serviceSelectors``) admits it; the address asked for in ``spec.loadBalancerIP`` or
  ``metallb.universe.tf/loadBalancerIPs``, else the one it holds, else the first free one when
  the pool's ``autoAssign`` is not false. A Service no pool admits loses its address.
* Cilium LB IPAM (``Documentation/network/lb-ipam.rst``): a ``CiliumLoadBalancerIPPool`` whose
  ``serviceSelector`` matches (no selector: every Service) gives the address asked for in
  ``spec.loadBalancerIP`` or ``lbipam.cilium.io/ips``, else the first free one of its ``blocks``;
  it does not adopt the address a Service holds from someone else (an assumption, marked in the
  hand-over's design notes: the docs name only those two ways of asking).

MetalLB is asked first while one of its pools admits the Service. The controller writes
``status.loadBalancer.ingress``. Without either pool kind served, Services keep what they hold.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.selectors import label_selector_matches
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]
METALLB_POOLS = "metallb.io/ipaddresspools"
CILIUM_POOLS = "cilium.io/ciliumloadbalancerippools"
CILIUM_CLASS = "io.cilium/bgp-control-plane"


def allocates_to(pool: Obj, svc: Obj) -> bool:
    """MetalLB's ``IPAddressPool.spec.serviceAllocation`` admits the Service."""
    alloc = (pool.get("spec") or {}).get("serviceAllocation")
    if not alloc:
        return True
    if alloc.get("namespaces") and svc["metadata"]["namespace"] not in alloc["namespaces"]:
        return False
    selectors = alloc.get("serviceSelectors") or []
    labels = svc["metadata"].get("labels") or {}
    return not selectors or any(label_selector_matches(s, labels) for s in selectors)


def _addresses(entries: list[tuple[str, str | None]]) -> Iterator[str]:
    """Addresses of ``(cidr, None)`` and ``(start, stop)`` entries, in order."""
    for first, last in entries:
        if last is None:
            net = ipaddress.ip_network(first, strict=False)
            yield from (str(a) for a in (net.hosts() if net.num_addresses > 2 else net))
        else:
            a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
            while a <= b:  # type: ignore[operator]
                yield str(a)
                a += 1


def _metallb_entries(pool: Obj) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for entry in (pool.get("spec") or {}).get("addresses") or []:
        if "-" in entry:
            first, last = (p.strip() for p in entry.split("-", 1))
            out.append((first, last))
        else:
            out.append((entry, None))
    return out


def _cilium_entries(pool: Obj) -> list[tuple[str, str | None]]:
    return [(b["cidr"], None) if b.get("cidr") else (b["start"], b.get("stop") or b["start"])
            for b in (pool.get("spec") or {}).get("blocks") or []]


class LoadBalancerController:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.store = world.store
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        world.on("services", self._on_service)
        world.on(METALLB_POOLS, self._on_pool)
        world.on(CILIUM_POOLS, self._on_pool)

    def _on_service(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pool(self, _event: Event) -> None:
        for svc in self.store.list("services"):
            self._sync.mark((svc["metadata"]["namespace"], svc["metadata"]["name"]))

    def _list(self, key: str) -> list[Obj]:
        return self.store.list(key) if key in {t.key for t in self.store.resources()} else []

    def _taken(self, svc: Obj) -> set[str]:
        uid = svc["metadata"].get("uid")
        return {i.get("ip") for s in self.store.list("services") if s["metadata"].get("uid") != uid
                for i in ((s.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []}

    def _pick(self, entries: list[tuple[str, str | None]], asked: list[str], held: list[str],
              taken: set[str], auto: bool) -> str | None:
        inside = set(_addresses(entries))
        for ip in asked + held:
            if ip in inside and ip not in taken:
                return ip
        if asked or not auto:
            return None
        return next((ip for ip in _addresses(entries) if ip not in taken), None)

    def _wanted(self, svc: Obj) -> list[str] | None:
        """The Service's addresses, or None to leave them as they are (nobody manages it)."""
        spec, notes = svc.get("spec") or {}, svc["metadata"].get("annotations") or {}
        held = [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
                if i.get("ip")]
        pinned = [spec["loadBalancerIP"]] if spec.get("loadBalancerIP") else []
        metallb_pools, cilium_pools = self._list(METALLB_POOLS), self._list(CILIUM_POOLS)
        if not metallb_pools and not cilium_pools:
            return None
        taken = self._taken(svc)
        if spec.get("loadBalancerClass") in (None, ""):
            asked = pinned or [a.strip() for a in (notes.get("metallb.universe.tf/loadBalancerIPs") or "").split(",")
                               if a.strip()]
            for pool in metallb_pools:
                if allocates_to(pool, svc):
                    ip = self._pick(_metallb_entries(pool), asked, held, taken,
                                    (pool.get("spec") or {}).get("autoAssign", True) is not False)
                    if ip:
                        return [ip]
        if spec.get("loadBalancerClass") in (None, "", CILIUM_CLASS):
            asked = pinned or [a.strip() for a in (notes.get("lbipam.cilium.io/ips") or "").split(",") if a.strip()]
            for pool in cilium_pools:
                selector = (pool.get("spec") or {}).get("serviceSelector")
                if selector and not label_selector_matches(selector, svc["metadata"].get("labels") or {}):
                    continue
                ip = self._pick(_cilium_entries(pool), asked, [], taken, True)
                if ip:
                    return [ip]
        return []

    def sync(self, key: tuple[str, str]) -> None:
        svc = self.store.try_get("services", key[0], key[1])
        if svc is None or (svc.get("spec") or {}).get("type") != "LoadBalancer":
            return
        wanted = self._wanted(svc)
        if wanted is None:
            return
        ingress = [{"ip": ip, "ipMode": "VIP"} for ip in wanted]
        if ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") == ingress:
            return

        def write(o: Obj) -> None:
            o.setdefault("status", {})["loadBalancer"] = {"ingress": ingress} if ingress else {}
        self.store.mutate("services", key[0], key[1], write, subresource="status")
