"""Garbage collection: owner references, namespace deletion and pods of vanished nodes.

* **Background** (the default): once an owner is gone, each dependent whose owners are all
  gone is deleted (pods gracefully, so their kubelet stops them), and dangling references
  to a gone owner are dropped from dependents that still have a live owner.
* **Foreground**: an owner deleted with ``propagationPolicy=Foreground`` carries the
  ``foregroundDeletion`` finalizer; its dependents are deleted first (their own
  dependents likewise), and the finalizer goes when none is left, so the owner goes last.
* **Orphan**: the ``orphan`` finalizer makes the collector strip the owner's references
  from its dependents and then release the owner.
* **Namespaces**: a namespace being deleted stays ``Terminating`` until everything in it
  is gone; then its ``kubernetes`` finalizer is removed and the store lets it go. A
  namespace that vanished outright has its contents deleted all the same.
* **Pod GC**: pods bound to a node that no longer exists are deleted at once.

Dependents are found through an owner-uid map kept from the event stream, so nothing
scans the store per event.
"""

from __future__ import annotations

from typing import Any

import structlog

from migrator.sim.config import SimConfig
from migrator.sim.controllers.coalesce import Coalescer
from migrator.sim.controllers.podfactory import delete_pod
from migrator.sim.errors import NotFound
from migrator.sim.store import Event
from migrator.sim.world import World

Obj = dict[str, Any]
ObjKey = tuple[str, str, str]  # resource, namespace, name
log = structlog.get_logger("migrator.sim.gc")

FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
NAMESPACE_FINALIZER = "kubernetes"


