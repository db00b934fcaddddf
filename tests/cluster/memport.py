"""An in-memory stand-in for the ConfigMap and Lease parts of ``ClusterPort``.

Used to test the lock and checkpoint logic without a server; the same behaviours are also
tested against the simulated cluster over HTTP. It keeps Kubernetes' compare-and-swap rules:
a create of an existing name is ``AlreadyExists``, a replace or delete with a stale
resourceVersion is ``Conflict``, and every write bumps the resourceVersion.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import replace

from migrator.cluster.errors import AlreadyExists, Conflict, NotFound
from migrator.cluster.port import ConfigMapSnapshot, LeaseRecord


class MemoryPort:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rv = itertools.count(1)
        self.configmaps: dict[tuple[str, str], ConfigMapSnapshot] = {}
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        self.writes = 0

    def _next(self) -> str:
        self.writes += 1
        return str(next(self._rv))

    # -- configmaps
    def read_configmap(self, namespace: str, name: str) -> ConfigMapSnapshot | None:
        return self.configmaps.get((namespace, name))

    def create_configmap(self, namespace, name, data, *, labels=None) -> ConfigMapSnapshot:
        with self._lock:
            if (namespace, name) in self.configmaps:
                raise AlreadyExists(f"configmap {name} exists", status=409)
            snap = ConfigMapSnapshot(namespace, name, dict(data), self._next())
            self.configmaps[(namespace, name)] = snap
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
            return stored

    def delete_lease(self, namespace: str, name: str, *, resource_version: str) -> bool:
        with self._lock:
            current = self.leases.get((namespace, name))
            if current is None:
                return False
            if current.resource_version != resource_version:
                raise Conflict("the object has been modified", status=409)
            del self.leases[(namespace, name)]
            self._next()
            return True
