"""policy.mode continuous against the simulated cluster's policy scenarios, through the CLI:
preflight refuses an untranslatable policy and the run writes nothing; a run applies the
translation and the shims, records each node's gap before its switch, passes every gate with the
policy probe, and finalize leaves the translation, removes the shims and Calico's policies, and
leaves the verdicts as they were before the run."""

from __future__ import annotations

from typing import Any

from kubernetes import client, config

from migrator.cli import main
from migrator.policy.shims import RUN_LABEL
from tests.policy.test_policy_cli import _cli
from tests.runner.helpers import checkpoint, fast_plan, migrator

NO_NAT_POOL = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
               "metadata": {"name": "cilium-migration-no-nat"},
               "spec": {"cidr": "10.245.0.0/16", "disabled": True, "natOutgoing": False}}


def _ours(sim: Any, plural: str) -> list[dict[str, Any]]:
    return [o for o in sim.store.list(f"cilium.io/{plural}") if RUN_LABEL in (o["metadata"].get("labels") or {})]


def test_the_untranslatable_scenario_fails_preflight_and_the_run_writes_nothing(sim_factory, tmp_path, capsys):
    sim = sim_factory(nodes=2, scenario="calico-policies-untranslatable")
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    plan = fast_plan(tmp_path, {"policy.mode": "continuous"})
    code, out, _err = _cli(capsys, "preflight", "--plan", str(plan), "--kubeconfig", kc)
    assert code == 1
    lines = [x for x in out.splitlines() if "policy.untranslatable" in x]   # one per construct
    [dnt] = [o["metadata"]["name"] for o in sim.store.list("crd.projectcalico.org/globalnetworkpolicies")
             if o["spec"].get("doNotTrack")]
    assert any(x.startswith("blocking") and f"policy gnp/{dnt} " in x and "doNotTrack" in x for x in lines), lines
    sim.requests.reset()
    code = main(["run", "--plan", str(plan), "--kubeconfig", kc, "--yes", "--log-level", "warning",
                 "--output-dir", str(tmp_path)])
    assert code == 1
    written = {(e.resource, e.namespace) for e in sim.requests.entries if e.is_write}   # its checkpoint and lock only
    assert written <= {("configmaps", "kube-system"), ("coordination.k8s.io/leases", "kube-system")}, written
    cp = checkpoint(sim)
    assert cp is not None and cp.run_phase.value == "PREFLIGHT" and "policy.untranslatable" in (cp.halted or "")


def _truth_table(sim: Any) -> dict[tuple[str, str, int, str], bool]:
    """Every tenant workload to every other (the scenario's servers and its quarantined pod), 80/81
    TCP/UDP, as the simulated network (Felix on Calico nodes, Cilium on migrated ones) answers."""
    reps: dict[str, str] = {}
    for p in sim.store.list("pods"):
        labels = p["metadata"].get("labels") or {}
        if labels.get("app") in ("server", "quarantined") and p["status"].get("phase") == "Running" \
                and not p["metadata"].get("deletionTimestamp"):
            reps.setdefault(f"{p['metadata']['namespace']}/{labels['app']}", p["status"]["podIP"])
    net = sim.fleet.network
    return {(a, b, port, proto): net.reachable(reps[a], reps[b], port, proto)[0]
            for a in sorted(reps) for b in sorted(reps) if a != b for port in (80, 81) for proto in ("tcp", "udp")}


