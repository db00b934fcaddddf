"""API latency benchmark: GET, PATCH and LIST-by-node under 8 concurrent HTTPS clients.

A store with 1,000 Node and 20,000 Pod objects (inserted directly, realistic pod bodies), the
simulated API server in front, 8 clients on keep-alive connections. The clients are separate
processes, as kubectl and the migrator are: client threads in the server's own process would
share its interpreter lock and measure the clients' TLS and parsing as server latency
(``--in-process`` still does that, for comparison). Prints p50/p99 per request kind and the
server process's peak RSS. Targets: p50 GET <= 3 ms, LIST by node <= 20 ms, RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import resource
import ssl
import statistics
import tempfile
import threading
import time
from pathlib import Path

from migrator.sim.apiserver import ApiServer
from migrator.sim.registry import install_api
from migrator.sim.store import Store


def _pod(i: int, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"app-{i}", "namespace": "bench", "labels": {"app": f"app-{i % 50}", "tier": "web"}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx:1.27",
                                                        "ports": [{"containerPort": 80}],
                                                        "env": [{"name": "MODE", "value": "prod"}]}]},
            "status": {"phase": "Running", "podIP": f"192.168.{i // 250}.{i % 250}",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


KINDS = ("GET pod", "PATCH pod", "LIST pods by node")


def _client(cid: int, port: int, ca: str, pods: int, nodes: int, requests: int) -> dict[str, list[float]]:
    """One client on one keep-alive connection: latencies in ms per request kind."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ssl.create_default_context(cafile=ca))
    hdr = {"Authorization": "Bearer bench"}
    mine: dict[str, list[float]] = {k: [] for k in KINDS}
    for j in range(requests):
        i = (cid * 7919 + j * 104729) % pods
        for kind, method, path, body, extra in (
                ("GET pod", "GET", f"/api/v1/namespaces/bench/pods/app-{i}", None, {}),
                ("PATCH pod", "PATCH", f"/api/v1/namespaces/bench/pods/app-{i}",
                 json.dumps({"metadata": {"labels": {"bench": str(j)}}}),
                 {"Content-Type": "application/merge-patch+json"}),
                ("LIST pods by node", "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-{i % nodes}",
                 None, {})):
            start = time.perf_counter()
            conn.request(method, path, body=body, headers={**hdr, **extra})
            resp = conn.getresponse()
            resp.read()
            mine[kind].append((time.perf_counter() - start) * 1000)
            if resp.status >= 300:
                raise RuntimeError(f"{kind}: HTTP {resp.status}")
    conn.close()
    return mine


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.api")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="per client and kind")
    parser.add_argument("--in-process", action="store_true", help="client threads in the server's process")
    args = parser.parse_args(argv)
    store = Store()
    install_api(store)
    store.create("namespaces", {"metadata": {"name": "bench"}})
    t0 = time.monotonic()
    for n in range(args.nodes):
        store.create("nodes", {"metadata": {"name": f"node-{n}"}})
    for i in range(args.pods):
        store.create("pods", _pod(i, f"node-{i % args.nodes}"))
    print(f"loaded {args.nodes} nodes and {args.pods} pods in {time.monotonic() - t0:.1f}s", flush=True)
    server = ApiServer(store, token="bench").start()
    ca = Path(tempfile.mkdtemp()) / "ca.pem"
    ca.write_bytes(server.ca_pem or b"")
    port = int(server.url.rsplit(":", 1)[1])
    samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
    t0 = time.monotonic()
    if args.in_process:
        results: list[dict[str, list[float]]] = []
        threads = [threading.Thread(target=lambda c=c: results.append(
            _client(c, port, str(ca), args.pods, args.nodes, args.requests))) for c in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        mp = multiprocessing.get_context("spawn")
        with mp.Pool(args.clients) as pool:
            results = pool.starmap(_client, [(c, port, str(ca), args.pods, args.nodes, args.requests)
                                             for c in range(args.clients)])
    for mine in results:
        for k, v in mine.items():
            samples[k].extend(v)
    wall = time.monotonic() - t0
    server.stop()
    total = sum(len(v) for v in samples.values())
    where = "threads in the server's process" if args.in_process else "processes"
    print(f"{args.clients} clients ({where}), {total} requests in {wall:.1f}s ({total / wall:.0f} req/s)")
    for kind, values in samples.items():
        q = statistics.quantiles(values, n=100)
        print(f"  {kind:20} p50 {statistics.median(values):6.2f} ms   p99 {q[98]:6.2f} ms")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of the server process {rss:.0f} MB")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
