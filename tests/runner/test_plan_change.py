"""Changing the plan of a run in flight, through the real CLI against the simulated cluster.

A tuning change (``drain.timeout``, ``finalize.timeout``, ``rollback.timeout``) is adopted by
``resume``, ``finalize`` and ``rollback`` and audited as ``field: old → new (by WHO at TIME)``
in the checkpoint and its ``summary``; a change to a defining field (``nodes``) exits 2 naming
the field and writes nothing; ``status`` shows what differs and writes nothing.
"""

from __future__ import annotations

import getpass
import socket

from tests.runner.helpers import checkpoint, fast_plan, kill_when, migrator, spawn

STATE = ("configmaps", "kube-system", "cni-migration-state")
BY = f"(by {getpass.getuser()}@{socket.gethostname()}/"


def _version(sim) -> str:
    return sim.store.get(*STATE)["metadata"]["resourceVersion"]


def _killed_after_first_node(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path)
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    kill_when(proc, sim, lambda cp: any(r.phase.value == "DONE" for r in cp.nodes), timeout=120)
    return plan


def test_resume_adopts_a_tuning_change_refuses_a_defining_one_and_finalize_follows(sim, kubeconfig, tmp_path):
    _killed_after_first_node(sim, kubeconfig, tmp_path)
    kube = ("--kubeconfig", str(kubeconfig))
    written = _version(sim)

    moved = fast_plan(tmp_path, {"nodes.exclude": ["node-5"], "drain.timeout": "7m"}, name="moved.yaml")
    refused = migrator("resume", "--plan", str(moved), *kube, "--yes")
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "define the run: nodes.exclude (digest " in refused.stderr
    assert "drain.timeout" not in refused.stderr.split("define the run:", 1)[1].split(". Resume", 1)[0]
    assert _version(sim) == written

    tuned = fast_plan(tmp_path, {"drain.timeout": "7m"}, name="tuned.yaml")
    status = migrator("status", "--plan", str(tuned), *kube)
    assert status.returncode == 0, status.stderr[-2000:]
    assert "drain.timeout: 5m → 7m; tuning: adopted on `resume --plan`" in status.stdout
    assert _version(sim) == written

    resumed = migrator("resume", "--plan", str(tuned), *kube, "--yes", "--output-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    assert cp.plan_tuning["drain.timeout"] == "7m"
    adopted = [note for note in cp.audit if note.startswith("drain.timeout: 5m → 7m ")]
    assert len(adopted) == 1 and BY in adopted[0], cp.audit
    summary = sim.store.get(*STATE)["data"]["summary"]
    assert f"audit: {adopted[0]}" in summary
    assert "drain.timeout: 5m → 7m (by " in migrator("status", "--plan", str(tuned), *kube).stdout

    again = fast_plan(tmp_path, {"drain.timeout": "7m", "finalize.timeout": "9m"}, name="final.yaml")
    final = migrator("finalize", "--plan", str(again), *kube, "--yes", "--output-dir", str(tmp_path))
    assert final.returncode == 0, final.stderr[-3000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "FINALIZED"
    assert any(note.startswith("finalize.timeout: 10m → 9m " + BY) for note in cp.audit), cp.audit


def test_rollback_with_a_tuning_changed_plan(sim, kubeconfig, tmp_path):
    _killed_after_first_node(sim, kubeconfig, tmp_path)
    node = next(r.name for r in checkpoint(sim).nodes if r.phase.value == "DONE")  # type: ignore[union-attr]
    moved = fast_plan(tmp_path, {"nodes.exclude": ["node-5"]}, name="moved.yaml")
    written = _version(sim)
    refused = migrator("rollback", "--node", node, "--plan", str(moved), "--kubeconfig", str(kubeconfig), "--yes")
    assert refused.returncode == 2 and "nodes.exclude: differs" in refused.stderr, refused.stderr[-2000:]
    assert _version(sim) == written                                   # the request was not recorded
    tuned = fast_plan(tmp_path, {"rollback.timeout": "9m"}, name="tuned.yaml")
    rolled = migrator("rollback", "--node", node, "--plan", str(tuned), "--kubeconfig", str(kubeconfig), "--yes")
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    cp = checkpoint(sim)
    assert cp is not None and cp.node(node).phase.value == "ROLLED_BACK"  # type: ignore[union-attr]
    assert any(note.startswith("rollback.timeout: 10m → 9m " + BY) for note in cp.audit), cp.audit
