"""The run's PREFLIGHT phase end to end: the real CLI against simulated pitfall scenarios.

A blocking finding stops `run` (and `canary`) with exit 1 and the findings table, and the
sim's request log shows no write besides the checkpoint ConfigMap and the Lease: no
CiliumNodeConfig, no probe fleet, no taint, no label. `--skip-check` runs past a check,
recorded and audited in the checkpoint; `resume` checks again with fresh facts. `plan` (and
`run --dry-run`) print the findings before the forecast.
"""

from __future__ import annotations

import time

import yaml

from migrator.preflight import CHECK_IDS
from tests.runner.helpers import EXAMPLE, LABEL, ROOT, checkpoint, fast_plan, kill_when, migrator, spawn

STATE = ("configmaps", "kube-system", "cni-migration-state")
LOCK = ("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")


def other_writes(sim) -> list[tuple[str, str, str, str]]:
    """Writes other than the checkpoint's ConfigMaps (the run's and its node shards') and the Lease
    (Events included; a create names its object in the body, so the log has no name for it)."""
    return [(e.verb, e.resource, e.namespace, e.name) for e in sim.requests.entries if e.is_write
            and not any((e.resource, e.namespace) == ours[:2] and (e.name in ("", ours[2])
                                                                  or e.name.startswith(ours[2] + "-nodes-"))
                        for ours in (STATE, LOCK))]


def assert_untouched(sim) -> None:
    assert other_writes(sim) == []
    assert sim.store.list("cilium.io/ciliumnodeconfigs") == []
    assert sim.store.list("pods", "cni-migration-probes") == []
    for node in sim.store.list("nodes"):
        assert LABEL not in node["metadata"]["labels"], node["metadata"]["name"]
        assert not node["spec"].get("unschedulable"), node["metadata"]["name"]
        assert not [t for t in node["spec"].get("taints", []) if t["key"].startswith("migrator.io/")], node


def run(plan, kubeconfig, *extra: str):
    return migrator("run", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes", *extra)


def test_port_clash_halts_before_any_write_and_a_skip_runs_past_it(sim_factory, tmp_path):
    sim = sim_factory(scenario="vxlan-port-clash")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path)
    sim.requests.reset()
    halted = run(plan, kubeconfig)
    assert halted.returncode == 1, halted.stderr[-2000:]
    assert "SEVERITY" in halted.stdout and "blocking  calico.vxlan-port" in halted.stdout, halted.stdout
    assert "halted: preflight: blocking finding(s) from calico.vxlan-port, cilium.config" in halted.stderr
    assert_untouched(sim)
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "PREFLIGHT" and "calico.vxlan-port" in (cp.halted or "")

    # a plan with Cilium's port (so only the clash blocks), the clash skipped: the run goes on, and
    # (the sim's network breaking as the finding said) is stopped once it started migrating
    sim.store.delete(*STATE)
    same_port = fast_plan(tmp_path, {"cilium.tunnel_port": 4789}, name="same-port.yaml")
    proc = spawn("run", "--plan", str(same_port), "--kubeconfig", str(kubeconfig), "--yes",
                 "--skip-check", "calico.vxlan-port", "--output-dir", str(tmp_path))
    kill_when(proc, sim, lambda cp: cp.run_phase.value == "MIGRATING", timeout=60)
    cp = checkpoint(sim)
    assert cp is not None and cp.halted is None
    assert [s.check for s in cp.skipped_checks] == ["calico.vxlan-port"]
    skips = [note for note in cp.audit if note.startswith("check calico.vxlan-port skipped by ")]
    assert len(skips) == 1 and "VXLAN port 4789" in skips[0], cp.audit
    assert sim.store.list("cilium.io/ciliumnodeconfigs"), "the run went past PREFLIGHT"
    status = migrator("status", "--plan", str(same_port), "--kubeconfig", str(kubeconfig))
    assert "skipped checks: calico.vxlan-port (by " in status.stdout


