"""agnhost netexec's ports, as its flags set them: each netexec container serves HTTP on
``--http-port`` (8080) and UDP on ``--udp-port`` (8081, ``-1`` off); /dial with
``protocol=udp`` sends ``hostname`` and reads the answer. A policy drop times out, a port
nobody serves is refused."""

from __future__ import annotations

import json

from migrator.cluster.kube import KubeCluster
from tests.sim.test_guide_steps import NETEXEC, _wait, netexec_pod


def server(sim, name: str, node: str) -> dict:
    sim.store.create("pods", {"metadata": {"name": name, "namespace": "default", "labels": {"app": "server"}},
                              "spec": {"nodeName": node, "containers": [
                                  {"name": f"netexec-{p}", "image": NETEXEC,
                                   "args": ["netexec", f"--http-port={p}", f"--udp-port={p}"]} for p in (80, 81)] + [
                                  {"name": "no-udp", "image": NETEXEC, "args": ["netexec", "--http-port=90",
                                                                                "--udp-port=-1"]}]}})
    _wait(lambda: sim.store.get("pods", "default", name)["status"].get("podIP"))
    sim.settle(timeout=10)
    return sim.store.get("pods", "default", name)


def dial(port: KubeCluster, host: str, target: int, protocol: str) -> dict:
    query = {"host": host, "port": str(target), "request": "hostname", "protocol": protocol, "tries": "1"}
    return json.loads(port.proxy_get("default", "client", 8080, "dial", query))


def test_every_container_serves_its_ports_over_tcp_and_udp(sim, kubeconfig):
    netexec_pod(sim, "client", "node-1")
    ip = server(sim, "server", "node-2")["status"]["podIP"]
    port = KubeCluster.from_kubeconfig(str(kubeconfig))
    try:
        for target in (80, 81):
            for protocol in ("http", "udp"):
                assert dial(port, ip, target, protocol) == {"responses": ["server"], "errors": []}
        assert dial(port, ip, 90, "http")["responses"] == ["server"]
        refused = dial(port, ip, 90, "udp")                 # --udp-port=-1: no UDP server
        assert refused["responses"] == [] and "connection refused" in refused["errors"][0]
        assert dial(port, ip, 8081, "udp")["responses"] == []   # the flags moved UDP off the default
        # only TCP 80 allowed in: UDP 80 is dropped (times out), not refused
        sim.store.create("networking.k8s.io/networkpolicies", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "tcp-80-only", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
                     "ingress": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}})
        assert dial(port, ip, 80, "http")["responses"] == ["server"]
        dropped = dial(port, ip, 80, "udp")
        assert dropped["responses"] == [] and "i/o timeout" in dropped["errors"][0]
        assert "i/o timeout" in dial(port, ip, 81, "http")["errors"][0]
        # the client's own (default) UDP port answers too
        client_ip = sim.store.get("pods", "default", "client")["status"]["podIP"]
        assert dial(port, client_ip, 8081, "udp")["responses"] == ["client"]
    finally:
        port.close()
