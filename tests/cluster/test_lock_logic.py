"""RunLock and CheckpointStore logic on an in-memory port (no server): stale takeover after the
TTL measured on a FakeClock, LockLost on renew after a takeover, release only of our own
lease, racing threads, and checkpoint compare-and-swap.
"""

from __future__ import annotations

import threading

import pytest

from migrator.cluster.errors import Conflict
from migrator.cluster.lease import LockHeld, LockLost, RunLock
from migrator.cluster.store import CheckpointStore

from .checkpoints import sample_checkpoint
from .fakeclock import FakeClock
from .memport import MemoryPort


def test_second_lock_is_refused_until_the_ttl_passes() -> None:
    port, clock = MemoryPort(), FakeClock()
    first = RunLock(port, identity="a/1/r1", clock=clock, ttl_seconds=20)
    second = RunLock(port, identity="b/2/r2", clock=clock, ttl_seconds=20)
    first.acquire()
    clock.advance(19)
    with pytest.raises(LockHeld) as held:
        second.acquire()
    assert held.value.holder == "a/1/r1" and "a/1/r1" in str(held.value)
    first.renew()
    clock.advance(19)
    with pytest.raises(LockHeld):
        second.acquire()
    clock.advance(2)
    assert second.acquire().holder == "b/2/r2"
    assert second.taken_over_from == "a/1/r1"
    with pytest.raises(LockLost, match="b/2/r2"):
        first.renew()
    assert first.release() is False          # not ours any more: left alone
    assert port.read_lease("kube-system", "cni-migration-lock").holder == "b/2/r2"
    assert second.release() is True
    assert port.read_lease("kube-system", "cni-migration-lock") is None


def test_many_threads_racing_exactly_one_wins() -> None:
    port = MemoryPort()
    locks = [RunLock(port, identity=f"h/{i}/r") for i in range(8)]
    barrier = threading.Barrier(len(locks))
    winners: list[str] = []
    refused: list[str] = []

    def race(lock: RunLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            winners.append(lock.identity)
        except LockHeld as exc:
            refused.append(exc.holder)

    threads = [threading.Thread(target=race, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(winners) == 1 and len(refused) == 7
    assert set(refused) == set(winners)


def test_keep_alive_marks_the_lock_lost_after_a_takeover() -> None:
    port, clock = MemoryPort(), FakeClock()
    mine = RunLock(port, identity="a/1/r", clock=clock, ttl_seconds=10)
    mine.acquire()
    RunLock(port, identity="b/2/r", clock=clock).acquire(force_takeover=True)
    mine.keep_alive(interval=0.01)
    for _ in range(200):
        if mine.lost:
            break
        threading.Event().wait(0.01)
    with pytest.raises(LockLost, match="b/2/r"):
        mine.check()
    mine.release()


def test_checkpoint_compare_and_swap_in_memory() -> None:
    port = MemoryPort()
    store = CheckpointStore(port)
    cp = sample_checkpoint()
    rv = store.save(cp, None)
    assert store.load() == (cp, rv)
    newer = store.save(cp.model_copy(update={"halted": "operator"}), rv)
    with pytest.raises(Conflict):
        store.save(cp, rv)
    loaded, loaded_rv = store.load()
    assert loaded.halted == "operator" and loaded_rv == newer
    assert store.last_size > 0


class _RenewsFirst(MemoryPort):
    """A port on which the live holder's renewal lands just before each of the first ``n``
    lease replacements by someone else (the takeover's compare-and-swap then loses)."""

    def __init__(self, holder: RunLock | None = None, n: int = 0) -> None:
        super().__init__()
        self.holder, self.n = holder, n

    def replace_lease(self, record):
        if self.holder is not None and self.n > 0 and record.holder != self.holder.identity:
            self.n -= 1
            self.holder.renew()
        return super().replace_lease(record)


def test_a_forced_takeover_racing_the_holders_renewals_still_takes_the_lease() -> None:
    port, clock = _RenewsFirst(), FakeClock()
    old = RunLock(port, identity="a/1/r1", clock=clock, ttl_seconds=30)
    old.acquire()
    port.holder, port.n = old, 2
    new = RunLock(port, identity="b/2/r2", clock=clock, ttl_seconds=30)
    new.acquire(force_takeover=True)
    assert port.read_lease(new.namespace, new.name).holder == "b/2/r2"
    assert new.taken_over_from == "a/1/r1"
    with pytest.raises(LockLost, match="b/2/r2"):
        old.renew()


def test_a_forced_takeover_that_loses_to_a_third_run_is_refused_naming_it() -> None:
    port, clock = MemoryPort(), FakeClock()
    old = RunLock(port, identity="a/1/r1", clock=clock, ttl_seconds=30)
    old.acquire()
    third = RunLock(port, identity="c/3/r3", clock=clock, ttl_seconds=30)
    new = RunLock(port, identity="b/2/r2", clock=clock, ttl_seconds=30)
    real = port.replace_lease

    def third_first(record):
        if record.holder == "b/2/r2":
            port.replace_lease = real
            third.acquire(force_takeover=True)
        return real(record)

    port.replace_lease = third_first
    with pytest.raises(LockHeld, match="c/3/r3"):
        new.acquire(force_takeover=True)
