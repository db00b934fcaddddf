"""The client's credential refresh runs at most every REFRESH_EVERY seconds, not before every
request, and a token kubeconfig still authenticates every request with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import kubernetes
import pytest
from kubernetes.config.incluster_config import InClusterConfigLoader
from kubernetes.config.kube_config import KubeConfigLoader

from migrator.cluster.kube import KubeCluster, load_api_client, refreshed_rarely


def test_the_refresh_runs_once_per_period_whatever_the_requests() -> None:
    now = [100.0]
    calls: list[float] = []
    refresh = refreshed_rarely(lambda cfg: calls.append(now[0]), every=30.0, clock=lambda: now[0])
    for _ in range(50):
        refresh(None)
    now[0] += 29.9
    refresh(None)
    now[0] += 0.2
    refresh(None)
    refresh(None)
    assert calls == [100.0, 130.1]


def test_a_token_kubeconfig_refreshes_rarely_and_authenticates(sim, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig = tmp_path / "kc"
    sim.write_kubeconfig(kubeconfig)
    client = load_api_client(str(kubeconfig))
    hook = client.configuration.refresh_api_key_hook
    assert hook is not None and hook.__qualname__.startswith("refreshed_rarely")
    applied: list[object] = []
    original = KubeConfigLoader._set_config

    def counted(loader: KubeConfigLoader, configuration: object) -> None:
        applied.append(configuration)
        original(loader, configuration)

    monkeypatch.setattr(KubeConfigLoader, "_set_config", counted)
    port = KubeCluster(client)
    port.create_configmap("default", "seen", {"k": "v"})
    for _ in range(3):       # every request carries the token (the simulated API server answers 401 without)
        assert port.read_configmap("default", "seen").data == {"k": "v"}
    # the loader's hook re-installs a hook of its own as it runs; the wrapper stays in place, so
    # the loader's configuration was applied again once for these four requests, not four times
    assert client.configuration.refresh_api_key_hook is hook
    assert len(applied) == 1


def test_the_in_cluster_token_is_still_renewed_through_the_wrapper(tmp_path: Path) -> None:
    """The in-cluster loader's hook re-installs itself too; the wrapper keeps running the newest
    one, so a rotated service account token is read once the loader counts it as expired."""
    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("first")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    loader = InClusterConfigLoader(str(token), str(ca), environ={
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    cfg = kubernetes.client.Configuration()
    loader.load_and_set(cfg)
    now = [0.0]
    wrapper = cfg.refresh_api_key_hook = refreshed_rarely(cfg.refresh_api_key_hook, every=30.0,
                                                          clock=lambda: now[0])
    assert cfg.get_api_key_with_prefix("BearerToken") == "bearer first"
    token.write_text("second")
    loader.token_expires_at = datetime.now() - timedelta(seconds=1)
    now[0] = 10.0
    assert cfg.get_api_key_with_prefix("BearerToken") == "bearer first"   # within the period
    now[0] = 40.0
    assert cfg.get_api_key_with_prefix("BearerToken") == "bearer second"
    assert cfg.refresh_api_key_hook is wrapper
