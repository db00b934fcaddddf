"""API latency benchmark: GET, PATCH and LIST-by-node under 8 concurrent HTTPS clients.

A store with 1,000 Node and 20,000 Pod objects (inserted directly, realistic pod bodies), the
simulated API server in front, 8 client threads on keep-alive connections. Prints p50/p99 per
request kind and the process RSS. Targets: p50 GET <= 3 ms, LIST by node <= 20 ms, RSS <= 1.5 GB.
"""

from __future__ import annotations

import argparse
import http.client
import json
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.api")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300, help="per client and kind")
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
    ctx = ssl.create_default_context(cafile=str(ca))
    port = int(server.url.rsplit(":", 1)[1])
    samples: dict[str, list[float]] = {"GET pod": [], "PATCH pod": [], "LIST pods by node": []}
    lock = threading.Lock()

    def client(cid: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        hdr = {"Authorization": "Bearer bench"}
        mine: dict[str, list[float]] = {k: [] for k in samples}
        for j in range(args.requests):
            i = (cid * 7919 + j * 104729) % args.pods
            for kind, method, path, body, extra in (
                    ("GET pod", "GET", f"/api/v1/namespaces/bench/pods/app-{i}", None, {}),
                    ("PATCH pod", "PATCH", f"/api/v1/namespaces/bench/pods/app-{i}",
                     json.dumps({"metadata": {"labels": {"bench": str(j)}}}),
                     {"Content-Type": "application/merge-patch+json"}),
                    ("LIST pods by node", "GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-{i % args.nodes}",
                     None, {})):
                start = time.perf_counter()
                conn.request(method, path, body=body, headers={**hdr, **extra})
                resp = conn.getresponse()
                resp.read()
                mine[kind].append((time.perf_counter() - start) * 1000)
                if resp.status >= 300:
                    raise RuntimeError(f"{kind}: HTTP {resp.status}")
        with lock:
            for k, v in mine.items():
                samples[k].extend(v)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    server.stop()
    total = sum(len(v) for v in samples.values())
    print(f"{args.clients} clients, {total} requests in {wall:.1f}s ({total / wall:.0f} req/s)")
    for kind, values in samples.items():
        q = statistics.quantiles(values, n=100)
        print(f"  {kind:20} p50 {statistics.median(values):6.2f} ms   p99 {q[98]:6.2f} ms")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
