"""An in-memory stand-in for the ConfigMap and Lease parts of ``ClusterPort``.

Used to test the lock and checkpoint logic without a server; the same behaviours are also
tested against the simulated cluster over HTTP. It keeps Kubernetes' compare-and-swap rules:
a create of an existing name is ``AlreadyExists``, a replace or delete with a stale
resourceVersion is ``Conflict``, and every write bumps the resourceVersion. A Lease can be
watched (``watch_lease``): every Lease write is an event that watches after its
resourceVersion receive, as from a server's watch cache.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

from migrator.cluster.errors import AlreadyExists, Conflict, NotFound
from migrator.cluster.port import ConfigMapSnapshot, LeaseEvent, LeaseRecord


class MemoryLeaseWatch:
    """A watch on one Lease of a ``MemoryPort``: its events after ``since``, until the timeout."""

    def __init__(self, port: MemoryPort, key: tuple[str, str], since: int, timeout: float) -> None:
        self.port, self.key, self.since = port, key, since
        self.deadline = time.monotonic() + timeout
        self.stopped = False

    def stop(self) -> None:
        with self.port._changed:
            self.stopped = True
            self.port._changed.notify_all()

    def __iter__(self) -> Iterator[LeaseEvent]:
        while True:
            with self.port._changed:
                pending = [(rv, e) for rv, key, e in self.port.lease_events if key == self.key and rv > self.since]
                while not pending and not self.stopped and time.monotonic() < self.deadline:
                    self.port._changed.wait(self.deadline - time.monotonic())
                    pending = [(rv, e) for rv, key, e in self.port.lease_events
                               if key == self.key and rv > self.since]
                if self.stopped or not pending:
                    return
            for rv, event in pending:
                self.since = rv
                yield event


class MemoryPort:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rv = itertools.count(1)
        self.configmaps: dict[tuple[str, str], ConfigMapSnapshot] = {}
        self.configmap_labels: dict[tuple[str, str], dict[str, str]] = {}
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        self.lease_events: list[tuple[int, tuple[str, str], LeaseEvent]] = []
        self.watches = 0
        self._changed = threading.Condition(self._lock)
        self.writes = 0

    def _next(self) -> str:
        self.writes += 1
        return str(next(self._rv))

    def _lease_event(self, type_: Literal["ADDED", "MODIFIED", "DELETED"], record: LeaseRecord) -> None:
        """Record a Lease write for watchers (the caller holds the lock)."""
        rv = record.resource_version
        self.lease_events.append((int(rv), (record.namespace, record.name), LeaseEvent(type_, rv, record)))
        self._changed.notify_all()

    # -- configmaps
    def read_configmap(self, namespace: str, name: str) -> ConfigMapSnapshot | None:
        return self.configmaps.get((namespace, name))

    def list_configmaps(self, namespace: str, label_selector: str) -> list[ConfigMapSnapshot]:
        wanted = dict(term.split("=", 1) for term in label_selector.split(","))
        return [snap for key, snap in sorted(self.configmaps.items()) if key[0] == namespace
                and wanted.items() <= self.configmap_labels.get(key, {}).items()]

    def create_configmap(self, namespace, name, data, *, labels=None) -> ConfigMapSnapshot:
        with self._lock:
            if (namespace, name) in self.configmaps:
                raise AlreadyExists(f"configmap {name} exists", status=409)
            snap = ConfigMapSnapshot(namespace, name, dict(data), self._next())
            self.configmaps[(namespace, name)] = snap
            self.configmap_labels[(namespace, name)] = dict(labels or {})
            return snap

    def replace_configmap(self, namespace, name, data, *, resource_version, labels=None):
        with self._lock:
            current = self.configmaps.get((namespace, name))
            if current is None:
                raise NotFound(f"configmap {name} not found", status=404)
            if current.resource_version != resource_version:
                raise Conflict("the object has been modified", status=409)
            snap = ConfigMapSnapshot(namespace, name, dict(data), self._next())
            self.configmaps[(namespace, name)] = snap
            self.configmap_labels[(namespace, name)] = dict(labels or {})
            return snap

    # -- leases
    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        return self.leases.get((namespace, name))

    def create_lease(self, record: LeaseRecord) -> LeaseRecord:
        with self._lock:
            key = (record.namespace, record.name)
            if key in self.leases:
                raise AlreadyExists("lease exists", status=409)
            stored = replace(record, resource_version=self._next())
            self.leases[key] = stored
            self._lease_event("ADDED", stored)
            return stored

    def replace_lease(self, record: LeaseRecord) -> LeaseRecord:
        with self._lock:
            key = (record.namespace, record.name)
            current = self.leases.get(key)
            if current is None:
                raise NotFound("lease not found", status=404)
            if current.resource_version != record.resource_version:
                raise Conflict("the object has been modified", status=409)
            stored = replace(record, resource_version=self._next())
            self.leases[key] = stored
            self._lease_event("MODIFIED", stored)
            return stored

    def delete_lease(self, namespace: str, name: str, *, resource_version: str) -> bool:
        with self._lock:
            current = self.leases.get((namespace, name))
            if current is None:
                return False
            if current.resource_version != resource_version:
                raise Conflict("the object has been modified", status=409)
            del self.leases[(namespace, name)]
            self._lease_event("DELETED", replace(current, resource_version=self._next()))
            return True

    def watch_lease(self, namespace: str, name: str, *, resource_version: str,
                    timeout: float) -> MemoryLeaseWatch:
        with self._lock:
            self.watches += 1
        return MemoryLeaseWatch(self, (namespace, name), int(resource_version or 0), timeout)
