"""The client's credential refresh runs at most every REFRESH_EVERY seconds, not before every
request, and a token kubeconfig still authenticates every request with it."""

from __future__ import annotations

from pathlib import Path

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


def test_a_token_kubeconfig_refreshes_rarely_and_authenticates(sim, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    sim.write_kubeconfig(kubeconfig)
    client = load_api_client(str(kubeconfig))
    hook = client.configuration.refresh_api_key_hook
    assert hook is not None and hook.__qualname__.startswith("refreshed_rarely")
    port = KubeCluster(client)
    port.create_configmap("default", "seen", {"k": "v"})
    for _ in range(3):       # every request carries the token (the simulated API server answers 401 without)
        assert port.read_configmap("default", "seen").data == {"k": "v"}