def test_pod_cidr_overlapping_calico_halts_with_no_node_write(sim_factory, tmp_path):
    sim = sim_factory(scenario="cidr-overlap")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path, {"cilium.pod_cidr": sim.config.cilium_pool})
    sim.requests.reset()
    halted = run(plan, kubeconfig)
    assert halted.returncode == 1, halted.stderr[-2000:]
    assert "blocking  cidr.overlap" in halted.stdout
    assert_untouched(sim)
    assert not [e for e in sim.requests.entries if e.is_write and e.resource == "nodes"]


def test_resume_checks_again_and_goes_on_once_fixed(sim_factory, tmp_path):
    sim = sim_factory(scenario="pdb-blocked")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path)
    halted = run(plan, kubeconfig)
    assert halted.returncode == 1 and "blocking  pdb.zero-disruptions" in halted.stdout, halted.stdout
    assert checkpoint(sim).halted is not None  # type: ignore[union-attr]

    def room(draft):  # the budget's owners give it room to lose a pod
        draft["spec"].pop("minAvailable", None)
        draft["spec"]["maxUnavailable"] = 1
    sim.store.mutate("policy/poddisruptionbudgets", "shop", "api", room)
    deadline = time.monotonic() + 20
    while sim.store.get("policy/poddisruptionbudgets", "shop", "api").get("status", {}).get(
            "disruptionsAllowed", 0) < 1:
        assert time.monotonic() < deadline, "the PDB controller never updated the budget"
        time.sleep(0.05)
    resumed = migrator("resume", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes",
                       "--output-dir", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "SEVERITY" not in resumed.stdout
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "NODES_DONE" and cp.skipped_checks == ()


def test_canary_halts_before_any_write_and_ends_failed(sim_factory, tmp_path):
    sim = sim_factory(scenario="vxlan-port-clash")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path, {"canary": {"soak": "5s", "on_success": "keep"}})
    sim.requests.reset()
    canary = migrator("canary", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--yes")
    assert canary.returncode == 1, canary.stderr[-2000:]
    assert "blocking  calico.vxlan-port" in canary.stdout
    assert "canary failed: stopped before any change" in canary.stderr
    assert_untouched(sim)
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "ABORTED" and cp.canary is not None
    assert cp.canary.outcome == "failed" and cp.rollback is None


def test_plan_prints_the_findings_before_the_forecast(sim_factory, tmp_path):
    sim = sim_factory(scenario="vxlan-port-clash")
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    sim.requests.reset()
    blocked = migrator("plan", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig))
    assert blocked.returncode == 1, blocked.stderr[-2000:]
    table, _, forecast = blocked.stdout.partition("2 blocking, ")
    assert "blocking  calico.vxlan-port" in table and "node-1" in forecast, blocked.stdout
    dry = migrator("run", "--dry-run", "--plan", str(EXAMPLE), "--kubeconfig", str(kubeconfig),
                   "--skip-check", "calico.vxlan-port", "--skip-check", "cilium.config")
    assert dry.returncode == 0, dry.stdout[-3000:]
    assert "skipped   calico.vxlan-port" in dry.stdout and "0 blocking, 2 skipped" in dry.stdout
    assert sim.requests.writes() == 0


def test_unknown_check_is_refused_with_the_known_ones(tmp_path):
    canary = ROOT / "plans" / "canary.yaml"
    for argv in (["run", "--yes"], ["resume", "--yes"], ["canary", "--yes"], ["plan"], ["manifests"]):
        refused = migrator(*argv, "--plan", str(canary), "--skip-check", "calico.vxlan-prot",
                           *(["--kubeconfig", str(tmp_path / "none")] if argv[0] != "manifests" else []))
        assert refused.returncode == 2, (argv, refused.stderr)
        assert "calico.vxlan-prot: no such preflight check" in refused.stderr
        assert all(check in refused.stderr for check in CHECK_IDS)


def test_manifests_pass_skips_to_the_job_and_the_cronjob():
    out = migrator("manifests", "--plan", str(ROOT / "plans" / "canary.yaml"), "--job", "--cronjob",
                   "--skip-check", "pdb.zero-disruptions")
    assert out.returncode == 0, out.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(out.stdout)}
    job = docs["Job"]["spec"]["template"]["spec"]["containers"][0]["args"]
    cron = docs["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
    for args in (job, cron):
        assert args[-2:] == ["--skip-check", "pdb.zero-disruptions"], args
