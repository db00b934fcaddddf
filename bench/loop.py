"""Run-loop benchmark: the cost of one turn and the checkpoint bytes per node at scale.

A whole migration of ``--nodes`` nodes at ``--k`` in flight on the simulated cluster with fast
latencies (the loop's own cost, not the cluster's, is what is measured), and prints:

- the loop turn's duration (observe, decide, save, record; the actions' API calls and the
  waits excluded: ``migrator_turn_duration_seconds``), p50 and p90, over the turns with nodes
  in flight;
- checkpoint objects and bytes written per node (``CheckpointStore.written``), and, when the
  simulator's request log records body sizes, the bytes of the checkpoint's write requests;
- API requests per node, watch streams excluded.

Targets (issue "flat cost per node"): turn p50 <= 20 ms at 5,000 nodes with 50 in flight;
<= 8 KiB of checkpoint per node; <= 40 requests per node.
With ``--profile`` the run is profiled and the top functions by cumulative time are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.engine import FAST, plan_for, pool_for
from migrator import log as logsetup
from migrator.cluster.kube import KubeCluster
from migrator.runner import Runner
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.loop", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--pods-per-node", type=int, default=4)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    logsetup.quiet()
    n, k = args.nodes, args.k
    pool = pool_for(n)
    config = SimConfig(nodes=n, latencies=FAST, web_max_unavailable=k, **({"cilium_pool": pool} if pool else {}))
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, SimCluster(config=config, seed=11, pods_per_node=args.pods_per_node,
                                                          converge_timeout=1800) as sim:
        boot = time.monotonic() - began
        work = Path(tmp)
        plan = plan_for(k, work, pool)
        kc = sim.write_kubeconfig(work / "kc")
        sim.requests.reset()
        runner = Runner(plan, KubeCluster.from_kubeconfig(str(kc)), output_dir=work)
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.monotonic()
        if profiler:
            profiler.enable()
        outcome = runner.run()
        if profiler:
            profiler.disable()
        wall = time.monotonic() - t0
        if outcome.code != 0:
            raise SystemExit(f"run at {n} nodes ended {outcome.code}: {outcome.message}")
        turns = runner.metrics.turns
        written = runner.store.written
        requests = sim.requests.total(exclude_watch=True)
        sized = getattr(sim.requests, "bytes_written", None)
        print(f"loop N={n} k={k} ({args.pods_per_node} pods per node; sim boot {boot:.0f}s): run {wall:.1f}s, "
              f"{len(turns)} turns", flush=True)
        print(f"  turn p50 {1000 * statistics.median(turns):.1f} ms, p90 {1000 * percentile(turns, 0.9):.1f} ms, "
              f"max {1000 * max(turns):.1f} ms (target p50 <= 20 ms at 5,000 nodes, k=50)")
        print(f"  checkpoint: {written.objects} objects written, {written.bytes / n:.0f} bytes of data per node "
              f"(target <= 8192)")
        if sized is not None:
            wire = sized(resource="configmaps", namespace=plan.state.configmap_namespace,
                         name_prefix=plan.state.configmap_name)
            print(f"  checkpoint write requests: {wire / n:.0f} bytes per node on the wire")
        print(f"  API requests: {requests / n:.1f} per node, watches excluded (target <= 40)")
        print(f"  peak RSS (sim and migrator in one process): "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
        if profiler:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
