"""Error mapping at the one door: real HTTP answers from the simulated cluster (404, 409,
422, 429 with and without a DisruptionBudget cause, 503 with Retry-After, a refused
connection) become our error classes, chained from the client's exception, with capped
messages taken from the Status body.
"""

from __future__ import annotations

import socket
import time

import pytest

from migrator.cluster.errors import (
    MESSAGE_LIMIT,
    AlreadyExists,
    Conflict,
    DisruptionBudgetBlocked,
    Invalid,
    NotFound,
    Throttled,
    Unavailable,
)
from migrator.cluster.kube import KubeCluster
from migrator.cluster.port import PodRequest


def test_404_is_not_found_chained(port) -> None:
    with pytest.raises(NotFound) as info:
        port.replace_configmap("kube-system", "missing", {}, resource_version="1")
    assert info.value.status == 404
    assert type(info.value.__cause__).__name__.endswith("Exception")  # the client's ApiException
    assert "missing" in str(info.value)


def test_409_stale_version_is_conflict_and_duplicate_is_already_exists(port) -> None:
    snap = port.create_configmap("default", "x", {"k": "v"})
    port.replace_configmap("default", "x", {"k": "w"}, resource_version=snap.resource_version)
    with pytest.raises(Conflict) as stale:
        port.replace_configmap("default", "x", {"k": "z"}, resource_version=snap.resource_version)
    assert stale.value.status == 409
    with pytest.raises(AlreadyExists):
        port.create_configmap("default", "x", {})


def test_422_is_invalid(port) -> None:
    with pytest.raises(Invalid) as info:
        port.create_pod(PodRequest(name="Bad_Name", namespace="default", image="nginx"))
    assert info.value.status == 422


def test_429_disruption_budget_on_eviction(sim_factory, tmp_path) -> None:
    sim = sim_factory(scenario="pdb-blocked")
    port = KubeCluster.from_kubeconfig(str(sim.write_kubeconfig(tmp_path / "kc")))
    blocked = [p for p in port.list_pdbs() if p.disruptions_allowed == 0]
    assert blocked, "the pdb-blocked scenario should have a PDB allowing no disruption"
    pdb = blocked[0]
    raw = sim.store.get("policy/poddisruptionbudgets", pdb.namespace, pdb.name)
    selector = raw["spec"]["selector"]["matchLabels"]
    pod = next(p for p in port.list_pods(namespace=pdb.namespace, labels=selector))
    with pytest.raises(DisruptionBudgetBlocked) as info:
        port.evict_pod(pod.namespace, pod.name, uid=pod.uid)
    assert info.value.status == 429
    assert "disruption budget" in str(info.value).lower()
    assert sim.store.try_get("pods", pod.namespace, pod.name) is not None


def test_429_without_budget_is_throttled_with_retry_after(sim, port) -> None:
    sim.faults.add(verb="get", resource="configmaps", error_rate=1.0, code=429, retry_after=3)
    with pytest.raises(Throttled) as info:
        port.read_configmap("kube-system", "cilium-config")
    assert info.value.retry_after == 3.0
    assert info.value.retryable
    time.sleep(0.1)
    assert sim.requests.counts()[("get", "configmaps")] == 1  # no hidden transport retry


def test_503_is_unavailable_with_retry_after(sim, port) -> None:
    sim.faults.add(verb="patch", resource="nodes", error_rate=1.0, code=503, retry_after=2)
    with pytest.raises(Unavailable) as info:
        port.cordon_node("node-1")
    assert info.value.status == 503 and info.value.retry_after == 2.0
    sim.faults.clear()
    assert port.cordon_node("node-1") is True


def test_refused_connection_is_unavailable(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    (tmp_path / "kc").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{free}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
    port = KubeCluster.from_kubeconfig(str(tmp_path / "kc"))
    port.api.configuration.retries = 0
    with pytest.raises(Unavailable):
        port.server_version()


def test_messages_are_capped(sim, port) -> None:
    with pytest.raises(Invalid) as info:
        port.create_pod(PodRequest(name="x" * 400 + "_", namespace="default", image="nginx"))
    assert len(str(info.value)) <= MESSAGE_LIMIT
