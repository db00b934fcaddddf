"""A record of every request the simulated API server answered.

Tests and benchmarks read it to prove what a command did and did not do: a dry run sends no
write, a drain uses evictions and never a DELETE, a resumed run deletes each agent pod once.
Verbs are the Kubernetes audit verbs (get, list, watch, create, update, patch, delete,
deletecollection); the resource is the store key plus the subresource (``pods/eviction``).
Each entry names its client twice, as an audit log does: the ``User-Agent`` it sent and the
user its bearer token authenticated as (give two processes two users to tell them apart).

``on_nth`` calls back when the n-th matching request is recorded, on the thread serving it and
before its answer is sent: a chaos test that SIGKILLs the client there kills it exactly after
its n-th write was executed and before it learnt the outcome.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class RequestEntry:
    verb: str
    resource: str          # e.g. "pods", "pods/eviction", "apps/daemonsets", "" for non-resource paths
    namespace: str
    name: str
    code: int
    user_agent: str = ""
    user: str = ""           # the authenticated user ("" when the request carried no valid token)

    @property
    def is_write(self) -> bool:
        return self.verb in WRITE_VERBS


class RequestLog:
    """Thread-safe, append-only list of answered requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[RequestEntry] = []
        self._hooks: list[_Hook] = []

    def add(self, entry: RequestEntry) -> None:
        fire: list[_Hook] = []
        with self._lock:
            self._entries.append(entry)
            for hook in self._hooks:
                if hook.match(entry):
                    hook.seen += 1
                    if hook.seen == hook.n:
                        fire.append(hook)
            if fire:
                self._hooks = [h for h in self._hooks if h not in fire]
        for hook in fire:
            hook.callback(entry)

    def on_nth(self, n: int, callback: Callable[[RequestEntry], None],
               match: Callable[[RequestEntry], bool] = lambda e: e.is_write) -> None:
        """Call ``callback(entry)`` once, when the ``n``-th request matching ``match`` (from now
        on; by default a write) is recorded: on the serving thread, before its answer is sent."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        with self._lock:
            self._hooks.append(_Hook(n, callback, match))

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


@dataclass(eq=False)
class _Hook:
    n: int
    callback: Callable[[RequestEntry], None]
    match: Callable[[RequestEntry], bool]
    seen: int = field(default=0)
