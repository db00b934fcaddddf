"""Safety defects, end to end: the real CLI against the simulated cluster over HTTPS.

A selection that misses is exit 2 with no checkpoint; a node deleted mid-run is recorded and
the run ends; a rolled-back node is named by ``resume`` and ``finalize`` and migrated again after
``migrator retry``; finalize refuses while nodes outside the plan's selection run Calico; and a
corrupt checkpoint is rolled back from the cluster's own state with ``--from-cluster``.
"""

from __future__ import annotations

import time

from migrator.engine.node_steps import GONE
from tests.runner.helpers import LABEL, checkpoint, fast_plan, kill_when, migrator, spawn

WRITES = ("create", "update", "patch", "delete", "deletecollection")


def args(plan, kubeconfig, tmp_path) -> list[str]:  # noqa: ANN001
    return ["--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path)]


def writes_besides_the_lease(sim) -> list[str]:  # noqa: ANN001
    return [f"{e.verb} {e.resource} {e.name}" for e in sim.requests.entries
            if e.verb in WRITES and not e.resource.endswith("leases")]


def test_a_selection_that_misses_is_exit_2_with_nothing_written(sim, kubeconfig, tmp_path):
    for changes, named in (({"nodes": {"selector": {"match_labels": {"pool": "gpu"}}}}, "nodes.selector pool=gpu"),
                           ({"order.strategy": "explicit", "nodes": {"names": ["node-1", "nodee-2"]}}, "nodee-2")):
        plan = fast_plan(tmp_path, changes)
        sim.requests.reset()
        for command in ("run", "canary"):
            if command == "canary":
                plan = fast_plan(tmp_path, {**changes, "canary": {"soak": "10s"}})
            done = migrator(command, *args(plan, kubeconfig, tmp_path))
            assert done.returncode == 2, (command, done.stderr[-2000:])
            assert named in done.stderr and "invalid plan" in done.stderr, done.stderr[-2000:]
        assert checkpoint(sim) is None
        assert writes_besides_the_lease(sim) == []


def test_deleted_node_retry_after_rollback_and_finalize(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path)
    proc = spawn("run", *args(plan, kubeconfig, tmp_path))
    deadline = time.monotonic() + 60
    while not ((cp := checkpoint(sim)) and cp.run_phase.value == "MIGRATING"):
        assert time.monotonic() < deadline and proc.poll() is None, proc.err()[-2000:]
        time.sleep(0.02)
    sim.store.delete("nodes", None, "node-5")   # scaled down while it waits its turn
    assert proc.finish(timeout=180) == 0, proc.err()[-3000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    gone = cp.node("node-5")
    assert gone is not None and gone.phase.value == "SKIPPED" and gone.last_error == GONE
    status = migrator("status", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
    assert status.returncode == 0 and GONE in status.stdout, status.stdout

    back = migrator("rollback", "--node", "node-1", *args(plan, kubeconfig, tmp_path))
    assert back.returncode == 0, back.stderr[-3000:]
    resume = migrator("resume", *args(plan, kubeconfig, tmp_path))
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert "every node migrated" not in resume.stdout
    assert "node-1 was rolled back; run `migrator retry --node NAME`" in resume.stdout, resume.stdout
    refused = migrator("finalize", *args(plan, kubeconfig, tmp_path))
    assert refused.returncode == 1 and "node-1 rolled back or skipped" in refused.stderr, refused.stderr[-2000:]
    assert sim.store.try_get("apps/daemonsets", "kube-system", "calico-node") is not None

    wrong = migrator("retry", "--node", "node-2", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
    assert wrong.returncode == 2 and "node-2 is DONE" in wrong.stderr
    retry = migrator("retry", "--node", "node-1", "--reason", "MTU fixed", "--plan", str(plan),
                     "--kubeconfig", str(kubeconfig))
    assert retry.returncode == 0 and "migrator resume" in retry.stdout, retry.stderr[-2000:]
    cp = checkpoint(sim)
    pending = cp.node("node-1") if cp is not None else None
    assert cp is not None and pending is not None and pending.phase.value == "PENDING"
    assert any("retry by" in a and "MTU fixed" in a for a in cp.audit)
    again = migrator("resume", *args(plan, kubeconfig, tmp_path))
    assert again.returncode == 0 and "every node migrated" in again.stdout, again.stderr[-3000:]
    cp = checkpoint(sim)
    node1 = cp.node("node-1") if cp is not None else None
    assert node1 is not None and node1.phase.value == "DONE" and node1.attempt == 2
    assert sim.store.get("nodes", None, "node-1")["metadata"]["labels"].get(LABEL) == "true"
    final = migrator("finalize", *args(plan, kubeconfig, tmp_path))
    assert final.returncode == 0, final.stderr[-3000:]
    assert sim.store.try_get("apps/daemonsets", "kube-system", "calico-node") is None


def test_finalize_refuses_while_nodes_outside_the_selection_run_calico(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"order.strategy": "explicit", "nodes": {"names": ["node-1", "node-2"]}})
    done = migrator("run", *args(plan, kubeconfig, tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    sim.requests.reset()
    refused = migrator("finalize", *args(plan, kubeconfig, tmp_path))
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert "4 node(s) outside the run still on Calico: cp-1, node-3, node-4, node-5" in refused.stderr
    assert "pod(s) still on Calico addresses" in refused.stderr
    assert sim.store.try_get("apps/daemonsets", "kube-system", "calico-node") is not None
    assert [w for w in writes_besides_the_lease(sim) if "configmaps" in w] == []


def test_rollback_all_from_the_cluster_when_the_checkpoint_is_corrupt(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path)
    sim.store.mutate("nodes", None, "node-4", lambda d: d["spec"].update(unschedulable=True))  # not ours
    proc = spawn("run", *args(plan, kubeconfig, tmp_path))
    kill_when(proc, sim, lambda cp: sum(r.phase.value == "DONE" for r in cp.nodes) >= 2, timeout=120)
    sim.store.mutate("configmaps", "kube-system", "cni-migration-state",
                     lambda d: d["data"].update({"run.json": "{garbage"}))
    blocked = migrator("rollback", "--all", *args(plan, kubeconfig, tmp_path))
    assert blocked.returncode == 1 and "--from-cluster" in blocked.stderr, blocked.stderr[-2000:]
    wrong = migrator("rollback", "--node", "node-1", "--from-cluster", *args(plan, kubeconfig, tmp_path))
    assert wrong.returncode == 2 and "with --all" in wrong.stderr
    back = migrator("rollback", "--all", "--from-cluster", *args(plan, kubeconfig, tmp_path), timeout=240)
    assert back.returncode == 0, back.stderr[-3000:]
    assert "node-4" in back.stderr and "left cordoned" in back.stdout, back.stdout
    kept = {cm["metadata"]["name"]: cm for cm in sim.store.list("configmaps", "kube-system")
            if cm["metadata"]["name"].startswith("cni-migration-state-unreadable-")}
    runs = [name for name in kept if "-nodes-" not in name]   # the run ConfigMap's copy, and its shards'
    assert len(runs) == 1 and kept[runs[0]]["data"]["run.json"] == "{garbage"
    assert f"{runs[0]}-nodes-000" in kept
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "ROLLED_BACK"
    sim.settle(timeout=20)
    for node in sim.store.list("nodes"):
        name = node["metadata"]["name"]
        assert LABEL not in node["metadata"]["labels"], name
        assert bool(node["spec"].get("unschedulable")) == (name == "node-4"), name
        assert not [t for t in node["spec"].get("taints") or [] if t["key"].startswith("migrator.io/")], name
    for pod in sim.store.list("pods"):
        if pod["spec"].get("hostNetwork") or pod["status"].get("phase") != "Running":
            continue
        assert not pod["status"].get("podIP", "").startswith("10.245."), pod["metadata"]["name"]
    assert sim.store.list("cilium.io/ciliumnodeconfigs") == []
