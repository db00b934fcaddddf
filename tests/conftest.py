"""Project-wide fixtures: simulated clusters over real HTTP, and clients for them.

* ``sim_factory(nodes=6, scenario="default", seed=7, config=None, **kwargs)`` starts a
  converged ``SimCluster`` (stopped after the test); ``kwargs`` go to ``SimCluster``.
* ``sim``: a fresh 6-node default cluster per test.
* ``kubeconfig``: the ``sim`` cluster's kubeconfig, written into ``tmp_path``.
* ``kube_client``: a ``kubernetes.client.ApiClient`` built from that kubeconfig.
* ``kubectl``: run the ``kubectl`` binary against ``sim`` (skips when it is absent).

Latencies are a few simulated milliseconds so a 6-node cluster converges well under a
second; tests that need a slow component pass their own ``config``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from migrator.sim.config import Latencies, SimConfig

FAST_LATENCIES = Latencies(schedule=0.0, sandbox=0.005, ready=0.01, terminate=0.005, agent_start=0.01,
                           calico_start=0.005, node_action=0.01, controller=0.0)


def fast_config(nodes: int = 6, **changes: Any) -> SimConfig:
    return SimConfig(nodes=nodes, latencies=changes.pop("latencies", FAST_LATENCIES), **changes)


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """A command run in-process configures structlog onto the test's captured stderr, which pytest
    closes when the test ends: later tests on the same worker would log into a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., Any]]:
    from migrator.sim.cluster import SimCluster

    started: list[SimCluster] = []

    def make(nodes: int = 6, scenario: str = "default", seed: int = 7, config: SimConfig | None = None,
             **kwargs: Any) -> SimCluster:
        cluster = SimCluster(config=config or fast_config(nodes), seed=seed, scenario=scenario, **kwargs)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., Any]) -> Any:
    return sim_factory()


@pytest.fixture
def kubeconfig(sim: Any, tmp_path: Path) -> Path:
    return sim.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def kube_client(kubeconfig: Path) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(kubeconfig))
    yield client
    client.close()


def run_kubectl(kubeconfig: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """kubectl against ``kubeconfig``, with a discovery cache of its own: the shared one is keyed by
    host:port, and a port another test's simulated cluster used before would answer from its cache."""
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    cache = f"--cache-dir={Path(kubeconfig).parent / '.kubectl-cache'}"
    return subprocess.run(["kubectl", cache, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture
def kubectl(kubeconfig: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    return lambda *args, timeout=60.0: run_kubectl(kubeconfig, *args, timeout=timeout)


#: Tests that drive whole runs in subprocesses, longest first: started first, they overlap the
#: many quick ones instead of running alone at the end of the suite (pytest-xdist hands tests
#: out in collection order).
LONG_FIRST = ("tests/runner/test_manifests.py", "tests/chaos/test_chaos_subset.py", "tests/runner/",
              "tests/chaos/", "tests/sim/test_kubectl", "tests/test_image.py", "tests/test_metrics_scrape.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((i for i, prefix in enumerate(LONG_FIRST) if path.startswith(prefix)), len(LONG_FIRST))

    items.sort(key=rank)   # stable: the order within each group is kept
