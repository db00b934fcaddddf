"""Pod placement: the steering taint never outlives the run, PDBs hold under every strategy, and
tiny clusters (one node per zone) migrate without deadlock.
"""

from __future__ import annotations

import threading
import time

import pytest

from migrator.model.plan import STEER_TAINT
from tests.conftest import fast_config
from tests.runner.helpers import checkpoint, fast_plan, kill_when, migrator, spawn


def steer_taints(sim) -> list[str]:
    return [n["metadata"]["name"] for n in sim.store.list("nodes")
            if any(t.get("key") == STEER_TAINT for t in n["spec"].get("taints") or [])]


class WebWatch:
    """Samples the shop/web Deployment: the most replicas ever unavailable at once."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.worst = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        replicas = self.sim.store.get("apps/deployments", "shop", "web")["spec"]["replicas"]
        while not self._stop.is_set():
            ready = sum(1 for p in self.sim.store.list("pods", "shop")
                        if p["metadata"].get("labels", {}).get("app") == "web"
                        and not p["metadata"].get("deletionTimestamp")
                        and any(c["type"] == "Ready" and c["status"] == "True"
                                for c in p.get("status", {}).get("conditions") or []))
            self.worst = max(self.worst, replicas - ready)
            time.sleep(0.002)

    def __enter__(self) -> WebWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.parametrize("strategy", ["drain", "steer", "in-place"])
def test_two_node_cluster_migrates_and_the_pdb_holds(sim_factory, tmp_path, strategy):
    sim = sim_factory(config=fast_config(2, control_plane_nodes=0))   # node-1, node-2: each alone in its zone
    kubeconfig = sim.write_kubeconfig(tmp_path / "kc")
    plan = fast_plan(tmp_path, {"placement.strategy": strategy, "order.canaries": []})
    with WebWatch(sim) as web:
        result = migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert result.returncode == 0, result.stderr[-3000:]
    assert web.worst <= 1, f"web (PDB maxUnavailable 1) had {web.worst} replicas down at once"
    assert steer_taints(sim) == []
    assert all(r.phase.value == "DONE" for r in checkpoint(sim).nodes)  # type: ignore[union-attr]


@pytest.mark.parametrize("strategy", ["steer", "in-place"])
def test_placement_taints_pending_nodes_and_none_survives_a_kill_and_resume(sim, kubeconfig, tmp_path, strategy):
    plan = fast_plan(tmp_path, {"placement.strategy": strategy})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    seen: list[list[str]] = []

    def midway(cp) -> bool:
        seen.append(steer_taints(sim))
        return sum(r.phase.value == "DONE" for r in cp.nodes) >= 2
    with WebWatch(sim) as web:
        kill_when(proc, sim, midway, timeout=120)
        tainted = steer_taints(sim)
        cp = checkpoint(sim)
        assert cp is not None
        pending = sorted(r.name for r in cp.nodes if r.phase.value == "PENDING" and r.intent is None)
        assert tainted and set(tainted) <= set(cp.steered) and set(pending) <= set(tainted)
        assert not {r.name for r in cp.nodes if r.phase.value == "DONE"} & set(tainted)
        resumed = migrator("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert web.worst <= 1
    assert steer_taints(sim) == [] and checkpoint(sim).steered == ()  # type: ignore[union-attr]


@pytest.mark.parametrize("strategy", ["steer", "in-place"])
def test_abort_removes_the_placement_taints(sim, kubeconfig, tmp_path, strategy):
    # the pause keeps the run in flight however quickly the nodes migrate, so the abort lands mid-run
    plan = fast_plan(tmp_path, {"placement.strategy": strategy, "gates.pause_between_nodes": "5m"})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    try:
        deadline = time.monotonic() + 60
        while not steer_taints(sim):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        aborted = migrator("abort", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
        assert aborted.returncode == 0, aborted.stderr
    finally:
        proc.finish(timeout=90)
    assert proc.returncode == 1
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "ABORTED" and cp.steered == ()
    assert steer_taints(sim) == []


def test_in_place_restarts_every_workload_pod_exactly_once(sim, kubeconfig, tmp_path):
    def owned_by_replicaset(pod) -> bool:
        return any(r.get("kind") == "ReplicaSet" for r in pod["metadata"].get("ownerReferences") or [])
    initial = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in sim.store.list("pods")
               if owned_by_replicaset(p) and not p["spec"].get("hostNetwork")}
    plan = fast_plan(tmp_path, {"placement.strategy": "in-place"})
    with WebWatch(sim) as web:
        result = migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert result.returncode == 0, result.stderr[-3000:]
    assert web.worst <= 1
    restarted = [(e.namespace, e.name) for e in sim.requests.entries
                 if (e.verb, e.resource, e.code) in (("create", "pods/eviction", 201), ("delete", "pods", 200))]
    assert {k for k in restarted if k in initial} == initial          # every workload pod moved to Cilium...
    replacements = [k for k in restarted if k[0] in ("shop", "kube-system") and k not in initial
                    and not k[1].startswith(("cilium-", "calico-node-", "kube-proxy-", "log-agent-",
                                             "debug-shell", "migrator-"))]
    assert replacements == [], replacements                            # ...and none of its replacements again
    reasons = {e.get("reason") for e in sim.store.list("events")}
    assert "MigrationLabeled" in reasons and "MigrationCordoned" not in reasons   # never cordoned
    assert steer_taints(sim) == []
