"""``migrator manifests``: valid objects, and a ClusterRole granting exactly what the tool uses.

The exactness test runs every flow of the tool (preflight, plan, run with an automatic rollback,
status, pause, on-call rollback of a node and of everything, a canary, and run + finalize on a
second cluster) against the sim, takes every request the tool made from the sim's request log
(by its user agent, ``migrator/<version>``) and compares them with the ClusterRole's grants.
"""

from __future__ import annotations

import subprocess
import sys

import kubernetes
import kubernetes_validate
import yaml

from migrator.cluster.kube import USER_AGENT
from migrator.rbac import grants
from tests.runner.helpers import EXAMPLE, ROOT, fast_plan, migrator
from tests.runner.test_rollback import break_cross_overlay

GROUPED = ("apps", "policy", "batch")


def test_manifests_are_valid_objects_with_the_plan_inside(tmp_path):
    out = subprocess.run([sys.executable, "-m", "migrator", "manifests", "--plan", str(EXAMPLE),
                          "--namespace", "migration", "--image", "example.org/migrator:1", "--schedule", "0 4 * * *"],
                         capture_output=True, text=True, cwd=ROOT, check=True).stdout
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "Job",
                                         "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["ConfigMap"]["data"]["plan.yaml"] == EXAMPLE.read_text()
    assert by_kind["ClusterRoleBinding"]["subjects"][0] == {"kind": "ServiceAccount", "name": "cni-migrator",
                                                            "namespace": "migration"}
    job = by_kind["Job"]["spec"]
    assert job["backoffLimit"] == 0
    container = job["template"]["spec"]["containers"][0]
    assert container["image"] == "example.org/migrator:1" and container["args"][:3] == [
        "run", "--plan", "/etc/migrator/plan.yaml"]
    cron = by_kind["CronJob"]["spec"]
    assert cron["schedule"] == "0 4 * * *" and cron["concurrencyPolicy"] == "Forbid"
    assert cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "canary"
    bad = subprocess.run([sys.executable, "-m", "migrator", "manifests", "--plan", str(tmp_path / "none.yaml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "not found" in bad.stderr


def _used(sim) -> set[tuple[str, str, str]]:
    used = set()
    for entry in sim.requests.entries:
        if not entry.user_agent.startswith(USER_AGENT.split("/")[0] + "/") or not entry.resource:
            continue
        head, _, rest = entry.resource.partition("/")
        if head in GROUPED or "." in head:
            used.add((head, rest, entry.verb))
        else:
            used.add(("", entry.resource, entry.verb))
    return used


def _stale_fleet(kubeconfig) -> None:
    """A probe namespace and Service left by an older release (so the fleet is patched, not created)."""
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace({"metadata": {"name": "cni-migration-probes"}})
    core.create_namespaced_service("cni-migration-probes", {
        "metadata": {"name": "migrator-probe"},
        "spec": {"selector": {"app.kubernetes.io/name": "migrator-probe"}, "ports": [{"port": 9090}]}})
    client.close()


def test_cluster_role_grants_exactly_what_every_flow_uses(sim_factory, tmp_path):
    used: set[tuple[str, str, str]] = set()
    first = sim_factory()
    kubeconfig = first.write_kubeconfig(tmp_path / "first")
    _stale_fleet(kubeconfig)
    plan = fast_plan(tmp_path, {"rollback.halt_after": None, "probes.checks.deadline": "8s"})
    canary = fast_plan(tmp_path, {"name": "canary", "nodes.names": ["node-3"], "order.strategy": "explicit",
                                  "state.configmap_name": "canary", "state.lease_name": "canary",
                                  "canary": {"soak": "3s", "on_success": "rollback"}}, name="canary.yaml")
    break_cross_overlay(first, "node-1")
    flows = [("preflight",), ("plan",), ("run", "--yes"), ("status",), ("pause",),
             ("rollback", "--node", "node-2", "--yes"), ("rollback", "--all", "--yes")]
    for command, *rest in flows:
        result = migrator(command, "--plan", str(plan), "--kubeconfig", str(kubeconfig), *rest)
        assert result.returncode in (0, 1), (command, result.stderr[-2000:])
    result = migrator("canary", "--plan", str(canary), "--kubeconfig", str(kubeconfig), "--yes")
    assert result.returncode == 0, result.stderr[-2000:]
    used |= _used(first)
    second = sim_factory()
    kubeconfig = second.write_kubeconfig(tmp_path / "second")
    for command in ("run", "finalize"):
        result = migrator(command, "--plan", str(fast_plan(tmp_path)), "--kubeconfig", str(kubeconfig), "--yes",
                          "--output-dir", str(tmp_path))
        assert result.returncode == 0, (command, result.stderr[-2000:])
    used |= _used(second)
    granted = grants()
    missing, extra = sorted(used - granted), sorted(granted - used)
    assert not missing and not extra, f"used but not granted: {missing}\ngranted but never used: {extra}"
