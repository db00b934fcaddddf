"""Lease fencing at the port, against the simulated cluster over HTTP.

A holder whose own lease expired (on its monotonic clock) sends no write until a renewal
succeeds; after another process's ``--force-takeover`` the old holder, once it observes the
new holder, sends no write at all (the simulator's request log, by user agent, proves it),
and its refusals name the new holder. The executor lets a lost lock through to the runner
(which exits 1, resumable) and records an expired lease as ``Unavailable``.
"""

from __future__ import annotations

import time

import pytest

from migrator.cluster.errors import LeaseExpired
from migrator.cluster.guard import GuardedPort
from migrator.cluster.kube import KubeCluster
from migrator.cluster.lease import LockLost, RunLock
from migrator.engine import actions as A
from migrator.execute import Executor

from .fakeclock import FakeClock


def guarded(kubeconfig, agent: str, clock=None) -> GuardedPort:
    inner = KubeCluster.from_kubeconfig(str(kubeconfig))
    inner.api.user_agent = agent  # tells the two processes apart in the request log
    return GuardedPort(inner, clock=clock)


def writes_by(sim, agent: str) -> list[str]:
    return [f"{e.verb} {e.resource} {e.name}" for e in sim.requests.entries
            if e.is_write and e.user_agent == agent]


def test_an_expired_lease_stops_every_write_until_it_is_renewed(sim, kubeconfig) -> None:
    clock = FakeClock()
    port = guarded(kubeconfig, "migrator-a", clock)
    lock = RunLock(port, identity="host/1/run-a", ttl_seconds=10, clock=clock)
    lock.acquire()
    assert lock.fence is port.fence
    assert port.cordon_node("node-1") is True
    clock.advance(10.5)  # no renewal got through for longer than the lease's duration
    sim.requests.reset()
    with pytest.raises(LeaseExpired, match="cni-migration-lock"):
        port.uncordon_node("node-1")
    with pytest.raises(LeaseExpired):
        port.set_node_label("node-2", "example.com/k", "v")
    assert writes_by(sim, "migrator-a") == []
    assert "node-1" in [n.name for n in port.list_nodes()]  # reads still go
    lock.renew()  # nobody took it meanwhile: the renewal succeeds and writes resume
    assert port.uncordon_node("node-1") is True


def test_after_a_forced_takeover_the_old_holder_writes_nothing(sim, kubeconfig) -> None:
    port_a = guarded(kubeconfig, "migrator-a")
    lock_a = RunLock(port_a, identity="host-a/1/run-a", ttl_seconds=30)
    lock_a.acquire()
    lock_a.keep_alive(interval=0.05)
    assert port_a.cordon_node("node-1") is True

    port_b = guarded(kubeconfig, "migrator-b")
    lock_b = RunLock(port_b, identity="host-b/2/run-b", ttl_seconds=30)
    lock_b.acquire(force_takeover=True)

    deadline = time.monotonic() + 10
    while port_a.fence.lost is None:  # A's keep-alive renews, and finds B holding the lease
        assert time.monotonic() < deadline, "the old holder never noticed the takeover"
        time.sleep(0.01)
    sim.requests.reset()
    for write in (lambda: port_a.uncordon_node("node-1"),
                  lambda: port_a.evict_pod("default", "x", uid="u"),
                  lambda: port_a.replace_configmap("kube-system", "cni-migration-state", {},
                                                   resource_version="1")):
        with pytest.raises(LockLost, match="host-b/2/run-b"):
            write()
    with pytest.raises(LockLost, match="host-b/2/run-b"):
        lock_a.renew()
    assert lock_a.release() is False  # not ours: left alone
    assert writes_by(sim, "migrator-a") == []
    holder = sim.store.get("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")["spec"]
    assert holder["holderIdentity"] == "host-b/2/run-b"
    assert port_b.cordon_node("node-2") is True  # the new holder is not fenced
    lock_b.release()


def test_a_lost_lock_reaches_the_runner_and_an_expired_lease_is_a_failed_write(sim, kubeconfig) -> None:
    clock = FakeClock()
    port = guarded(kubeconfig, "migrator-a", clock)
    port.fence.arm(clock.monotonic(), 10)
    clock.advance(11)
    [result] = Executor(port).run([A.Cordon(node="node-1")])
    assert not result.ok and result.error_kind == "Unavailable"  # the engine backs off; no write sent
    port.fence.lose("lease kube-system/cni-migration-lock is now held by host-b/2/run-b")
    with pytest.raises(LockLost, match="host-b/2/run-b"):
        Executor(port).run([A.Cordon(node="node-1"), A.Cordon(node="node-2")])