def test_the_calico_policies_scenario_keeps_its_verdicts_through_run_and_finalize(sim_factory, tmp_path, capsys):
    sim = sim_factory(nodes=3, scenario="calico-policies")
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    api = config.new_client_from_config(config_file=kc)
    try:
        client.CustomObjectsApi(api).create_cluster_custom_object("crd.projectcalico.org", "v1", "ippools", NO_NAT_POOL)
    finally:
        api.close()
    # the policy probe in the tenants' namespaces: a node's gate fails on a verdict that changed from
    # before the run unless its gap report explains it (and the failed gate rolls the node back)
    plan = fast_plan(tmp_path, {"policy.mode": "continuous", "probes.policy": {
        "namespaces": ["tenant-a", "tenant-b", "shared"], "create_namespaces": False,
        "pods": {"a": {"app": "server"}, "b": {}}}})
    before = _truth_table(sim)
    assert any(before.values()) and not all(before.values())
    code, out, err = _cli(capsys, "plan", "--plan", str(plan), "--kubeconfig", kc)
    assert code == 0, out + err
    assert "7 Calico policies: 7 exact, 0 approximate, 0 untranslatable" in out
    assert "gap during wave 1:" in out and "shim(s) allowing unmanaged" in out
    done = migrator("run", "--plan", str(plan), "--kubeconfig", kc, "--yes", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    [cnc] = sim.store.list("cilium.io/ciliumnodeconfigs")
    assert cnc["spec"]["defaults"]["enable-policy"] == "default"
    ccnps = _ours(sim, "ciliumclusterwidenetworkpolicies")
    translated = {o["metadata"]["name"] for o in ccnps if o["metadata"]["labels"][RUN_LABEL] == "translation"}
    assert translated and any(o["metadata"]["labels"].get("migrator.io/shim") == "true" for o in ccnps)
    assert _ours(sim, "ciliumcidrgroups")    # the scenario's GlobalNetworkSet
    cp = checkpoint(sim)
    assert cp is not None and cp.policy_baseline is not None and cp.policy_baseline.complete
    assert all(r.phase.value == "DONE" and (r.probes or "").startswith("ok") and r.policy_gap for r in cp.nodes)
    events = [e for e in sim.store.list("events", "default") + sim.store.list("events", "kube-system")
              if e.get("reason") == "MigrationPolicyGap"]
    assert {e["involvedObject"]["name"] for e in events} == {r.name for r in cp.nodes}

    final = migrator("finalize", "--plan", str(plan), "--kubeconfig", kc, "--yes", "--output-dir", str(tmp_path))
    assert final.returncode == 0, final.stderr[-3000:]
    sim.settle(timeout=20)
    assert {o["metadata"]["name"] for o in _ours(sim, "ciliumclusterwidenetworkpolicies")} == translated   # no shim
    for plural in ("globalnetworkpolicies", "networkpolicies", "globalnetworksets", "networksets"):
        assert sim.store.list(f"crd.projectcalico.org/{plural}") == [], plural
    assert sim.store.list("networking.k8s.io/networkpolicies") != []    # Kubernetes' own stay: Cilium enforces them
    after = _truth_table(sim)
    assert {k: v for k, v in after.items() if before[k] != v} == {}


def test_rollback_all_restores_calicos_verdicts_and_removes_what_the_run_applied(sim_factory, tmp_path):
    sim = sim_factory(nodes=3, scenario="calico-policies")
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    sim.store.create("crd.projectcalico.org/ippools", NO_NAT_POOL)
    plan = fast_plan(tmp_path, {"policy.mode": "continuous", "order.strategy": "explicit", "probes.enabled": False,
                                "nodes.names": ["node-1"]})   # the others keep room for the pods it moves
    before = _truth_table(sim)
    done = migrator("run", "--plan", str(plan), "--kubeconfig", kc, "--yes", "--output-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    assert _ours(sim, "ciliumclusterwidenetworkpolicies")
    back = migrator("rollback", "--all", "--plan", str(plan), "--kubeconfig", kc, "--yes")
    assert back.returncode == 0, back.stderr[-3000:]
    sim.settle(timeout=20)
    for plural in ("ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies", "ciliumcidrgroups"):
        assert _ours(sim, plural) == [], plural
    assert sim.store.list("crd.projectcalico.org/globalnetworkpolicies") != []   # Calico's own, untouched
    after = _truth_table(sim)
    assert {k: v for k, v in after.items() if before[k] != v} == {}
