"""Watch-driven cache: one LIST then WATCH per resource kind, so waiting costs no requests.

The runner observes the cluster on every loop iteration; asking the API server each time
would cost O(nodes) requests per iteration. Instead each resource kind the migrator needs has
a daemon thread that lists once, then watches from the list's resourceVersion, resumes from
the last resourceVersion it saw when a watch ends, and re-lists on 410 Gone. A watch that
drops or fails (a reset connection, a 5xx, an unreachable server) is reconnected by its thread
with jittered exponential back-off (``error_backoff`` doubling up to ``max_backoff``, back to
the start once a list or an event gets through); meanwhile readers keep the last state and
``wait_for_change`` still returns at its timeout, so a dead watch never stalls the runner. The
threads only fill the cache. Readers get converted facts (converted once per object version, not per
read), and ``wait_for_change`` lets the runner sleep until something changed.

This module never imports ``kubernetes``: it reads through ``ResourceSource``, which
``cluster/kube.py`` implements.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from migrator.cluster.errors import Expired, Unavailable

log = structlog.get_logger(__name__)

Raw = dict[str, Any]
Key = tuple[str, str]  # (namespace or "", name)


class ResourceSource(Protocol):
    """How the cache lists and watches one resource kind (implemented in ``kube.py``)."""

    name: str

    def list(self) -> tuple[list[Raw], str]:
        """All objects and the list's resourceVersion."""

    def watch(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, Raw]]:
        """Events ``(type, object)`` after ``resource_version``; raises ``Expired`` on 410."""

    def abort(self) -> None:
        """End a watch in flight from another thread (so ``stop`` is prompt)."""


@dataclass(frozen=True)
class Entry:
    """One cached object: the raw dict (stays inside ``cluster/``) and its converted facts."""

    raw: Raw
    facts: Any


def object_key(obj: Raw) -> Key:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


#: Changes a kind remembers for ``WatchCache.changes`` (a reader further behind reads everything).
LOG_LIMIT = 100_000


