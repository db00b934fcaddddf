"""Every runbook's commands, run against the simulated cluster in the situation it describes.

Each ``sh`` block of a runbook runs as one bash script (``set -euo pipefail``) with ``PLAN``,
``KUBECONFIG`` and the runbook's variables set, ``migrator`` and ``kubectl`` on the PATH; it must
exit 0. A test per situation sets the cluster up (a killed run, a blocked drain, a broken node
config...), runs the runbook's blocks in order and checks the outcome it promises.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.runner.helpers import LABEL, ROOT, checkpoint, fast_plan, kill_when, migrator, spawn
from tests.runner.test_rollback import assert_on_calico, break_cross_overlay

RUNBOOKS = ROOT / "runbooks"
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


def blocks(name: str, skip: tuple[str, ...] = ()) -> list[str]:
    """The sh blocks of ``name``, leaving out those under a ``## `` heading starting with ``skip``."""
    found = []
    for section in re.split(r"^## ", (RUNBOOKS / name).read_text(), flags=re.M):
        if not section.startswith(skip):
            found += BLOCK.findall(section)
    return found


def run_runbook(name: str, kubeconfig: Path, plan: Path, skip: tuple[str, ...] = (), **env: str) -> list[str]:
    """Run every sh block of ``name`` (but those under headings in ``skip``); the outputs, in order."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    environ = {**os.environ, "PATH": path, "KUBECONFIG": str(kubeconfig), "PLAN": str(plan), **env}
    outputs = []
    found = blocks(name, skip)
    assert found, f"{name} has no sh block"
    for script in found:
        result = subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], capture_output=True, text=True,
                                env=environ, cwd=plan.parent, timeout=240)
        assert result.returncode == 0, f"{name}: block failed ({result.returncode}):\n{script}\n" \
                                       f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-3000:]}"
        outputs.append(result.stdout)
    return outputs


def test_every_runbook_is_exercised_here():
    covered = set(re.findall(r'"([a-z-]+\.md)"', Path(__file__).read_text()))
    present = {p.name for p in RUNBOOKS.glob("*.md")} - {"README.md", "state-table.md"}
    assert present <= covered, present - covered
    index = (RUNBOOKS / "README.md").read_text()
    assert all(f"({name})" in index for name in present)


def _killed_run(sim, kubeconfig, tmp_path, done: int) -> Path:
    plan = fast_plan(tmp_path)
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--output-dir", str(tmp_path))
    kill_when(proc, sim, lambda cp: sum(r.phase.value == "DONE" for r in cp.nodes) >= done, timeout=120)
    return plan


def test_resume_after_crash_then_finalize_checklist(sim, kubeconfig, tmp_path):
    plan = _killed_run(sim, kubeconfig, tmp_path, done=2)
    run_runbook("resume-after-crash.md", kubeconfig, plan)
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    outputs = run_runbook("finalize-checklist.md", kubeconfig, plan)
    assert "FINALIZED" in outputs[-1]
    assert sim.store.list("crd.projectcalico.org/ippools") == []


def test_rollback_node_then_rollback_all(sim, kubeconfig, tmp_path):
    plan = _killed_run(sim, kubeconfig, tmp_path, done=2)
    first = next(r.name for r in checkpoint(sim).nodes if r.phase.value == "DONE")  # type: ignore[union-attr]
    run_runbook("rollback-node.md", kubeconfig, plan, NODE=first)
    assert checkpoint(sim).node(first).phase.value == "ROLLED_BACK"  # type: ignore[union-attr]
    assert_on_calico(sim, first)
    run_runbook("rollback-all.md", kubeconfig, plan, skip=(UNREADABLE,))
    assert_everything_rolled_back(sim)


UNREADABLE = "When the checkpoint is unreadable"


def assert_everything_rolled_back(sim) -> None:
    """The run ended ROLLED_BACK and every node is unlabelled and back on Calico."""
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "ROLLED_BACK"
    sim.settle(timeout=20)
    for node in sim.store.list("nodes"):
        assert LABEL not in node["metadata"]["labels"]
        assert_on_calico(sim, node["metadata"]["name"])


def test_rollback_all_from_the_cluster_when_the_checkpoint_is_unreadable(sim, kubeconfig, tmp_path):
    plan = _killed_run(sim, kubeconfig, tmp_path, done=2)
    sim.store.mutate("configmaps", "kube-system", "cni-migration-state-nodes-000", lambda d: d["data"].update(nodes="?"))
    section = (RUNBOOKS / "rollback-all.md").read_text().split("## " + UNREADABLE, 1)[1]
    assert BLOCK.findall(section)
    outputs = run_runbook("rollback-all.md", kubeconfig, plan, skip=("Look", "Act", "Verify"))
    assert "cni-migration-state-unreadable-" in outputs[-1]
    assert_everything_rolled_back(sim)


def test_lease_held_by_a_dead_run(sim, kubeconfig, tmp_path):
    plan = _killed_run(sim, kubeconfig, tmp_path, done=1)

    def elsewhere(draft):  # the dead run lived on another machine and renewed just now
        draft["spec"]["holderIdentity"] = "runner-elsewhere/4242/0123456789ab"
        draft["spec"]["leaseDurationSeconds"] = 3600
    sim.store.mutate("coordination.k8s.io/leases", "kube-system", "cni-migration-lock", elsewhere)
    refused = migrator("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert refused.returncode == 3 and "runner-elsewhere/4242" in refused.stderr
    outputs = run_runbook("lease-held-by-dead-run.md", kubeconfig, plan)
    assert "runner-elsewhere/4242" in outputs[0]
    assert "lock taken over from runner-elsewhere/4242" in outputs[-1]
    assert checkpoint(sim).run_phase.value == "NODES_DONE"  # type: ignore[union-attr]


STUCK = [("drain", "CORDONED", "drain timed out"), ("in-place", "PENDING", "in-place recycle blocked")]
OVERRIDE = "Or: change the plan"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.S | re.M)


def _stuck_on_pdb(sim, tmp_path, strategy, stuck_phase, says) -> tuple[Path, Path, str]:
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path, {"drain.timeout": "6s", "placement.strategy": strategy})
    # a budget already at zero is a blocking preflight finding; skipped, it stands for one that
    # closes once the run is under way
    halted = migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                      "--skip-check", "pdb.zero-disruptions")
    assert halted.returncode == 1 and says in halted.stderr, halted.stderr[-2000:]
    stuck = next(r.name for r in checkpoint(sim).nodes  # type: ignore[union-attr]
                 if r.phase.value == stuck_phase and r.intent is not None)
    assert LABEL not in sim.store.get("nodes", None, stuck)["metadata"]["labels"]
    return kubeconfig, plan, stuck


@pytest.mark.parametrize(("strategy", "stuck_phase", "says"), STUCK)
def test_drain_stuck_on_pdb(sim_factory, tmp_path, strategy, stuck_phase, says):
    sim = sim_factory(scenario="pdb-blocked")
    kubeconfig, plan, stuck = _stuck_on_pdb(sim, tmp_path, strategy, stuck_phase, says)
    run_runbook("drain-stuck-on-pdb.md", kubeconfig, plan, skip=(OVERRIDE,), NODE=stuck)
    assert checkpoint(sim).run_phase.value == "NODES_DONE"  # type: ignore[union-attr]


def _merge(into: dict, change: dict) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.mark.parametrize(("strategy", "stuck_phase", "says"), STUCK)
def test_drain_stuck_on_pdb_overridden_by_editing_the_plan(sim_factory, tmp_path, strategy, stuck_phase, says):
    sim = sim_factory(scenario="pdb-blocked")
    kubeconfig, plan, stuck = _stuck_on_pdb(sim, tmp_path, strategy, stuck_phase, says)
    section = (RUNBOOKS / "drain-stuck-on-pdb.md").read_text().split("## " + OVERRIDE, 1)[1].split("\n## ", 1)[0]
    (snippet,) = YAML_BLOCK.findall(section)
    edited = yaml.safe_load(plan.read_text())
    _merge(edited, yaml.safe_load(snippet))             # the operator's edit, exactly as the runbook shows it
    plan.write_text(yaml.safe_dump(edited))
    outputs = run_runbook("drain-stuck-on-pdb.md", kubeconfig, plan, skip=("Act",), NODE=stuck)
    assert "drain.pdb_override.reason: unset → " in outputs[1]        # status: what differs, before the write
    assert "audit: drain.pdb_override.approved_by: unset → jane.doe (by " in outputs[1]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    assert any("pdb-override" in note for note in cp.node(stuck).audit), cp.node(stuck)  # type: ignore[union-attr]


def test_failing_probe(sim, kubeconfig, tmp_path):
    plan = fast_plan(tmp_path, {"probes.checks.deadline": "8s"})
    break_cross_overlay(sim, "node-1")
    halted = migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert halted.returncode == 1 and "rolled back automatically" in halted.stderr, halted.stderr[-2000:]
    outputs = run_runbook("failing-probe.md", kubeconfig, plan, NODE="node-1", BAD_CONFIG="break-node-1")
    assert "connectivity gate failed" in outputs[0]
    assert "kube-apiserver" in outputs[1]
    assert "break-node-1" in outputs[2]
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    assert cp.node("node-1").phase.value == "ROLLED_BACK"  # type: ignore[union-attr]
    assert all(r.phase.value == "DONE" for r in cp.nodes if r.name != "node-1")


def test_handover_killed_then_resumed_and_rolled_back_with_the_runbook(sim_factory, tmp_path):
    from tests.conftest import fast_config
    from tests.routing.test_handover_run import routed_plan

    sim = sim_factory(scenario="calico-bgp", config=fast_config(3))
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = routed_plan(sim, tmp_path, "calico-bgp")
    assert migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes").returncode == 0
    with sim.store.lock:
        before = sim.fleet.network.routing.lb_announcements()
    proc = spawn("handover", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    kill_when(proc, sim, lambda cp: cp.handover is not None and (cp.handover.key or "").startswith("hand-service"))
    outputs = run_runbook("handover.md", kubeconfig, plan)
    assert "hand-over: handing over, step" in outputs[0] and "hand-service:shop/web-public" in outputs[0]
    assert "peeringState: established" in outputs[0]
    assert "hand-over done" in outputs[1]                 # resumed to the end
    assert "hand-over rolled back" in outputs[2]          # then undone
    assert "hand-over: rolled back" in outputs[3]
    assert checkpoint(sim).handover.state == "undone"  # type: ignore[union-attr]
    sim.settle(timeout=20)
    with sim.store.lock:
        assert sim.fleet.network.routing.lb_announcements() == before
