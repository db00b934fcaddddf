"""``migrator manifests``: a ClusterRole granting exactly what the tool uses (the objects themselves:
``tests/test_manifests*.py``).

The exactness test runs every flow of the tool (preflight, plan, run with an automatic rollback,
status, pause, on-call rollback of a node and of everything, a canary, and run + finalize on a
second cluster) against the sim, takes every request the tool made from the sim's request log
(by its user agent, ``migrator/<version>``) and compares them with the ClusterRole's grants.
"""

from __future__ import annotations

import kubernetes

from migrator.cluster.kube import USER_AGENT
from migrator.rbac import grants
from tests.runner.helpers import fast_plan, migrator
from tests.runner.test_rollback import break_cross_overlay

GROUPED = ("apps", "policy", "batch")


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
