"""End to end: the real CLI against the simulated cluster over HTTPS.

Covers: `run` + `finalize` with plans/example.yaml on 6 nodes; SIGKILL of the runner at several
moments followed by `resume` (no node left cordoned, no non-idempotent step applied twice,
from the sim's request log); two concurrent runs (exit 3 naming the Lease holder); `plan`,
`status` and malformed plans sending no write request.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
import yaml

from migrator.cli import main
from tests.runner.helpers import EXAMPLE, LABEL, checkpoint, fast_plan, kill_when, migrator, spawn


def assert_migrated(sim) -> None:
    for node in sim.store.list("nodes"):
        assert not node["spec"].get("unschedulable"), node["metadata"]["name"]
        assert node["metadata"]["labels"].get(LABEL) == "true", node["metadata"]["name"]
    for pod in sim.store.list("pods"):
        if pod["spec"].get("hostNetwork") or pod["status"].get("phase") in ("Succeeded", "Failed"):
            continue
        assert pod["status"].get("podIP", "").startswith("10.245."), (pod["metadata"]["name"], pod["status"].get("podIP"))


def assert_idempotent(sim) -> None:
    """Each node's agent pod deleted once; each pod evicted successfully at most once."""
    agent_deletes = [e for e in sim.requests.entries if e.verb == "delete" and e.resource == "pods"
                     and e.namespace == "kube-system" and e.name.startswith("cilium-")
                     and not e.name.startswith("cilium-operator")]
    assert len(agent_deletes) == len(sim.store.list("nodes")), [e.name for e in agent_deletes]
    evicted = Counter(e.name for e in sim.requests.entries
                      if e.verb == "create" and e.resource == "pods/eviction" and e.code == 201)
    assert all(n == 1 for n in evicted.values()), evicted


def test_run_then_finalize_with_the_example_plan(sim, kubeconfig, tmp_path):
    done = migrator("run", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--yes",
                    "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    sim.settle(timeout=20)
    assert_migrated(sim)
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE"
    assert all(r.phase.value == "DONE" for r in cp.nodes)
    assert_idempotent(sim)
    final = migrator("finalize", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--yes",
                     "--output-dir", str(tmp_path))
    assert final.returncode == 0, final.stderr[-3000:]
    assert sim.store.try_get("apps/daemonsets", "kube-system", "calico-node") is None
    assert sim.store.list("crd.projectcalico.org/ippools") == []
    assert sim.store.list("cilium.io/ciliumnodeconfigs") == []
    assert (tmp_path / "values-final.yaml").exists()
    for node in sim.fleet.runtimes:
        assert not any("calico" in f for f in sim.fleet.cni_files(node)), sim.fleet.cni_files(node)
    sim.settle(timeout=20)
    assert sim.store.list("pods", "cni-migration-probes") == []     # the probe fleet went with finalize
    assert all((r.probes or "").startswith("ok") for r in checkpoint(sim).nodes)  # type: ignore[union-attr]
    status = migrator("status", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "-o", "json")
    assert status.returncode == 0 and '"run_phase": "FINALIZED"' in status.stdout
    refused = migrator("rollback", "--all", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--yes")
    assert refused.returncode == 1 and "Calico was removed" in refused.stderr


def _phase_seen(phase: str):
    return lambda cp: any(r.phase.value == phase for r in cp.nodes)


@pytest.mark.parametrize(("moment", "strategy"), [
    pytest.param(lambda cp: cp.run_phase.value == "MIGRATING", "in-place", id="just-prepared"),
    pytest.param(_phase_seen("CORDONED"), "drain", id="mid-drain"),
    pytest.param(_phase_seen("LABELED"), "in-place", id="agent-restart"),
    pytest.param(_phase_seen("CNI_VERIFIED"), "in-place", id="mid-recycle"),
    pytest.param(lambda cp: sum(r.phase.value == "DONE" for r in cp.nodes) >= 3, "in-place", id="half-done"),
])
def test_sigkill_then_resume_finishes_without_repeating_steps(sim, kubeconfig, tmp_path, moment, strategy):
    plan = fast_plan(tmp_path, {"placement.strategy": strategy})
    proc = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                 "--output-dir", str(tmp_path), "--log-format", "json")
    kill_when(proc, sim, moment)
    resumed = migrator("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                       "--output-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    sim.settle(timeout=20)
    assert_migrated(sim)
    assert_idempotent(sim)


def test_a_second_run_exits_3_naming_the_holder(sim, kubeconfig, tmp_path):
    # the pause keeps the first run holding the lease however quickly its nodes migrate
    plan = fast_plan(tmp_path, {"gates.pause_between_nodes": "5m"})
    first = spawn("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                  "--output-dir", str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while sim.store.try_get("coordination.k8s.io/leases", "kube-system", "cni-migration-lock") is None:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.01)
        holder = sim.store.get("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")["spec"]["holderIdentity"]
        second = migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
        assert second.returncode == 3, second.stderr
        assert holder in second.stderr
        assert first.poll() is None, "the refused run must not disturb the holder"
        aborted = migrator("abort", "--plan", str(plan), "--kubeconfig", str(kubeconfig))
        assert aborted.returncode == 0, aborted.stderr
    finally:
        first.finish(timeout=120)
    assert first.returncode == 1   # aborted at a step boundary


def test_plan_writes_nothing(sim, kubeconfig, capsys):
    sim.requests.reset()
    code = main(["plan", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig), "--log-level", "warning"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "node-1" in out and "cp-1" in out
    assert sim.requests.writes() == 0, sim.requests.counts()


MALFORMED = [
    ("api_version", "migrator.io/v9"), ("kind", "Plan"), ("name", "Not_A_Name"),
    ("cilium.pod_cidr", "10.245.0.0/33"), ("cilium.pod_cidr", "not-a-cidr"), ("cilium.tunnel_port", 70000),
    ("cilium.tunnel_protocol", "ipip"), ("concurrency.max_unavailable", "150%"),
    ("concurrency.max_unavailable", 0), ("drain.timeout", "soon"), ("drain.on_pdb_blocked", "ignore"),
    ("drain.unmanaged_pods", "maybe"), ("order.strategy", "random"), ("state.configmap_name", "BAD NAME"),
    ("gates.pause_between_nodes", -5), ("cilium.surprise", 1), ("max_failures", -1),
]


@pytest.mark.parametrize("field,value", MALFORMED, ids=[f"{f}={v}" for f, v in MALFORMED])
def test_malformed_plan_exits_2_naming_the_field_with_no_write(sim, kubeconfig, tmp_path, capsys, field, value):
    data = yaml.safe_load(EXAMPLE.read_text())
    *parents, leaf = field.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value
    plan = tmp_path / "bad.yaml"
    plan.write_text(yaml.safe_dump(data))
    sim.requests.reset()
    code = main(["run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", "--log-level", "warning"])
    err = capsys.readouterr().err
    assert code == 2
    assert leaf in err, err
    assert sim.requests.writes() == 0 and sim.requests.total() == 0
