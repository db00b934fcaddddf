"""A forced takeover, end to end: the real CLI twice against the simulated cluster.

The first run holds the lease (paused between nodes); a second process takes it with
``--force-takeover``. The first sees it through its watch on the Lease, sends no further write, and
exits 1 (halted, resumable) naming the new holder; the second carries the run on.
"""

from __future__ import annotations

import time

from tests.runner.helpers import fast_plan, migrator, spawn

LEASE = ("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")


def holder(sim) -> str | None:
    lease = sim.store.try_get(*LEASE)
    return lease["spec"].get("holderIdentity") if lease else None


def test_the_old_holder_stops_and_names_the_new_one(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"gates.pause_between_nodes": "5m", "state.lease_duration": "6s"})
    first = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                  "--output-dir", str(tmp_path))
    second = None
    try:
        deadline = time.monotonic() + 60
        while holder(sim) is None:
            assert time.monotonic() < deadline and first.poll() is None, first.err()[-2000:]
            time.sleep(0.02)
        old = holder(sim)
        second = spawn("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                       "--force-takeover", "--output-dir", str(tmp_path))
        while holder(sim) == old:
            assert time.monotonic() < deadline and second.poll() is None, second.err()[-2000:]
            time.sleep(0.02)
        new = holder(sim)
        assert first.finish(timeout=60) == 1, first.err()[-2000:]
        assert f"held by {new}" in first.err()
        assert second.poll() is None, "the new holder carries on"
        assert holder(sim) == new
    finally:
        if second is not None:
            aborted = migrator("abort", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
            assert aborted.returncode == 0, aborted.stderr
            second.finish(timeout=120)
        if first.poll() is None:
            first.finish(timeout=60)
