"""The run lock follows its Lease through a watch between renewals.

With a lease duration so long that no renewal falls due during the test, the old holder still
learns of a ``--force-takeover`` (its fence is lost, naming the new holder) because its
keep-alive waits on a watch of that one Lease instead of sleeping. Against the simulated
cluster over HTTP, and the edge cases on the in-memory port: another Lease in the namespace is
not ours to judge, a deleted lease is found lost, a port that cannot watch still renews every
period, release ends the watch in flight, and a 409 on the checkpoint re-reads the Lease.
"""

from __future__ import annotations

import time

import pytest

from migrator.cluster.errors import Unavailable
from migrator.cluster.guard import GuardedPort
from migrator.cluster.kube import KubeCluster
from migrator.cluster.lease import LockLost, RunLock
from migrator.cluster.port import LeaseRecord

from .memport import MemoryPort

LEASES = "coordination.k8s.io/leases"
LONG = 600  # seconds of lease duration: its renewal (every 200 s) never falls due in a test
WAIT = 10.0  # seconds allowed for something that takes milliseconds, so a slow machine passes


def guarded(kubeconfig, agent: str) -> GuardedPort:
    inner = KubeCluster.from_kubeconfig(str(kubeconfig))
    inner.api.user_agent = agent  # tells the processes apart in the request log
    return GuardedPort(inner)


def until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_takeover_reaches_the_old_holder_through_its_watch_not_a_renewal(sim, kubeconfig) -> None:
    port_a = guarded(kubeconfig, "migrator-a")
    lock_a = RunLock(port_a, identity="host-a/1/run-a", ttl_seconds=LONG)
    lock_a.acquire()
    lock_a.keep_alive()

    def a_watches() -> bool:
        return any(e.user_agent == "migrator-a" and e.verb == "watch" and e.resource == LEASES
                   for e in sim.requests.entries)

    until(a_watches, "the holder never opened a watch on its lease")
    # another Lease in the same namespace, held by someone else, is none of the watch's business
    other = RunLock(guarded(kubeconfig, "migrator-c"), identity="host-c/3/other", name="another-lock",
                    ttl_seconds=LONG)
    other.acquire()
    other.renew()

    port_b = guarded(kubeconfig, "migrator-b")
    lock_b = RunLock(port_b, identity="host-b/2/run-b", ttl_seconds=LONG)
    lock_b.acquire(force_takeover=True)
    until(lambda: port_a.fence.lost is not None, "the old holder never saw the takeover")

    assert "held by host-b/2/run-b" in str(port_a.fence.lost)
    with pytest.raises(LockLost, match="host-b/2/run-b"):
        lock_a.check()
    sim.requests.reset()
    with pytest.raises(LockLost, match="host-b/2/run-b"):
        port_a.cordon_node("node-1")
    assert [e for e in sim.requests.entries if e.user_agent == "migrator-a" and e.is_write] == []
    lease_writes_a = [e.verb for e in sim.requests.entries
                      if e.user_agent == "migrator-a" and e.resource == LEASES and e.is_write]
    assert lease_writes_a == []  # no renewal: the watch alone told it
    assert lock_a.release() is False
    assert lock_b.release() is True
    assert other.release() is True


# -- the same rules on the in-memory port ------------------------------------------------------

def _held_and_watched() -> tuple[MemoryPort, RunLock, LeaseRecord]:
    """A lease held with a long TTL, its keep-alive already watching it."""
    port = MemoryPort()
    mine = RunLock(port, identity="a/1/r", ttl_seconds=LONG)
    record = mine.acquire()
    mine.keep_alive()
    until(lambda: port.watches > 0, "no watch was opened")
    return port, mine, record

def test_the_watch_loses_the_fence_before_any_renewal_in_memory() -> None:
    port, mine, acquired = _held_and_watched()
    RunLock(port, identity="b/2/r", ttl_seconds=LONG).acquire(force_takeover=True)
    until(lambda: mine.lost is not None, "the takeover was not seen")
    assert mine.record == acquired  # never renewed
    with pytest.raises(LockLost, match="held by b/2/r"):
        mine.fence.check_write("cordon node")
    assert mine.release() is False


def test_a_deleted_lease_is_renewed_at_once_and_found_lost() -> None:
    port, mine, record = _held_and_watched()
    assert port.delete_lease(record.namespace, record.name, resource_version=record.resource_version)
    until(lambda: mine.lost is not None, "the deletion was not seen")
    assert mine.lost is not None and "held by nobody" in mine.lost
    assert port.read_lease(record.namespace, record.name) is None  # not re-created behind the operator's back
    mine.release()


class UnwatchablePort(MemoryPort):
    """A server that answers everything but watches (an outage of the watch path, or no grant)."""

    def watch_lease(self, namespace, name, *, resource_version, timeout):
        self.watches += 1
        raise Unavailable("watch lease: connection to the API server refused", status=None, sent=False)


def test_a_lease_that_cannot_be_watched_is_still_renewed_every_period() -> None:
    port = UnwatchablePort()
    mine = RunLock(port, identity="a/1/r", ttl_seconds=1)
    first = mine.acquire()
    mine.keep_alive(interval=0.05)
    until(lambda: port.watches > 1 and mine.record is not None
          and mine.record.resource_version != first.resource_version, "the lease was not renewed")
    mine.check()
    assert mine.release() is True


def test_release_ends_the_watch_in_flight() -> None:
    port = MemoryPort()
    mine = RunLock(port, identity="a/1/r", ttl_seconds=LONG)
    mine.acquire()
    mine.keep_alive()
    until(lambda: port.watches > 0, "no watch was opened")
    keeper = mine._keepalive
    assert keeper is not None and keeper.is_alive()
    assert mine.release() is True
    assert not keeper.is_alive()  # not left waiting out a 200 s watch


def test_confirm_reads_the_lease_a_compare_and_swap_was_refused_under() -> None:
    port = MemoryPort()
    mine = RunLock(port, identity="a/1/r", ttl_seconds=LONG)
    mine.acquire()
    mine.confirm()  # still ours
    RunLock(port, identity="b/2/r", ttl_seconds=LONG).acquire(force_takeover=True)
    mine.check()  # no keep-alive here: nothing has told it yet
    with pytest.raises(LockLost, match="held by b/2/r"):
        mine.confirm()
    with pytest.raises(LockLost, match="held by b/2/r"):
        mine.fence.check_write("replace configmap")