class _Kind:
    """The objects of one resource kind plus its indexes (for pods: by node, and the pods not
    Ready by namespace). An index maps an object's converted facts to a value, or None to
    leave the object out."""

    def __init__(self, convert: Callable[[Raw], Any], indexes: dict[str, Callable[[Any], str | None]]):
        self.convert = convert
        self.indexers = indexes
        self.objects: dict[Key, Entry] = {}
        self.indexes: dict[str, dict[str, set[Key]]] = {name: {} for name in indexes}
        self._order: list[Key] | None = None   # the keys sorted, until an object comes or goes
        self._index_order: dict[tuple[str, str], list[Key]] = {}   # the same, per index value
        self.log: list[Key] = []      # the key of every put and drop, for ``changes``
        self.log_start = 0            # the position of log[0] since the last relist
        self.epoch = 0                # counts relists: a cursor from an earlier one is stale
        self.synced = threading.Event()
        self.resource_version = ""
        self.relists = 0
        self.errors = 0
        self.error: str | None = None

    def _logged(self, key: Key) -> None:
        self.log.append(key)
        if len(self.log) > LOG_LIMIT:    # cursors behind the cut list everything again
            del self.log[:LOG_LIMIT // 2]
            self.log_start += LOG_LIMIT // 2

    def changes(self, cursor: tuple[int, int] | None) -> tuple[set[Key] | None, tuple[int, int]]:
        """Keys put or dropped since ``cursor`` (None: cannot tell, list everything), and the
        cursor to pass next time."""
        end = (self.epoch, self.log_start + len(self.log))
        if cursor is None or cursor[0] != self.epoch or cursor[1] < self.log_start:
            return None, end
        return set(self.log[cursor[1] - self.log_start:]), end

    def put(self, obj: Raw) -> None:
        key = object_key(obj)
        self._logged(key)
        old = self.objects.get(key)
        if old is None:
            self._order = None
        entry = self.objects[key] = Entry(obj, self.convert(obj))
        for name, value_of in self.indexers.items():
            before, after = (value_of(old.facts) if old is not None else None), value_of(entry.facts)
            if before != after:   # an object that stays in its index value keeps that value's order
                self._unindex(name, before, key)
                if after:
                    self.indexes[name].setdefault(after, set()).add(key)
                    self._index_order.pop((name, after), None)

    def drop(self, key: Key) -> None:
        old = self.objects.pop(key, None)
        if old is None:
            return
        self._logged(key)
        self._order = None
        for name, value_of in self.indexers.items():
            self._unindex(name, value_of(old.facts), key)

    def _unindex(self, name: str, value: str | None, key: Key) -> None:
        if value and key in self.indexes[name].get(value, ()):
            self.indexes[name][value].discard(key)
            self._index_order.pop((name, value), None)

    def ordered(self) -> list[Entry]:
        """Every object, sorted by namespace/name (the sort is kept until the set changes)."""
        if self._order is None:
            self._order = sorted(self.objects)
        return [self.objects[key] for key in self._order]

    def with_value(self, index: str, value: str) -> list[Entry]:
        """The objects whose ``index`` value is ``value``, sorted by namespace/name (kept sorted
        until that set changes)."""
        order = self._index_order.get((index, value))
        if order is None:
            order = self._index_order[(index, value)] = sorted(self.indexes[index].get(value, ()))
        return [self.objects[key] for key in order if key in self.objects]

    def replace_all(self, items: list[Raw]) -> None:
        self._order = None
        self._index_order.clear()
        self.objects.clear()
        for index in self.indexes.values():
            index.clear()
        for obj in items:
            self.put(obj)
        self.epoch += 1          # a reader's cursor is stale: it reads everything again
        self.log.clear()
        self.log_start = 0


class WatchCache:
    """Caches of several resource kinds fed by daemon watch threads."""

    def __init__(self, *, watch_timeout_seconds: int = 60, error_backoff: float = 0.5,
                 max_backoff: float = 10.0, rng: random.Random | None = None) -> None:
        self._cond = threading.Condition()
        self._kinds: dict[str, _Kind] = {}
        self._sources: dict[str, ResourceSource] = {}
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._version = 0
        self._seen = 0
        self.watch_timeout_seconds = watch_timeout_seconds
        self.error_backoff = error_backoff
        self.max_backoff = max_backoff
        self._rng = rng or random.Random()

    # -- setup -----------------------------------------------------------------------------
    def add(self, source: ResourceSource, convert: Callable[[Raw], Any], *,
            indexes: dict[str, Callable[[Any], str | None]] | None = None) -> None:
        """Register a resource kind, with indexes over its converted facts; call before ``start``."""
        self._kinds[source.name] = _Kind(convert, indexes or {})
        self._sources[source.name] = source

    def has(self, kind: str) -> bool:
        return kind in self._kinds

    def start(self, *, timeout: float = 30.0) -> None:
        """Start one thread per kind and return once every kind has been listed."""
        for name, source in self._sources.items():
            t = threading.Thread(target=self._run, args=(name, source),
                                 name=f"watch-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        for name, kind in self._kinds.items():
            if not kind.synced.wait(timeout):
                self.stop(join_timeout=0.0)
                raise Unavailable(f"cache for {name} did not sync within {timeout:.0f}s: "
                                  f"{kind.error or 'no answer'}")

    def stop(self, *, join_timeout: float = 2.0) -> None:
        """End the watches in flight and wait briefly for the threads (they are daemons)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for source in self._sources.values():
            abort = getattr(source, "abort", None)
            if abort is not None:
                abort()
        for thread in self._threads:
            thread.join(join_timeout)

    # -- reads -----------------------------------------------------------------------------
    def entries(self, kind: str) -> list[Entry]:
        with self._cond:
            return self._kinds[kind].ordered()

    def changes(self, kind: str, cursor: tuple[int, int] | None) -> tuple[dict[Key, Entry | None] | None,
                                                                          tuple[int, int]]:
        """The objects of ``kind`` put or dropped since ``cursor`` (None for a dropped one), and
        the cursor to pass next time; None instead of the changes when they cannot be told (the
        first call, a relist since, or a cursor too far behind): read everything then."""
        with self._cond:
            k = self._kinds[kind]
            keys, end = k.changes(cursor)
            return (None if keys is None else {key: k.objects.get(key) for key in keys}), end

    def indexed(self, kind: str, index: str, value: str) -> list[Entry]:
        """The objects whose ``index`` value is ``value``, sorted by namespace/name."""
        with self._cond:
            return self._kinds[kind].with_value(index, value)

    def get(self, kind: str, namespace: str | None, name: str) -> Entry | None:
        with self._cond:
            return self._kinds[kind].objects.get((namespace or "", name))

    def wait_past(self, kind: str, namespace: str | None, name: str, resource_version: str,
                  timeout: float) -> Entry | None:
        """The cached object once the watch has delivered a version other than
        ``resource_version``; None when it did not within ``timeout`` (or the object is gone)."""
        key = (namespace or "", name)

        def moved() -> bool:
            entry = self._kinds[kind].objects.get(key)
            return (entry is None or self._stop.is_set()
                    or (entry.raw.get("metadata") or {}).get("resourceVersion") != resource_version)

        with self._cond:
            if not self._cond.wait_for(moved, timeout=max(timeout, 0)) or self._stop.is_set():
                return None
            return self._kinds[kind].objects.get(key)

    def errors(self, kind: str) -> int:
        """How many times the kind's list or watch failed (other than 410 Gone)."""
        return self._kinds[kind].errors

    def healthy(self, kind: str) -> bool:
        """False while the kind's last list or watch attempt failed."""
        return self._kinds[kind].error is None

    def relists(self, kind: str) -> int:
        """How many times the kind was listed (1 after start; more after 410 Gone)."""
        return self._kinds[kind].relists

    def resource_version(self, kind: str) -> str:
        return self._kinds[kind].resource_version

    def wait_for_change(self, timeout: float) -> bool:
        """Block until an event arrived since the previous call returned, or ``timeout``."""
        with self._cond:
            changed = self._cond.wait_for(
                lambda: self._version != self._seen or self._stop.is_set(), timeout=max(timeout, 0))
            self._seen = self._version
            return bool(changed) and not self._stop.is_set()

    # -- the watch threads ------------------------------------------------------------------
    def _run(self, name: str, source: ResourceSource) -> None:
        kind = self._kinds[name]
        rv: str | None = None
        expired_in_a_row = 0
        failed_in_a_row = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    items, rv = source.list()
                    with self._cond:
                        kind.replace_all(items)
                        kind.resource_version = rv
                        kind.relists += 1
                        kind.error = None
                        self._changed()
                    kind.synced.set()
                    failed_in_a_row = 0
                    log.debug("cache.listed", kind=name, items=len(items), resource_version=rv)
                for etype, obj in source.watch(rv, self.watch_timeout_seconds):
                    expired_in_a_row = failed_in_a_row = 0
                    if kind.error is not None:
                        kind.error = None
                        log.info("cache.watch.recovered", kind=name)
                    if self._stop.is_set():
                        return
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    with self._cond:
                        kind.resource_version = rv
                        if etype in ("ADDED", "MODIFIED"):
                            kind.put(obj)
                        elif etype == "DELETED":
                            kind.drop(object_key(obj))
                        else:  # BOOKMARK: only the resourceVersion moves
                            continue
                        self._changed()
            except Expired:
                log.info("cache.expired", kind=name, resource_version=rv)
                rv = None
                expired_in_a_row += 1
                if expired_in_a_row > 1:  # a fresh list expiring at once: do not spin
                    self._stop.wait(min(self.error_backoff * expired_in_a_row, 5.0))
            except Exception as exc:  # noqa: BLE001 - a watch thread must survive any failure
                kind.error = f"{type(exc).__name__}: {exc}"[:200]
                kind.errors += 1
                failed_in_a_row += 1
                delay = self._backoff(failed_in_a_row)
                log.warning("cache.watch.error", kind=name, error=kind.error, attempt=failed_in_a_row,
                            retry_in=round(delay, 2))
                self._stop.wait(delay)

    def _backoff(self, failures: int) -> float:
        """Seconds before reconnecting after ``failures`` failures in a row: doubling, capped, jittered."""
        base = min(self.error_backoff * 2 ** max(failures - 1, 0), self.max_backoff)
        return base * (0.5 + 0.5 * self._rng.random())

    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()
