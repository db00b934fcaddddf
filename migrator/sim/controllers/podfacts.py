"""The pods a controller object counts, kept from the pods' events between its reconciles.

The ReplicaSet and disruption controllers count the pods they own or select on every
reconcile; at a pod per node that is a thousand pods, and a pod event at a time marks the
object for another reconcile. What they derive from one pod (whether it counts, and facts
such as ready or available) is a function of that pod and of the controller object's spec
alone. So ``Members`` is built once from a list of the pods (for one version of the spec),
then takes in each pod event as the world delivers it, and a reconcile reads its counts.

Events reach it in commit order, but the list it was built from may already show changes
whose events are still queued: an event no newer than the list (for a pod it does not hold)
or than the version it holds of that pod is already in it, and is passed over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, Generic, TypeVar

Obj = dict[str, Any]
T = TypeVar("T", bound=Hashable)


def _rv(obj: Obj) -> int:
    return int(obj["metadata"]["resourceVersion"])


class Members(Generic[T]):
    """One controller object's pods (``derive(pod)`` is not None for a pod it counts, and is
    what it counts the pod as), with how many pods there are of each fact."""

    def __init__(self, version: Hashable, derive: Callable[[Obj], T | None], pods: Iterable[Obj],
                 listed_at: int) -> None:
        self.version = version              # the controller object's spec version it was built for
        self._derive = derive
        self._listed_at = listed_at         # the store's resourceVersion the list showed
        self._pods: dict[str, tuple[int, Obj, T]] = {}   # uid -> (its resourceVersion, the pod, its facts)
        self._names: dict[str, str] = {}    # name -> uid
        self.counts: Counter[T] = Counter()
        for pod in pods:
            self._enter(_rv(pod), pod)

    def see(self, rv: int, pod: Obj, gone: bool) -> None:
        """Take in one pod event (``rv`` its resourceVersion, ``gone`` for a deletion); raises
        what ``derive`` raises."""
        uid = pod["metadata"]["uid"]
        known = self._pods.get(uid)
        if rv <= (known[0] if known is not None else self._listed_at):
            return
        if known is not None:
            self._leave(uid, known)
        if not gone:
            self._enter(rv, pod)

    def _enter(self, rv: int, pod: Obj) -> None:
        facts = self._derive(pod)
        if facts is None:
            return
        meta = pod["metadata"]
        self._pods[meta["uid"]] = (rv, pod, facts)
        self._names[meta["name"]] = meta["uid"]
        self.counts[facts] += 1

    def _leave(self, uid: str, known: tuple[int, Obj, T]) -> None:
        del self._pods[uid]
        name = known[1]["metadata"]["name"]
        if self._names.get(name) == uid:
            del self._names[name]
        self.counts[known[2]] -= 1
        if not self.counts[known[2]]:
            del self.counts[known[2]]

    def __len__(self) -> int:
        return len(self._pods)

    def pods(self) -> Iterator[Obj]:
        return (pod for _, pod, _ in self._pods.values())

    def named(self, name: str) -> tuple[Obj, T] | None:
        """The pod of that name it counts, and its facts."""
        uid = self._names.get(name)
        if uid is None:
            return None
        _, pod, facts = self._pods[uid]
        return pod, facts
