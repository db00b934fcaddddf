"""The run lease against the simulated cluster: two racers (one wins, the other gets LockHeld
naming the holder), renewal, release, stale takeover after the TTL, takeover from a dead
process on this host, audited forced takeover, and LockLost when someone took it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import timedelta

import pytest

from migrator.cluster.kube import KubeCluster
from migrator.cluster.lease import LockHeld, LockLost, RunLock, holder_identity

from .fakeclock import FakeClock


def new_port(kubeconfig) -> KubeCluster:
    return KubeCluster.from_kubeconfig(str(kubeconfig))


def test_identity_names_host_pid_and_run() -> None:
    assert holder_identity("r1", hostname="h", pid=42) == "h/42/r1"


@pytest.mark.parametrize("round_", range(3))
def test_two_racers_one_wins(sim, kubeconfig, round_) -> None:
    locks = [RunLock(new_port(kubeconfig), identity=f"host/{100 + i}/run-{round_}-{i}")
             for i in range(2)]
    barrier = threading.Barrier(2)
    outcome: dict[int, object] = {}

    def race(i: int) -> None:
        barrier.wait()
        try:
            outcome[i] = locks[i].acquire()
        except LockHeld as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=race, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    held = [o for o in outcome.values() if isinstance(o, LockHeld)]
    won = [i for i, o in outcome.items() if not isinstance(o, LockHeld)]
    assert len(won) == 1 and len(held) == 1
    assert held[0].holder == locks[won[0]].identity
    assert locks[won[0]].identity in str(held[0])
    stored = sim.store.get("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")
    assert stored["spec"]["holderIdentity"] == locks[won[0]].identity


def test_renew_and_release(sim, kubeconfig) -> None:
    clock = FakeClock()
    lock = RunLock(new_port(kubeconfig), identity="h/1/a", clock=clock, ttl_seconds=30)
    first = lock.acquire()
    clock.advance(10)
    renewed = lock.renew()
    assert renewed.renew_time - first.renew_time == timedelta(seconds=10)
    assert lock.release() is True
    assert sim.store.try_get("coordination.k8s.io/leases", "kube-system", "cni-migration-lock") is None
    again = RunLock(new_port(kubeconfig), identity="h/2/b")
    again.acquire()
    assert again.taken_over_from is None


def test_stale_lease_is_taken_over_after_ttl(kubeconfig) -> None:
    clock = FakeClock()
    old = RunLock(new_port(kubeconfig), identity="other-host/1/old", clock=clock, ttl_seconds=15)
    old.acquire()
    new = RunLock(new_port(kubeconfig), identity="other-host/2/new", clock=clock, ttl_seconds=15)
    with pytest.raises(LockHeld):
        new.acquire()
    clock.advance(16)
    record = new.acquire()
    assert record.holder == "other-host/2/new" and record.transitions == 1
    assert new.taken_over_from == "other-host/1/old"
    with pytest.raises(LockLost, match="other-host/2/new"):
        old.renew()


def test_lease_of_a_dead_local_process_is_taken_over(kubeconfig) -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = holder_identity("crashed", pid=int(done.stdout))
    RunLock(new_port(kubeconfig), identity=dead).acquire()
    resumed = RunLock(new_port(kubeconfig), identity=holder_identity("resume"))
    resumed.acquire()
    assert resumed.taken_over_from == dead


def test_force_takeover_of_a_live_lease_is_reported(kubeconfig) -> None:
    RunLock(new_port(kubeconfig), identity="elsewhere/7/live").acquire()
    forced = RunLock(new_port(kubeconfig), identity="here/8/forced")
    with pytest.raises(LockHeld, match="elsewhere/7/live"):
        forced.acquire()
    forced.acquire(force_takeover=True)
    assert forced.taken_over_from == "elsewhere/7/live"


def test_keep_alive_renews_in_the_background(sim, kubeconfig) -> None:
    lock = RunLock(new_port(kubeconfig), identity="h/9/keep", ttl_seconds=1)
    lock.acquire()
    before = sim.store.get("coordination.k8s.io/leases", "kube-system",
                           "cni-migration-lock")["metadata"]["resourceVersion"]
    lock.keep_alive(interval=0.05)
    deadline = threading.Event()
    for _ in range(100):
        now = sim.store.get("coordination.k8s.io/leases", "kube-system",
                            "cni-migration-lock")["metadata"]["resourceVersion"]
        if now != before:
            break
        deadline.wait(0.02)
    assert now != before
    lock.check()
    assert lock.release() is True
