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

from .tcpcut import listener


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


def http_kubeconfig(tmp_path, port: int):
    path = tmp_path / "kc"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
    return path


def assert_one_clean_line(text: str, port: int) -> None:
    assert "\n" not in text
    assert f"127.0.0.1:{port}" in text  # names the server
    for noise in ("urllib3", "object at 0x", "Max retries", "HTTPConnectionPool", "Caused by"):
        assert noise not in text


def test_refused_connection_is_unavailable_never_sent_and_one_line(tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    port = KubeCluster.from_kubeconfig(str(http_kubeconfig(tmp_path, free)))
    for call in (port.server_version, lambda: port.cordon_node("node-1"),
                 lambda: port.evict_pod("default", "web", uid="u")):
        with pytest.raises(Unavailable) as info:
            call()
        assert "refused" in str(info.value)
        assert info.value.sent is False  # provably not executed: safe to send again
        assert_one_clean_line(str(info.value), free)


def test_a_server_that_never_answers_is_unavailable_with_an_unknown_outcome(tmp_path) -> None:
    with listener("silent") as free:
        port = KubeCluster.from_kubeconfig(str(http_kubeconfig(tmp_path, free)), request_timeout=(2.0, 0.3))
        for call in (port.server_version, lambda: port.create_pod(
                PodRequest(namespace="default", name="p", image="agnhost"))):
            with pytest.raises(Unavailable) as info:
                call()
            assert "did not answer in time" in str(info.value)
            assert info.value.sent is True  # it may have been executed
            assert_one_clean_line(str(info.value), free)


def test_a_reset_connection_is_unavailable_with_an_unknown_outcome(tmp_path) -> None:
    with listener("reset") as free:
        port = KubeCluster.from_kubeconfig(str(http_kubeconfig(tmp_path, free)))
        for call in (port.server_version, lambda: port.emit_node_event("node-1", reason="R", message="m")):
            with pytest.raises(Unavailable) as info:
                call()
            assert info.value.sent is True
            assert_one_clean_line(str(info.value), free)


def test_messages_are_capped(sim, port) -> None:
    with pytest.raises(Invalid) as info:
        port.create_pod(PodRequest(name="x" * 400 + "_", namespace="default", image="nginx"))
    assert len(str(info.value)) <= MESSAGE_LIMIT
