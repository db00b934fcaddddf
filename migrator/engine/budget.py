"""Disruption room per PodDisruptionBudget, spent by one decision across every node in flight.

The API server refuses an eviction (429) while a budget's ``status.disruptionsAllowed`` is zero;
``kubectl drain`` then asks again every few seconds. Nodes in flight share budgets (five nodes
each holding a replica of a Deployment whose PDB allows one disruption), so a timer alone
wastes most of each back-off — the room usually comes back a second after the replacement
turns Ready — and every waiting node asking on its own timer costs a refused request per node
per interval. The engine therefore spends the observed room itself:

* the room of a budget is its observed ``disruptionsAllowed``, less the pods it covers whose
  eviction was sent (recorded in an intent) but is not observed yet — the cache lags the
  server by a few milliseconds;
* each eviction sent in this decision takes one, so two nodes never race for the last one (a
  budget whose observed room our own evictions have taken is not asked again);
* a node backing off after a 429 still evicts a pod as soon as that pod's budgets have room;
* without room a pod is asked for once — the server's word, and the message an operator
  reads — and then only as a slow safety net (``node_steps.UNSEEN_ROOM_RECHECK``): the server
  decides on the same status the engine watches, so the room showing wakes the engine at once.
  The net is for a status that stopped changing: while the budget's ``DisruptionAllowed``
  condition keeps flipping (room taken and given back along a chain of evictions), its status
  is plainly current and nobody asks again, however long a node waits its turn.

The server stays the authority: a stale room costs one more 429 and the back-off it brings.
Pods the eviction subresource lets through without asking budgets need no room: Pending,
Succeeded, Failed or already deleting, and a Running pod that is not Ready under a budget whose
``unhealthyPodEvictionPolicy`` is ``AlwaysAllow`` or (``IfHealthyBudget``, the default) whose
application is not disrupted (``currentHealthy >= desiredHealthy``).

Before switching a node in place, the engine asks whether its pods' budgets will let them go
(``recovers``): a budget at zero only because replacements are starting — usually those of
our own evictions on other nodes — gets its room back in a moment, while one held at zero by
pods that stay unhealthy does not, and that node must wait before anything changes. Those
replacements land on any node, or none yet, so the observation brings such a budget's pods that
are not Ready from everywhere (``ClusterObservation.budget_pods``), not only from the nodes in
flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from migrator.model.observation import ClusterObservation, PdbFacts, PodFacts

EXEMPT_PHASES = frozenset({"Pending", "Succeeded", "Failed"})

#: A pod not Ready yet and younger than this is taken to be on its way to Ready (a replacement
#: starting). An older one — crash-looping, unschedulable, failing its readiness probe — is not
#: counted on to give its budget room back.
STARTING_GRACE = timedelta(minutes=1)


def starting(pod: PodFacts, now: datetime) -> bool:
    """True for a pod that is expected to turn Ready soon."""
    return pod.unready and pod.created_at is not None and now - pod.created_at < STARTING_GRACE


def _key(pdb: PdbFacts) -> tuple[str, str]:
    return pdb.namespace, pdb.name


class DisruptionBudgets:
    """The room left in each budget during one decision."""

    def __init__(self, obs: ClusterObservation, sent: Iterable[str] = ()) -> None:
        self._obs = obs
        self._observed = {_key(p): p.disruptions_allowed for p in obs.pdbs}
        self._room = dict(self._observed)
        self._holding: set[str] = set()  # uids whose sent eviction already holds a unit of room
        self._coming: dict[tuple[str, str], int] = {}  # starting pods per budget, counted once
        pending = set(sent)
        if pending and self._room:
            for pod in obs.pods:
                if pod.uid not in pending:
                    continue
                guarding = self.guarding(pod)
                if guarding:
                    self._holding.add(pod.uid)
                    for pdb in guarding:
                        self._room[_key(pdb)] -= 1

    @staticmethod
    def exempt(pod: PodFacts) -> bool:
        return pod.deleting or pod.phase in EXEMPT_PHASES

    def guarding(self, pod: PodFacts) -> tuple[PdbFacts, ...]:
        """The budgets whose room evicting ``pod`` needs: none for an exempt pod, and for a
        Running pod that is not Ready none of those that let unready pods go."""
        if self.exempt(pod):
            return ()
        covering = self._obs.pdbs_covering(pod)
        if pod.ready:
            return covering
        return tuple(p for p in covering if not p.lets_unready_go())

    def guarded(self, pod: PodFacts) -> bool:
        """True when evicting ``pod`` needs room in a budget."""
        return bool(self.guarding(pod))

    def take(self, pod: PodFacts) -> bool:
        """Spend one unit of room in each of ``pod``'s budgets; False (nothing spent) when any has none.

        A pod whose eviction was already sent holds its unit: sending it again takes no more."""
        budgets = [_key(p) for p in self.guarding(pod)]
        if pod.uid in self._holding or not budgets:
            return True
        if any(self._room.get(k, 0) < 1 for k in budgets):
            return False
        for k in budgets:
            self._room[k] -= 1
        self._holding.add(pod.uid)
        return True

    def contended(self, pod: PodFacts) -> bool:
        """True when a budget of ``pod`` showed room that our own evictions have all taken: asking
        the server now would only be refused."""
        return any(
            self._observed.get(k, 0) >= 1 > self._room.get(k, 0)
            for k in map(_key, self.guarding(pod))
        )

    def moving(self, pod: PodFacts, now: datetime, within: timedelta) -> bool:
        """True when a budget of ``pod`` went from room to none, or back, less than ``within``
        ago: its status is being kept current, so the room showing will be seen."""
        return any(p.room_changed_at is not None and now - p.room_changed_at < within
                   for p in self.guarding(pod))

    def recovers(self, pdb: PdbFacts, now: datetime) -> bool:
        """True when ``pdb`` allows a disruption now, or will once its starting pods are Ready
        (wherever they run: ``ClusterObservation.budget_pods`` holds those off the nodes in flight)."""
        if pdb.disruptions_allowed >= 1:
            return True
        key = _key(pdb)
        if key not in self._coming:  # once per budget and decision: every node asks the same
            pods = {p.uid: p for p in (*self._obs.pods, *self._obs.budget_pods) if pdb.covers(p)}
            self._coming[key] = sum(1 for pod in pods.values() if starting(pod, now))
        return pdb.current_healthy + self._coming[key] - pdb.desired_healthy >= 1

    def room(self, pdb: PdbFacts) -> int:
        return self._room.get(_key(pdb), pdb.disruptions_allowed)
