"""The simulated endpoints controller: a Service's ``Endpoints`` follow its pods' readiness.

For every Service with a selector, the Endpoints object of the same name lists the
matching pods that have an IP and are not being deleted: Ready pods under ``addresses``,
the others under ``notReadyAddresses`` (all under ``addresses`` when the Service
publishes not-ready addresses). Ports are the Service's, with ``targetPort`` resolved
against each pod's named container ports, so pods that name a port differently land in
different subsets, as on a real cluster. A Service without a selector is left alone
(its Endpoints are managed by hand), and the Endpoints of a deleted Service go with it.

A sync costs what changed, not the Service's size: the controller keeps each Service's
subsets as it last wrote them, each address under its sort key, and a pod event adds the pod
to its Services' changed set, so a sync places those pods again and renders the subsets from
what it kept. A new version of the Service (or a first sync) places every selected pod afresh.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.matching import pod_is_ready, pod_is_terminating, selector_matches
from migrator.sim.errors import AlreadyExists, NotFound
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]


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


Key = tuple[str, str]


@dataclass
class _Subset:
    ports: list[Obj]
    ready: dict[tuple[str, str], Obj] = field(default_factory=dict)        # by sort key (ip, pod name)
    not_ready: dict[tuple[str, str], Obj] = field(default_factory=dict)


@dataclass
class _Kept:
    """One Service's Endpoints as last rendered: each selected pod's version and placement by
    pod name, and the subsets those placements make."""

    version: tuple[str, str]                       # the Service's uid and resourceVersion
    places: dict[str, tuple[str, Placement | None]] = field(default_factory=dict)
    subsets: dict[Signature, _Subset] = field(default_factory=dict)

    def drop(self, name: str) -> None:
        known = self.places.pop(name, None)
        if known is None or known[1] is None:
            return
        signature, _, (sort_key, _), ready = known[1]
        subset = self.subsets[signature]
        (subset.ready if ready else subset.not_ready).pop(sort_key, None)
        if not subset.ready and not subset.not_ready:
            del self.subsets[signature]

    def place(self, name: str, version: str, placement: Placement | None) -> None:
        self.places[name] = (version, placement)
        if placement is None:
            return
        signature, ports, (sort_key, address), ready = placement
        subset = self.subsets.setdefault(signature, _Subset(ports))
        (subset.ready if ready else subset.not_ready)[sort_key] = address

    def render(self) -> list[Obj]:
        rendered = []
        for signature in sorted(self.subsets):
            subset = self.subsets[signature]
            out: Obj = {}
            if subset.ready:
                out["addresses"] = list(map(subset.ready.__getitem__, sorted(subset.ready)))
            if subset.not_ready:
                out["notReadyAddresses"] = list(map(subset.not_ready.__getitem__, sorted(subset.not_ready)))
            if subset.ports:
                out["ports"] = subset.ports
            rendered.append(out)
        return rendered


class EndpointsController:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._sync = Coalescer(world, self.sync, delay=config.latencies.controller)
        self._kept: dict[Key, _Kept] = {}
        #: per Service, the pods changed since its last sync (None: place every pod afresh)
        self._changed: dict[Key, set[str] | None] = {}
        world.on("services", self._on_service)
        world.on("pods", self._on_pod)

    def _on_service(self, event: Event) -> None:
        meta = event.obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        self._changed[key] = None
        self._sync.mark(key)

    def _on_pod(self, event: Event) -> None:
        ns = event.obj["metadata"].get("namespace", "")
        labels = [event.obj["metadata"].get("labels")]
        if event.old is not None:
            labels.append(event.old["metadata"].get("labels"))
        for svc in self.store.list("services", ns):
            selector = (svc.get("spec") or {}).get("selector")
            if selector and any(selector_matches(selector, lbl) for lbl in labels):
                key = (ns, svc["metadata"]["name"])
                pods = self._changed.setdefault(key, set())
                if pods is not None:
                    pods.add(event.obj["metadata"]["name"])
                self._sync.mark(key)

    def sync(self, key: Key) -> None:
        changed = self._changed.pop(key, None)
        svc = self.store.try_get("services", key[0], key[1])
        if svc is None:
            self._kept.pop(key, None)
            try:
                self.store.delete("endpoints", key[0], key[1])
            except NotFound:
                pass
            return
        spec = svc.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            self._kept.pop(key, None)
            return
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        version = (svc["metadata"]["uid"], svc["metadata"]["resourceVersion"])
        kept = self._kept.get(key)
        if kept is None or kept.version != version or changed is None:
            kept = self._kept[key] = _Kept(version)
            pods: list[tuple[str, Obj | None]] = [
                (p["metadata"]["name"], p) for p in self.store.list("pods", key[0], labels=selector)]
        else:
            pods = []
            for name in sorted(changed):
                pod = self.store.try_get("pods", key[0], name)
                pods.append((name, pod if pod is not None and selector_matches(selector, pod["metadata"].get("labels"))
                             else None))
        for name, pod in pods:
            known = kept.places.get(name)
            kept.drop(name)
            if pod is None:
                continue
            version_of_pod = pod["metadata"]["resourceVersion"]
            placement = known[1] if known is not None and known[0] == version_of_pod else \
                _placement(spec, key[0], pod, publish_all)
            kept.place(name, version_of_pod, placement)
        self._write(svc, kept.render())

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
