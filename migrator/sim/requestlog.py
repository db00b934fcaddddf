"""A record of every request the simulated API server answered.

Tests and benchmarks read it to prove what a command did and did not do: a dry run sends no
write, a drain uses evictions and never a DELETE, a resumed run deletes each agent pod once.
Verbs are the Kubernetes audit verbs (get, list, watch, create, update, patch, delete,
deletecollection); the resource is the store key plus the subresource (``pods/eviction``).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class RequestEntry:
    verb: str
    resource: str          # e.g. "pods", "pods/eviction", "apps/daemonsets", "" for non-resource paths
    namespace: str
    name: str
    code: int
    user_agent: str = ""

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


class RequestLog:
    """Thread-safe, append-only list of answered requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestEntry] = []

    def add(self, entry: RequestEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[RequestEntry]:
        with self._lock:
            return list(self._entries)

    def counts(self) -> dict[tuple[str, str], int]:
        """Requests by (verb, resource)."""
        return dict(Counter((e.verb, e.resource) for e in self.entries))

    def writes(self) -> int:
        return sum(1 for e in self.entries if e.is_write)

    def total(self, *, exclude_watch: bool = True) -> int:
        return sum(1 for e in self.entries if not (exclude_watch and e.verb == "watch"))

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
