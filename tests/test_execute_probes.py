"""Connectivity checks through pods/proxy against the simulated API server: the probe's own
answer (and the API server failing to reach the probe pod) is evidence about the network; the
API server's own errors — 429, 5xx, a broken connection — make a check ``unknown``."""

from __future__ import annotations

import pytest

from migrator.cluster import errors as E
from migrator.cluster.kube import KubeCluster
from migrator.engine import actions as A
from migrator.execute import Executor, api_error
from migrator.metrics import Metrics
from tests.sim.test_guide_steps import netexec_pod


def _check(pod: str, host: str, name: str = "c") -> A.ProbeCheck:
    return A.ProbeCheck(name=name, namespace="default", pod=pod, pod_port=8080, host=host, port=8080, tries=3)


def _round(executor: Executor, *checks: A.ProbeCheck) -> dict[str, str]:
    result = executor.run_one(A.RunProbes(node="node-1", purpose="gate", checks=checks, threshold=0.66))
    assert result.ok
    return dict(result.detail)


@pytest.fixture
def probes(sim, kubeconfig):
    client = netexec_pod(sim, "client", "node-1")
    netexec_pod(sim, "target", "node-2")
    port = KubeCluster.from_kubeconfig(str(kubeconfig))
    metrics = Metrics()
    yield sim, Executor(port, metrics=metrics), metrics, client
    port.close()


def test_api_errors_on_pods_proxy_are_unknown_and_network_answers_are_not(probes) -> None:
    sim, executor, metrics, client = probes
    target = sim.store.get("pods", "default", "target")["status"]["podIP"]
    assert _round(executor, _check("client", target)) == {"c": "ok 3/3"}
    for code in (429, 500, 503):
        sim.faults.add("*", "pods/proxy", error_rate=1.0, code=code)
        outcome = _round(executor, _check("client", target))["c"]
        sim.faults.clear()
        assert outcome.startswith("unknown 0/3: the API server did not relay it"), (code, outcome)
    # the probe answered: its dials failed (the target is cut off) — a genuine failure
    sim.fleet.crash_agent("node-2", "calico", True)
    sim.settle(timeout=5)
    assert _round(executor, _check("client", target))["c"].startswith("fail 0/3")
    # the API server could not reach a pod that does not serve the port: also the network's answer
    other = next(p for p in sim.store.list("pods", "kube-system") if p["status"].get("podIP")
                 and not p["spec"].get("hostNetwork"))
    dead = A.ProbeCheck(name="d", namespace="kube-system", pod=other["metadata"]["name"], pod_port=8080,
                        host=client["status"]["podIP"], port=8080, tries=3)
    outcome = _round(executor, dead)["d"]
    assert outcome.startswith("fail 0/3") and "error trying to reach service" in outcome
    # the probe answered 400: the name does not resolve
    assert _round(executor, _check("client", "nothing.nowhere.svc.cluster.local"))["c"].startswith("fail 0/3")
    counted = {s.labels["outcome"]: s.value for s in metrics.probes.collect()[0].samples
               if s.name.endswith("_total")}
    assert counted == {"ok": 1.0, "unknown": 3.0, "fail": 3.0}


@pytest.mark.parametrize(("error", "unknown"), [
    (E.Throttled("too many requests", retry_after=1), True),
    (E.Unavailable("injected fault: the server is currently unable to handle the request", status=503), True),
    (E.Unavailable("proxy default/client:8080/dial: ReadTimeoutError: read timed out"), True),
    (E.Unavailable("proxy default/client:8080/dial: ProtocolError: connection reset by peer"), True),
    (E.Unavailable("Internal error", status=500), True),
    (E.Unavailable("error trying to reach service: dial tcp 10.244.1.5:8080: connect: connection refused",
                   status=503), False),
    (E.Unavailable("error trying to reach service: proxy error from 127.0.0.1:9345 while dialing "
                   "10.42.1.78:8080, code 502: 502 Bad Gateway", status=503), False),
    (E.Invalid("host and/or port param are invalid. lookup x: no such host", status=400), False),
    (E.NotFound('pods "client" not found', status=404), False),
])
def test_which_proxy_errors_are_the_api_servers(error: E.ClusterError, unknown: bool) -> None:
    assert api_error(error) is unknown
