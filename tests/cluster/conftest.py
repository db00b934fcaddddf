"""Fixtures for the cluster layer: a ``KubeCluster`` talking to the simulated cluster over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrator.cluster.kube import KubeCluster


@pytest.fixture
def port(sim, kubeconfig) -> Iterator[KubeCluster]:
    cluster = KubeCluster.from_kubeconfig(str(kubeconfig), watch_timeout_seconds=5)
    yield cluster
    cluster.close()
