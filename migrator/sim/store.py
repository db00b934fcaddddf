"""The simulated cluster's object store: what etcd plus the generic registry do.

One ``Store`` holds every object of the simulated cluster, keyed by resource, namespace
and name. It owns the semantics that every resource shares on a real API server:

* a global, monotonically increasing ``resourceVersion`` (an int rendered as a string);
* ``uid``, ``creationTimestamp`` and, on the kinds that have one (``GENERATION``),
  ``generation``, bumped when what that kind's strategy watches changes;
* compare-and-swap: an update carrying a ``resourceVersion`` that is not the current one
  raises ``Conflict``; a no-op update does not bump the version;
* status subresources: a write to the main resource keeps the stored ``status``, a write
  to ``status`` keeps everything else;
* finalizers and graceful deletion: ``deletionTimestamp`` is set while finalizers remain
  (or while a graceful deletion is pending), and the object goes once they are gone;
* a bounded history of change events for watches, with ``Gone`` past its start;
* secondary indexes (pods by ``spec.nodeName``) so that per-node lists stay cheap at
  20,000 pods; and, for every resource, its keys per namespace and per label (``key=value``),
  so that a namespace's list or a label selector's candidates cost what they return, not what
  the table holds. Sorted key lists are kept until a key comes or goes (most writes change an
  object, not the set of keys), so a list does not sort the table again.

It knows nothing about HTTP, schemas or controllers; the API server and the simulated
controllers both call it in-process. It is thread-safe: one re-entrant lock guards all
state, and ``changed`` (a condition on that lock) wakes watchers.

Objects handed out by ``get``/``list`` are shared snapshots: never mutate them. Every
write stores a fresh deep copy, so a snapshot never changes under its reader. To edit,
use ``mutate`` (which hands the callback a private copy) or deep-copy first. Copies are made
by ``clone``, which knows objects are JSON trees: ``copy.deepcopy``'s memo and dispatch made
it most of the cost of booting a large cluster.
"""

from __future__ import annotations

import builtins
import copy
import itertools
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrator.sim.errors import AlreadyExists, Conflict, Gone, Invalid, NotFound

Obj = dict[str, Any]
Predicate = Callable[[Obj], bool]
IndexFn = Callable[[Obj], str | None]


_SCALARS = frozenset({str, int, float, bool, type(None)})


def clone(obj: Any) -> Any:
    """A deep copy of a JSON tree (dicts, lists, strings, numbers, booleans, None), several times
    faster than ``copy.deepcopy``; anything else inside is handed to ``copy.deepcopy``. Unlike
    ``deepcopy`` it does not preserve aliasing: a dict held twice is copied twice, as a JSON
    round trip would."""
    kind = type(obj)
    if kind is dict:
        return {k: v if type(v) in _SCALARS else clone(v) for k, v in obj.items()}
    if kind is list:
        return [v if type(v) in _SCALARS else clone(v) for v in obj]
    if kind in _SCALARS:
        return obj
    return copy.deepcopy(obj)


