"""An unavailable API server: the run keeps its state and waits up to ``api.outage_tolerance``,
then halts (exit 1, resumable); a checkpoint save whose outcome is unknown is settled by the
compare-and-swap of the next one."""

from __future__ import annotations

import io
import threading
from collections import Counter
from typing import Any, cast

import pytest
import structlog
from structlog.testing import capture_logs

from migrator.cluster.errors import Conflict, Unavailable
from migrator.cluster.kube import KubeCluster
from migrator.cluster.store import CheckpointStore
from migrator.log import configure
from migrator.model.plan import load_plan
from migrator.runner import Exit, Runner
from tests.cluster.checkpoints import sample_checkpoint
from tests.runner.helpers import checkpoint, fast_plan, migrator, spawn
from tests.runner.test_e2e import assert_migrated


def assert_applied_once(sim) -> None:
    """Each node's agent pod deleted once and each pod evicted once, counting the requests the
    API server carried out (the ones it refused during the outage changed nothing)."""
    done = [e for e in sim.requests.entries if 200 <= e.code < 300]
    agent_deletes = [e.name for e in done if e.verb == "delete" and e.resource == "pods"
                     and e.namespace == "kube-system" and e.name.startswith("cilium-")
                     and not e.name.startswith("cilium-operator")]
    assert len(agent_deletes) == len(sim.store.list("nodes")), agent_deletes
    evicted = Counter(e.name for e in done if e.verb == "create" and e.resource == "pods/eviction")
    assert all(n == 1 for n in evicted.values()), evicted


def _cordoned_or_later(cp) -> bool:
    return any(r.phase.value not in ("PENDING",) for r in cp.nodes)


def _wait_for(sim, predicate, proc) -> None:
    done = threading.Event()
    while not done.wait(0.01):
        cp = checkpoint(sim)
        if cp is not None and predicate(cp):
            return
        if proc.poll() is not None:
            pytest.fail(f"the run ended before the outage: {proc.err()[-2000:]}")


def test_the_run_waits_out_an_outage_and_finishes(sim, kubeconfig, tmp_path) -> None:
    plan = fast_plan(tmp_path, {"api.outage_tolerance": "5m"})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    _wait_for(sim, _cordoned_or_later, proc)
    sim.faults.add("*", "*", error_rate=1.0, code=503)
    before = sim.faults.injected
    ended = threading.Event()
    # hold the outage until the runner has been refused a good many requests, then end it
    while sim.faults.injected - before < 40 and proc.poll() is None and not ended.wait(0.05):
        pass
    sim.faults.clear()
    assert proc.finish(timeout=240) == 0, proc.err()[-3000:]
    err = proc.err()
    assert "api.unavailable" in err and "api.recovered" in err
    sim.settle(timeout=20)
    assert_migrated(sim)
    assert_applied_once(sim)
    cp = checkpoint(sim)
    assert cp is not None and all(r.phase.value == "DONE" for r in cp.nodes)
    assert all(r.last_error is None and r.attempt == 1 for r in cp.nodes), [(r.name, r.last_error) for r in cp.nodes]


def test_past_the_tolerance_the_run_halts_resumable_and_resume_finishes(sim, kubeconfig, tmp_path) -> None:
    plan = fast_plan(tmp_path, {"api.outage_tolerance": "1s"})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    _wait_for(sim, _cordoned_or_later, proc)
    sim.faults.add("*", "*", error_rate=1.0, code=429)
    code = proc.finish(timeout=120)
    sim.faults.clear()
    err = proc.err()
    assert code == Exit.HALTED, err[-3000:]
    assert "the API server has been unavailable since" in err and "longer than api.outage_tolerance=1s" in err
    assert "run `migrator resume` once the API server is back" in err
    resumed = migrator("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                       "--output-dir", str(tmp_path), timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    sim.settle(timeout=20)
    assert_migrated(sim)
    assert_applied_once(sim)


class _Flaky:
    """A port whose chosen checkpoint writes fail with ``Unavailable``: ``applied`` ones after
    the write went through (the answer was lost), the others before it reached the server."""

    def __init__(self, port: KubeCluster, fail: dict[int, bool]) -> None:
        self._port, self.fail, self.writes, self.failed = port, fail, 0, 0

    def replace_configmap(self, *args: Any, **kwargs: Any) -> Any:
        self.writes += 1
        applied = self.fail.get(self.writes)
        if applied is False:
            self.failed += 1
            raise Unavailable("injected: the write timed out before it was sent")
        snapshot = self._port.replace_configmap(*args, **kwargs)
        if applied:
            self.failed += 1
            raise Unavailable("injected: the write timed out after it was applied")
        return snapshot

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


def test_a_save_with_an_unknown_outcome_is_either_ours_or_the_previous_one(sim, kubeconfig) -> None:
    port = KubeCluster.from_kubeconfig(str(kubeconfig))
    store = CheckpointStore(port)
    first = sample_checkpoint()
    rv = store.save(first, None)
    second = first.model_copy(update={"halted": "an operator asked"})
    def flaky(fail: dict[int, bool]) -> CheckpointStore:
        """A store that read the checkpoint (so its save writes the run ConfigMap alone: the
        change is a run-level field) on a port whose first write fails."""
        flaky_store = CheckpointStore(cast(KubeCluster, _Flaky(port, fail)))
        flaky_store.load()
        return flaky_store

    # not applied: the stored checkpoint is still the previous one, and saving again goes through
    with pytest.raises(Unavailable):
        flaky({1: False}).save(second, rv)
    assert store.load() == (first, rv)
    # applied, answer lost: the retry with the same resourceVersion is refused, and a reload
    # gives back exactly what we wrote
    with pytest.raises(Unavailable):
        flaky({1: True}).save(second, rv)
    with pytest.raises(Conflict):
        store.save(second.model_copy(update={"halted": "a later decision"}), rv)
    stored, new_rv = store.load()
    assert stored == second and new_rv != rv
    port.close()


def test_the_runner_settles_lost_checkpoint_writes_and_finishes(sim, kubeconfig, tmp_path) -> None:
    saved = structlog.get_config()   # an earlier test may have set --log-level warning
    configure(level="debug", stream=io.StringIO())
    plan = load_plan(fast_plan(tmp_path, {"api.outage_tolerance": "5m"}))
    port = _Flaky(KubeCluster.from_kubeconfig(str(kubeconfig), watch_timeout_seconds=5),
                  {3: True, 4: False, 9: True, 15: False, 16: True})
    try:
        with capture_logs() as logs:
            outcome = Runner(plan, cast(KubeCluster, port), output_dir=tmp_path).run()
    finally:
        structlog.configure(**saved)
    assert outcome.code == Exit.DONE, outcome.message
    assert port.failed == 5
    waited = [e for e in logs if e["event"] == "api.unavailable"]
    assert {e["where"] for e in waited} == {"checkpoint save"} and len(waited) >= 2
    assert sum(e["event"] == "api.recovered" for e in logs) == len(waited)
    sim.settle(timeout=20)
    assert_migrated(sim)
    assert_applied_once(sim)
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    assert all(r.phase.value == "DONE" and r.attempt == 1 and r.last_error is None for r in cp.nodes)