class GarbageCollector:
    def __init__(self, world: World, config: SimConfig) -> None:
        self.world = world
        self.store = world.store
        self._alive: dict[str, ObjKey] = {}
        self._owners: dict[ObjKey, set[str]] = {}
        self._dependents: dict[str, set[ObjKey]] = {}
        self._terminating_ns: set[str] = set()
        self._work = Coalescer(world, self._process, delay=config.latencies.controller)
        world.on(None, self._on_event)

    # ------------------------------------------------------------------ bookkeeping
    def _on_event(self, event: Event) -> None:
        obj = event.obj
        meta = obj["metadata"]
        key = (event.resource, meta.get("namespace", ""), meta["name"])
        uid = meta.get("uid", "")
        for owner in self._owners.pop(key, set()):
            self._dependents.get(owner, set()).discard(key)
            if not self._dependents.get(owner):
                self._dependents.pop(owner, None)
                if self._finalizing(owner):
                    self._work.mark(("owner", owner))
        if event.type == "DELETED":
            if self._alive.get(uid) == key:
                del self._alive[uid]
            if uid in self._dependents:
                self._work.mark(("owner", uid))
            if event.resource == "namespaces":
                self._terminating_ns.add(meta["name"])
                self._work.mark(("namespace", meta["name"]))
            if event.resource == "nodes":
                self._work.mark(("node", meta["name"]))
        else:
            self._alive[uid] = key
            owners = {r["uid"] for r in meta.get("ownerReferences") or [] if r.get("uid")}
            if owners:
                self._owners[key] = owners
                for owner in owners:
                    self._dependents.setdefault(owner, set()).add(key)
            finalizers = meta.get("finalizers") or []
            if meta.get("deletionTimestamp") and (FOREGROUND in finalizers or ORPHAN in finalizers):
                self._work.mark(("owner", uid))
            if event.resource == "namespaces" and meta.get("deletionTimestamp"):
                self._terminating_ns.add(meta["name"])
                self._work.mark(("namespace", meta["name"]))
        ns = meta.get("namespace")
        if ns and ns in self._terminating_ns and event.type == "DELETED":
            self._work.mark(("namespace", ns))

    def _finalizing(self, uid: str) -> bool:
        obj = self._get(self._alive.get(uid))
        return bool(obj and obj["metadata"].get("deletionTimestamp")
                    and FOREGROUND in (obj["metadata"].get("finalizers") or []))

    def _get(self, key: ObjKey | None) -> Obj | None:
        if key is None:
            return None
        try:
            return self.store.try_get(key[0], key[1] or None, key[2])
        except NotFound:
            return None

    # ------------------------------------------------------------------ work
    def _process(self, item: tuple[str, str]) -> None:
        kind, name = item
        if kind == "owner":
            self._process_owner(name)
        elif kind == "namespace":
            self._process_namespace(name)
        elif kind == "node":
            for pod in self.store.list("pods", index=("nodeName", name)):
                self._delete(("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]), force=True)

    def _process_owner(self, uid: str) -> None:
        owner = self._get(self._alive.get(uid))
        dependents = sorted(self._dependents.get(uid, set()))
        if owner is None:
            for dep_key in dependents:
                dep = self._get(dep_key)
                if dep is None:
                    continue
                refs = dep["metadata"].get("ownerReferences") or []
                if any(r.get("uid") in self._alive for r in refs):
                    self._strip_refs(dep_key, {r["uid"] for r in refs if r.get("uid") not in self._alive})
                else:
                    self._delete(dep_key)
            return
        finalizers = owner["metadata"].get("finalizers") or []
        if not owner["metadata"].get("deletionTimestamp"):
            return
        owner_key = self._alive[uid]
        if ORPHAN in finalizers:
            for dep_key in dependents:
                self._strip_refs(dep_key, {uid})
            self._remove_finalizer(owner_key, ORPHAN)
        elif FOREGROUND in finalizers:
            if not dependents:
                self._remove_finalizer(owner_key, FOREGROUND)
                return
            for dep_key in dependents:
                self._delete(dep_key, foreground=bool(self._dependents.get(self._uid_of(dep_key), ())))

    def _uid_of(self, key: ObjKey) -> str:
        obj = self._get(key)
        return obj["metadata"]["uid"] if obj else ""

    def _process_namespace(self, name: str) -> None:
        remaining = 0
        for rtype in self.store.resources():
            if not rtype.namespaced:
                continue
            for obj in self.store.list(rtype.key, name):
                remaining += 1
                self._delete((rtype.key, name, obj["metadata"]["name"]))
        ns = self.store.try_get("namespaces", None, name)
        if ns is None:
            if not remaining:
                self._terminating_ns.discard(name)
            return
        if remaining:
            if (ns.get("status") or {}).get("phase") != "Terminating":
                self._mutate(("namespaces", "", name),
                             lambda d: d.setdefault("status", {}).update(phase="Terminating"), status=True)
            return
        self._terminating_ns.discard(name)

        def release(draft: Obj) -> None:
            spec_finalizers = [f for f in (draft.get("spec") or {}).get("finalizers") or []
                               if f != NAMESPACE_FINALIZER]
            if "spec" in draft:
                draft["spec"]["finalizers"] = spec_finalizers
            draft["metadata"]["finalizers"] = [f for f in draft["metadata"].get("finalizers") or []
                                               if f != NAMESPACE_FINALIZER]

        self._mutate(("namespaces", "", name), release)
        ns = self.store.try_get("namespaces", None, name)
        if ns is not None and not ns["metadata"].get("finalizers"):
            try:
                self.store.delete("namespaces", None, name)
            except NotFound:
                pass
        log.info("sim.gc.namespace_deleted", namespace=name)

    # ------------------------------------------------------------------ writes
    def _delete(self, key: ObjKey, *, force: bool = False, foreground: bool = False) -> None:
        obj = self._get(key)
        if obj is None:
            return
        if foreground and FOREGROUND not in (obj["metadata"].get("finalizers") or []):
            self._mutate(key, lambda d: d["metadata"].setdefault("finalizers", []).append(FOREGROUND))
        try:
            if key[0] == "pods" and not force:
                delete_pod(self.store, obj)
            else:
                self.store.delete(key[0], key[1] or None, key[2])
        except NotFound:
            return
        log.debug("sim.gc.deleted", resource=key[0], namespace=key[1], name=key[2])

    def _strip_refs(self, key: ObjKey, uids: set[str]) -> None:
        def strip(draft: Obj) -> None:
            refs = [r for r in draft["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
            if refs:
                draft["metadata"]["ownerReferences"] = refs
            else:
                draft["metadata"].pop("ownerReferences", None)
        self._mutate(key, strip)

    def _remove_finalizer(self, key: ObjKey, finalizer: str) -> None:
        def remove(draft: Obj) -> None:
            draft["metadata"]["finalizers"] = [f for f in draft["metadata"].get("finalizers") or []
                                               if f != finalizer]
        self._mutate(key, remove)

    def _mutate(self, key: ObjKey, fn: Any, *, status: bool = False) -> None:
        try:
            self.store.mutate(key[0], key[1] or None, key[2], fn, subresource="status" if status else None)
        except NotFound:
            return