def _status_draft(obj: Obj) -> Obj:
    """What a status write's ``fn`` edits: a private status, metadata whose own fields and
    annotations are private (a Deployment's revision goes in through status), the rest shared
    with the stored snapshot (read only: the write keeps none of it)."""
    meta = dict(obj["metadata"])
    if isinstance(meta.get("annotations"), dict):
        meta["annotations"] = dict(meta["annotations"])
    return {k: clone(v) if k == "status" else v for k, v in obj.items()} | {"metadata": meta}


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes renders it (second precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ResourceType:
    """What the store must know about one resource (a group and a plural).

    ``key`` is ``plural`` for the core group and ``group/plural`` otherwise, for example
    ``pods``, ``apps/daemonsets``, ``cilium.io/ciliumnodeconfigs``. Objects are stored in
    one version whatever version they were written at; the API layer converts.
    """

    group: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool = False
    custom: bool = False   # served from a CustomResourceDefinition

    @property
    def key(self) -> str:
        return f"{self.group}/{self.plural}" if self.group else self.plural

    @property
    def generation_source(self) -> Callable[[Obj], object] | None:
        """What of an object must change for ``metadata.generation`` to move; None for the kinds
        kube-apiserver keeps no generation for."""
        if self.custom:
            return _all_but_metadata
        return GENERATION.get((self.group, self.kind))


def _spec(obj: Obj) -> object:
    return obj.get("spec") or {}


def _spec_and_annotations(obj: Obj) -> object:
    return _spec(obj), (obj.get("metadata") or {}).get("annotations") or {}


def _all_but_metadata(obj: Obj) -> object:
    return {k: v for k, v in obj.items() if k != "metadata"}


#: The built-in kinds kube-apiserver v1.32 keeps ``metadata.generation`` for, and what a write must
#: change to bump it: each kind's registry strategy sets 1 in PrepareForCreate and adds one in
#: PrepareForUpdate (pkg/registry/<group>/<kind>/strategy.go). Deployments count annotations too,
#: as they are copied to ReplicaSets (deployment/strategy.go). Custom resources count everything
#: but metadata (apiextensions-apiserver customresource/strategy.go; a status subresource keeps
#: status out, as the store does). Every other kind has none: ConfigMap, Secret, Service,
#: Endpoints, Event, Lease, Namespace, Node, ServiceAccount, ControllerRevision, RBAC, and Pod,
#: which gets one only from v1.33 (KEP-5067). A client cannot set it either way.
GENERATION: dict[tuple[str, str], Callable[[Obj], object]] = {
    ("apps", "Deployment"): _spec_and_annotations,
    ("apps", "DaemonSet"): _spec,
    ("apps", "ReplicaSet"): _spec,
    ("apps", "StatefulSet"): _spec,
    ("batch", "Job"): _spec,
    ("batch", "CronJob"): _spec,
    ("policy", "PodDisruptionBudget"): _spec,
    ("networking.k8s.io", "NetworkPolicy"): _spec,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _spec,
}

#: Kinds whose status writes also carry ``metadata.annotations``: kube-apiserver's Deployment
#: status strategy resets only spec and labels (deployment/strategy.go), and the deployment
#: controller records its revision annotation with UpdateStatus, so without a new generation.
STATUS_WRITES_ANNOTATIONS = frozenset({("apps", "Deployment")})


@dataclass(frozen=True)
class Event:
    """One committed change, as a watch stream reports it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: str  # ResourceType.key
    obj: Obj
    old: Obj | None = None  # the object before a MODIFIED/DELETED (watch selectors need it)


Key = tuple[str, str]   # (namespace, name); namespace "" for cluster-scoped objects


@dataclass
class _Table:
    rtype: ResourceType
    objects: dict[Key, Obj] = field(default_factory=dict)
    indexes: dict[str, tuple[IndexFn, dict[str, set[Key]]]] = field(default_factory=dict)
    namespaces: dict[str, set[Key]] = field(default_factory=dict)     # namespace -> its keys
    labels: dict[tuple[str, Any], set[Key]] = field(default_factory=dict)   # (label, value) -> keys
    changed_at: dict[str, int] = field(default_factory=dict)   # namespace -> its newest change's version
    #: sorted keys per namespace (None: every namespace), dropped when a key comes or goes
    ordered: dict[str | None, builtins.list[Key]] = field(default_factory=dict)

    def sorted_keys(self, namespace: str | None) -> builtins.list[Key]:
        keys = self.ordered.get(namespace)
        if keys is None:
            keys = self.ordered[namespace] = sorted(
                self.objects if namespace is None else self.namespaces.get(namespace, ()))
        return keys

    def keys_added_or_removed(self, key: Key, present: bool) -> None:
        members = self.namespaces.setdefault(key[0], set())
        if present:
            members.add(key)
        else:
            members.discard(key)
            if not members:
                del self.namespaces[key[0]]
        self.ordered.pop(None, None)
        self.ordered.pop(key[0], None)

    def relabel(self, key: Key, before: Obj | None, after: Obj | None) -> None:
        if _labels_of(before) == _labels_of(after):   # most writes leave the labels alone
            return
        old, new = _label_pairs(before), _label_pairs(after)
        for pair in old - new:
            members = self.labels.get(pair)
            if members is not None:
                members.discard(key)
                if not members:
                    del self.labels[pair]
        for pair in new - old:
            self.labels.setdefault(pair, set()).add(key)


_LABEL_VALUES = (str, int, float, bool, type(None))   # what the label index keeps (hashable scalars)


def _labels_of(obj: Obj | None) -> Any:
    return (obj.get("metadata") or {}).get("labels") if obj is not None else None


def _label_pairs(obj: Obj | None) -> frozenset[tuple[str, Any]]:
    """An object's labels as (key, value) pairs. A label value is a string; a value that is not a
    scalar (never valid) is left out, and a selector asking for one matches nothing here."""
    labels = _labels_of(obj)
    if not isinstance(labels, dict):
        return frozenset()
    return frozenset((k, v) for k, v in labels.items() if isinstance(v, _LABEL_VALUES))


#: The ObjectMeta collections kube-apiserver serialises with ``omitempty``: stored empty, they are
#: not there when read back (``kubectl diff`` would otherwise show an ``annotations: {}`` the
#: client sent and no real server keeps).
OMITTED_WHEN_EMPTY = ("labels", "annotations", "finalizers", "ownerReferences", "managedFields")


def drop_empty_metadata(meta: Obj) -> None:
    for key in OMITTED_WHEN_EMPTY:
        if key in meta and not meta[key]:
            del meta[key]


class Store:
    """Thread-safe in-memory object store with Kubernetes write semantics."""

    def __init__(self, *, history: int = 20_000) -> None:
        self.lock = threading.RLock()
        # what watches wait on: a condition per resource, so a commit wakes only the watches of
        # its resource, all on a lock of their own, so that they do not queue for the store's
        self._signal = threading.Lock()
        self._changed: dict[str, threading.Condition] = {}
        self._last_of: dict[str, int] = {}   # resource -> resourceVersion of its latest event
        self._tables: dict[str, _Table] = {}
        self._rv = itertools.count(1)
        self._last_rv = 0
        self._history: list[Event] = []   # consecutive resourceVersions: index = rv - first rv
        self._history_max = history
        self._subscribers: list[Callable[[Event], None]] = []
        #: called as ``defaulter(rtype, obj)`` on every create (server-side defaulting)
        self.defaulter: Callable[[ResourceType, Obj], None] | None = None
        #: the cluster's Service ClusterIP range, set with the API (``registry.install_api``)
        self.service_cidr = "10.96.0.0/12"

    # ------------------------------------------------------------------ registry
    def register(self, rtype: ResourceType) -> None:
        """Make a resource known. Registering the same key again is a no-op."""
        with self.lock:
            self._tables.setdefault(rtype.key, _Table(rtype))

    def resource_type(self, resource: str) -> ResourceType:
        return self._table(resource).rtype

    def resources(self) -> list[ResourceType]:
        with self.lock:
            return [t.rtype for t in self._tables.values()]

    def count(self, resource: str) -> int:
        """How many objects of ``resource`` are stored (0 for a resource not registered)."""
        with self.lock:
            table = self._tables.get(resource)
            return len(table.objects) if table is not None else 0

    def add_index(self, resource: str, name: str, fn: IndexFn) -> None:
        """Maintain ``fn(obj) -> value`` so that ``list(..., index=(name, value))`` is cheap."""
        with self.lock:
            table = self._table(resource)
            buckets: dict[str, set[tuple[str, str]]] = {}
            for k, obj in table.objects.items():
                value = fn(obj)
                if value is not None:
                    buckets.setdefault(value, set()).add(k)
            table.indexes[name] = (fn, buckets)

    def subscribe(self, callback: Callable[[Event], None]) -> None:
        """Call ``callback(event)`` after every commit, under the store lock.

        Callbacks must be quick and must not block (enqueue work, do not do it).
        """
        with self.lock:
            self._subscribers.append(callback)

    # ------------------------------------------------------------------ reads
    @property
    def resource_version(self) -> int:
        """The resourceVersion of the newest committed change."""
        return self._last_rv

    def namespace_version(self, resource: str, namespace: str | None) -> int:
        """The resourceVersion of the newest change (write or removal) to ``resource`` in
        ``namespace`` (0: none yet): what was computed from that namespace's objects at this
        version still holds while it stays the same."""
        with self.lock:
            return self._table(resource).changed_at.get(namespace or "", 0)

    def get(self, resource: str, namespace: str | None, name: str) -> Obj:
        with self.lock:
            table = self._table(resource)
            obj = table.objects.get((namespace or "", name))
            if obj is None:
                raise NotFound.of(table.rtype.plural, name, table.rtype.group)
            return obj

    def try_get(self, resource: str, namespace: str | None, name: str) -> Obj | None:
        with self.lock:
            return self._table(resource).objects.get((namespace or "", name))

    def list(
        self,
        resource: str,
        namespace: str | None = None,
        *,
        predicate: Predicate | None = None,
        index: tuple[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> builtins.list[Obj]:
        """Objects of ``resource``, sorted by namespace and name.

        ``namespace=None`` lists every namespace. ``index=(name, value)`` restricts to the
        objects an index maps to ``value``; ``labels`` to the objects carrying every one of
        these labels (a Service's selector, a LabelSelector's ``matchLabels``; empty: no
        restriction); ``predicate`` filters further.
        """
        with self.lock:
            table = self._table(resource)
            keys: Iterable[Key]
            if index is not None:
                _, buckets = table.indexes[index[0]]
                keys = sorted(buckets.get(index[1], ()))
            elif labels:
                keys = self._labelled(table, labels)
            else:
                keys = table.sorted_keys(namespace)
            out = []
            for k in keys:
                if namespace is not None and k[0] != namespace:
                    continue
                obj = table.objects[k]
                if predicate is None or predicate(obj):
                    out.append(obj)
            return out

    @staticmethod
    def _labelled(table: _Table, labels: dict[str, str]) -> builtins.list[Key]:
        """The sorted keys of the objects carrying every label of ``labels``."""
        if not all(isinstance(v, _LABEL_VALUES) for v in labels.values()):
            return []
        buckets = sorted((table.labels.get(pair, set()) for pair in labels.items()), key=len)
        return sorted(buckets[0].intersection(*buckets[1:]))

    def events_since(self, rv: int) -> builtins.list[Event]:
        """Events newer than ``rv``; ``Gone`` when the history no longer reaches back to it."""
        with self.lock:
            if rv >= self._last_rv:
                return []
            if not self._history or self._history[0].rv > rv + 1:
                first = self._history[0].rv - 1 if self._history else self._last_rv
                raise Gone(f"too old resource version: {rv} ({first})")
            return self._history[rv + 1 - self._history[0].rv:]

    # ------------------------------------------------------------------ writes
    def create(self, resource: str, obj: Obj) -> Obj:
        """Store a new object and return it with server-set metadata."""
        with self.lock:
            table = self._table(resource)
            rtype = table.rtype
            new = clone(obj)
            meta = new.setdefault("metadata", {})
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise Invalid.of(rtype.kind, "", [{
                        "field": "metadata.name", "reason": "FieldValueRequired",
                        "message": "name or generateName is required"}], rtype.group)
                meta["name"] = prefix + uuid.uuid4().hex[:5]
            ns = meta.get("namespace", "") if rtype.namespaced else ""
            if not rtype.namespaced:
                meta.pop("namespace", None)
            key = (ns, meta["name"])
            if key in table.objects:
                raise AlreadyExists.of(rtype.plural, meta["name"], rtype.group)
            if self.defaulter is not None:
                self.defaulter(rtype, new)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            meta.pop("generation", None)
            if rtype.generation_source is not None:
                meta["generation"] = 1
            meta.pop("deletionTimestamp", None)
            meta.pop("resourceVersion", None)
            drop_empty_metadata(meta)
            self._commit(table, key, new, "ADDED")
            return new

    def update(self, resource: str, obj: Obj, *, subresource: str | None = None,
               check_version: bool = True) -> Obj:
        """Replace an object (PUT semantics). CAS on ``metadata.resourceVersion`` if given."""
        with self.lock:
            table = self._table(resource)
            meta = obj.get("metadata") or {}
            key = (meta.get("namespace", "") if table.rtype.namespaced else "", meta.get("name", ""))
            current = table.objects.get(key)
            if current is None:
                raise NotFound.of(table.rtype.plural, key[1], table.rtype.group)
            wanted_rv = meta.get("resourceVersion")
            if check_version and wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                raise Conflict.stale(table.rtype.plural, key[1], table.rtype.group)
            return self._replace(table, key, current, clone(obj), subresource)

    def _existing(self, resource: str, namespace: str | None, name: str) -> tuple[_Table, tuple[str, str], Obj]:
        """The table, key and stored object of an object that must exist (caller holds the lock)."""
        table = self._table(resource)
        key = ((namespace or "") if table.rtype.namespaced else "", name)
        current = table.objects.get(key)
        if current is None:
            raise NotFound.of(table.rtype.plural, name, table.rtype.group)
        return table, key, current

    def mutate(self, resource: str, namespace: str | None, name: str,
               fn: Callable[[Obj], Obj | None], *, subresource: str | None = None) -> Obj:
        """Atomically read, edit and write one object (for in-process controllers).

        ``fn`` receives a private deep copy and returns the new object (or edits in place
        and returns None). No CAS: the lock makes the read-modify-write atomic. For a status
        write only the draft's ``status`` and ``metadata`` are private copies: the write keeps
        nothing else of it, so the rest is the stored snapshot's, which ``fn`` only reads.
        """
        with self.lock:
            table, key, current = self._existing(resource, namespace, name)
            draft = clone(current) if subresource != "status" else _status_draft(current)
            result = fn(draft)
            new = draft if result is None else result
            return self._replace(table, key, current, new, subresource)

    def rebuild(self, resource: str, namespace: str | None, name: str, fn: Callable[[Obj], Obj]) -> Obj:
        """Atomically write ``fn(current)`` as the object's next version, without copying: for a
        large object of which a controller replaces a part (an Endpoints' subsets), where
        ``mutate``'s private deep copy would cost more than the write.

        ``fn`` gets the stored snapshot, must not change it, and returns a new object; that object
        may share the parts it keeps with the snapshot (snapshots never change), and is owned by
        the store from then on. Its ``metadata`` is copied, as the store sets fields in it.
        """
        with self.lock:
            table, key, current = self._existing(resource, namespace, name)
            new = fn(current)
            new["metadata"] = dict(new.get("metadata") or {})
            return self._replace(table, key, current, new, None)

    def delete(self, resource: str, namespace: str | None, name: str, *,
               graceful: bool = False, uid: str | None = None,
               resource_version: str | None = None) -> tuple[Obj, bool]:
        """Delete an object. Returns ``(object, gone)``.

        With finalizers left, or ``graceful=True`` (a pod whose kubelet must stop it
        first), the object only gets ``deletionTimestamp`` and stays (``gone`` False);
        calling ``delete`` again with ``graceful=False`` removes it once no finalizers
        remain. ``uid``/``resource_version`` are preconditions (409 when they differ).
        """
        with self.lock:
            table = self._table(resource)
            rtype = table.rtype
            key = ((namespace or "") if rtype.namespaced else "", name)
            current = table.objects.get(key)
            if current is None:
                raise NotFound.of(rtype.plural, name, rtype.group)
            cmeta = current["metadata"]
            if uid and uid != cmeta.get("uid"):
                raise Conflict(
                    f'Precondition failed: UID in precondition: {uid}, UID in object meta: {cmeta.get("uid")}',
                    details={"name": name, "kind": rtype.plural})
            if resource_version and resource_version != cmeta.get("resourceVersion"):
                raise Conflict.stale(rtype.plural, name, rtype.group)
            if cmeta.get("finalizers") or (graceful and not cmeta.get("deletionTimestamp")):
                if cmeta.get("deletionTimestamp"):
                    return current, False
                new = clone(current)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                self._commit(table, key, new, "MODIFIED")
                return new, False
            self._remove(table, key, current)
            return current, True

    # ------------------------------------------------------------------ internals
    def _table(self, resource: str) -> _Table:
        try:
            return self._tables[resource]
        except KeyError:
            raise NotFound(f"the server could not find the requested resource ({resource})") from None

    def _replace(self, table: _Table, key: tuple[str, str], current: Obj, new: Obj,
                 subresource: str | None) -> Obj:
        rtype = table.rtype
        cmeta = current["metadata"]
        if subresource == "status":
            # its status is replaced; the rest is shared with the snapshot (snapshots never change)
            # but for the metadata, which the commit writes into
            merged = {k: v for k, v in current.items() if k != "status"}
            merged["metadata"] = dict(cmeta)
            if "status" in new:
                merged["status"] = new["status"]
            if (rtype.group, rtype.kind) in STATUS_WRITES_ANNOTATIONS:
                annotations = (new.get("metadata") or {}).get("annotations")
                if annotations:
                    merged["metadata"]["annotations"] = clone(annotations)
                else:
                    merged["metadata"].pop("annotations", None)
            new = merged
        else:
            if rtype.has_status:
                if "status" in current:
                    new["status"] = clone(current["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for fixed in ("uid", "creationTimestamp", "name", "deletionTimestamp"):
                if fixed in cmeta:
                    meta[fixed] = cmeta[fixed]
                else:
                    meta.pop(fixed, None)
            if rtype.namespaced:
                meta["namespace"] = cmeta.get("namespace", "")
            meta.pop("generation", None)
            if "generation" in cmeta:
                meta["generation"] = cmeta["generation"]
                source = rtype.generation_source
                if source is not None and source(new) != source(current):
                    meta["generation"] = cmeta["generation"] + 1
        new["metadata"]["resourceVersion"] = cmeta["resourceVersion"]
        drop_empty_metadata(new["metadata"])
        if new == current:
            return current
        # Finalizers emptied on an object being deleted: it goes. Pods are the exception,
        # as on a real cluster: their kubelet removes them once the containers stopped.
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and rtype.kind != "Pod":
            self._remove(table, key, current)
            return new
        self._commit(table, key, new, "MODIFIED")
        return new

    def _commit(self, table: _Table, key: tuple[str, str], obj: Obj, kind: str) -> None:
        rv = next(self._rv)
        self._last_rv = rv
        obj["metadata"]["resourceVersion"] = str(rv)
        old = table.objects.get(key)
        table.objects[key] = obj
        table.changed_at[key[0]] = rv
        if old is None:
            table.keys_added_or_removed(key, True)
        table.relabel(key, old, obj)
        for fn, buckets in table.indexes.values():
            if old is not None:
                before = fn(old)
                if before is not None:
                    buckets.get(before, set()).discard(key)
            after = fn(obj)
            if after is not None:
                buckets.setdefault(after, set()).add(key)
        self._publish(Event(rv, kind, table.rtype.key, obj, old))

    def _remove(self, table: _Table, key: tuple[str, str], current: Obj) -> None:
        rv = next(self._rv)
        self._last_rv = rv
        del table.objects[key]
        table.changed_at[key[0]] = rv
        table.keys_added_or_removed(key, False)
        table.relabel(key, current, None)
        for fn, buckets in table.indexes.values():
            before = fn(current)
            if before is not None:
                buckets.get(before, set()).discard(key)
        gone = dict(current, metadata=dict(current["metadata"], resourceVersion=str(rv)))   # snapshots never change
        self._publish(Event(rv, "DELETED", table.rtype.key, gone, current))

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        if len(self._history) > 2 * self._history_max:
            del self._history[: len(self._history) - self._history_max]
        for cb in self._subscribers:
            cb(event)
        with self._signal:
            self._last_of[event.resource] = event.rv
            waiting = self._changed.get(event.resource)
            if waiting is not None:
                waiting.notify_all()

    def wait_for_event(self, resource: str, since: int, timeout: float) -> None:
        """Return once ``resource`` has an event newer than ``since`` (at once if it has), after
        ``timeout`` seconds, or when ``wake_watches`` is called."""
        with self._signal:
            if self._last_of.get(resource, 0) > since:
                return
            waiting = self._changed.get(resource)
            if waiting is None:
                waiting = self._changed[resource] = threading.Condition(self._signal)
            waiting.wait(timeout)

    def wake_watches(self) -> None:
        """Wake every ``wait_for_event`` (a watch then sees the server stopping or failing)."""
        with self._signal:
            for waiting in self._changed.values():
                waiting.notify_all()
