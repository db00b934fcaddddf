"""The simulated endpoints controller: a Service's ``Endpoints`` follow its pods' readiness.

For every Service with a selector, the Endpoints object of the same name lists the
matching pods that have an IP and are not being deleted: Ready pods under ``addresses``,
the others under ``notReadyAddresses`` (all under ``addresses`` when the Service
publishes not-ready addresses). Ports are the Service's, with ``targetPort`` resolved
against each pod's named container ports, so pods that name a port differently land in
different subsets, as on a real cluster. A Service without a selector is left alone
(its Endpoints are managed by hand), and the Endpoints of a deleted Service go with it.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import pod_is_ready, pod_is_terminating
from migrator.sim.errors import AlreadyExists, NotFound
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]


def _labels_match(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _resolve_port(pod: Obj, target: Any) -> int | None:
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target:
                return int(p["containerPort"])
    return None


Signature = tuple[tuple[str, int, str], ...]   # a subset's ports: (name, port, protocol)
#: where a pod goes in its Service's Endpoints: the subset, its ports, the address with its sort
#: key (ip, pod name), ready or not
Placement = tuple[Signature, list[Obj], tuple[tuple[str, str], Obj], bool]


def _placement(spec: Obj, namespace: str, pod: Obj, publish_all: bool) -> Placement | None:
    """A pod's address in the Endpoints of a Service with ``spec``, None when it has none (no IP
    yet, or being deleted): a function of the Service and the pod alone, so the controller keeps
    it while neither changes (store objects are immutable snapshots named by resourceVersion)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or pod_is_terminating(pod):
        return None
    ports = []
    for sp in spec.get("ports") or []:
        port = _resolve_port(pod, sp.get("targetPort", sp.get("port")))
        if port is None:
            continue
        entry: dict[str, Any] = {"port": port, "protocol": sp.get("protocol", "TCP")}
        if sp.get("name"):
            entry["name"] = sp["name"]
        ports.append(entry)
    signature = tuple((p.get("name", ""), p["port"], p["protocol"]) for p in ports)
    address = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": namespace,
                                       "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}}
    if pod["spec"].get("nodeName"):
        address["nodeName"] = pod["spec"]["nodeName"]
    return signature, ports, ((ip, pod["metadata"]["name"]), address), publish_all or pod_is_ready(pod)


class EndpointsController:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        #: per Service, per pod: the versions of both and the pod's placement
        self._seen: dict[tuple[str, str], dict[str, tuple[tuple[tuple[str, str], str], Placement | None]]] = {}
        world.on("services", self._on_service)
        world.on("pods", self._on_pod)

    def _on_service(self, event: Event) -> None:
        meta = event.obj["metadata"]
        self._sync.mark((meta.get("namespace", ""), meta["name"]))

    def _on_pod(self, event: Event) -> None:
        ns = event.obj["metadata"].get("namespace", "")
        labels = [event.obj["metadata"].get("labels")]
        if event.old is not None:
            labels.append(event.old["metadata"].get("labels"))
        for svc in self.store.list("services", ns):
            selector = (svc.get("spec") or {}).get("selector")
            if selector and any(_labels_match(selector, lbl) for lbl in labels):
                self._sync.mark((ns, svc["metadata"]["name"]))

    def sync(self, key: tuple[str, str]) -> None:
        svc = self.store.try_get("services", key[0], key[1])
        if svc is None:
            self._seen.pop(key, None)
            try:
                self.store.delete("endpoints", key[0], key[1])
            except NotFound:
                pass
            return
        spec = svc.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            return
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        subsets: dict[Signature, Obj] = {}
        version = (svc["metadata"]["uid"], svc["metadata"]["resourceVersion"])
        seen = self._seen.get(key, {})
        self._seen[key] = memo = {}
        for pod in self.store.list("pods", key[0], labels=selector):
            name = pod["metadata"]["name"]
            known = seen.get(name)
            inputs = (version, pod["metadata"]["resourceVersion"])
            place = known[1] if known is not None and known[0] == inputs else \
                _placement(spec, key[0], pod, publish_all)
            memo[name] = (inputs, place)
            if place is None:
                continue
            signature, ports, address, ready = place
            subset = subsets.setdefault(signature, {"addresses": [], "notReadyAddresses": [], "ports": ports})
            subset["addresses" if ready else "notReadyAddresses"].append(address)
        rendered = []
        for signature in sorted(subsets):
            subset = subsets[signature]
            out: Obj = {}
            for field in ("addresses", "notReadyAddresses"):
                if subset[field]:
                    out[field] = [address for _, address in sorted(subset[field], key=itemgetter(0))]
            if subset["ports"]:
                out["ports"] = subset["ports"]
            rendered.append(out)
        self._write(svc, rendered)

    def _write(self, svc: Obj, subsets: list[Obj]) -> None:
        meta = svc["metadata"]
        labels = dict(meta.get("labels") or {})
        current = self.store.try_get("endpoints", meta["namespace"], meta["name"])
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                         "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels}}
            if subsets:
                body["subsets"] = subsets
            try:
                self.store.create("endpoints", body)
                return
            except AlreadyExists:
                pass
        elif current.get("subsets", []) == subsets:
            return

        def write(stored: Obj) -> Obj:   # the subsets are replaced whole: no copy of the old ones
            new = {k: v for k, v in stored.items() if k != "subsets"}
            if subsets:
                new["subsets"] = subsets
            return new

        try:
            self.store.rebuild("endpoints", meta["namespace"], meta["name"], write)
        except NotFound:
            return
