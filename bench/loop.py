"""Run-loop benchmark: the cost of one turn and the checkpoint bytes per node at scale.

A whole migration of ``--nodes`` nodes at ``--k`` in flight on the simulated cluster with fast
latencies (the loop's own cost, not the cluster's, is what is measured), and prints:

- the loop turn's duration (observe, decide, save, record; the actions' API calls and the
  waits excluded: ``migrator_turn_duration_seconds``), p50 and p90, over the turns with nodes
  in flight;
- checkpoint objects and bytes written per node (``CheckpointStore.written``), and, when the
  simulator's request log records body sizes, the bytes of the checkpoint's write requests;
- API requests per node, watch streams excluded;
- the migrator process's garbage-collector pauses (every thread stops for them).

Targets (issue "flat cost per node"): turn p50 <= 20 ms at 5,000 nodes with 50 in flight;
<= 8 KiB of checkpoint per node; <= 40 requests per node.
With ``--profile`` the run is profiled and the top functions by cumulative time are printed.
With ``--repeat N`` the whole run is made N times, each on a fresh simulated cluster, and the
median wall time is printed last: on a shared machine one run's wall time moves by several
seconds, more than many a change is worth.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import resource
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.engine import FAST, SLOW, plan_for, pool_for, pools_for
from bench.served import Served
from migrator import log as logsetup
from migrator.cluster.kube import KubeCluster
from migrator.runner import Runner
from migrator.sim.config import SimConfig


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.loop", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--pods-per-node", type=int, default=2)
    parser.add_argument("--latencies", choices=("fast", "slow"), default="fast",
                        help="the simulated cluster's latencies: fast (the loop's own cost) or slow (bench.engine's "
                             "realistic ones, for the wall time)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-dump", metavar="FILE", help="also write the profile's raw stats to FILE "
                        "(for pstats: callers and callees of one function)")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop the run after this long (as SIGTERM does) and report the turns so far; "
                             "per-node figures then count the nodes that finished")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="write the run's timeline and report there (kept), e.g. for a phase breakdown")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run N times, each on a fresh simulated cluster, and print the median wall time "
                             "(one run's wall time moves by several seconds on a shared machine)")
    args = parser.parse_args(argv)
    logsetup.quiet()
    walls = [_run(args) for _ in range(max(args.repeat, 1))]
    if len(walls) > 1:
        print(f"wall time over {len(walls)} runs: median {statistics.median(walls):.1f}s "
              f"(runs: {', '.join(f'{w:.1f}s' for w in walls)})", flush=True)


class Pauses:
    """A ``gc.callbacks`` entry adding up the collector's pauses, per generation."""

    def __init__(self) -> None:
        self.total = self.longest = 0.0
        self.count = [0, 0, 0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        took = time.perf_counter() - self._began
        self.total += took
        self.longest = max(self.longest, took)
        self.count[info["generation"]] += 1


def _run(args: argparse.Namespace) -> float:
    """One whole run on a fresh simulated cluster, its figures printed; its wall seconds."""
    n, k = args.nodes, args.k
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime     # this run's CPU, not the earlier runs' too
    pool = pool_for(n)
    config = SimConfig(nodes=n, latencies=FAST if args.latencies == "fast" else SLOW, web_max_unavailable=k,
                       **pools_for(n))
    with tempfile.TemporaryDirectory() as tmp, Served(config, Path(tmp) / "kc", args.pods_per_node) as served:
        work = Path(tmp)
        plan = plan_for(k, work, pool)
        served.start()
        runner = Runner(plan, KubeCluster.from_kubeconfig(str(served.kubeconfig)), output_dir=args.output_dir or work)
        profiler = cProfile.Profile() if args.profile or args.profile_dump else None
        t0 = time.monotonic()
        marked: list[tuple[int, int]] = []    # (requests, nodes finished) halfway through a stopped run

        def mark() -> None:
            cp = runner.timeline.checkpoint
            marked.append((served.mark(), sum(1 for r in cp.nodes if r.phase.terminal) if cp is not None else 0))

        timers = [threading.Timer(when, what) for when, what in ((args.max_seconds / 2, mark),
                                                                   (args.max_seconds, runner.request_stop))] \
            if args.max_seconds is not None else []
        for timer in timers:
            timer.daemon = True
            timer.start()
        pauses = Pauses()
        gc.callbacks.append(pauses)
        if profiler:
            profiler.enable()
        try:
            outcome = runner.run()
        finally:
            gc.callbacks.remove(pauses)
        for timer in timers:
            timer.cancel()
            if timer.is_alive() and timer is not threading.current_thread():
                timer.join()              # a mark in flight finishes with the pipe before the run's end is sent
        if profiler:
            profiler.disable()
        wall = time.monotonic() - t0
        counts = served.finish(plan.state.configmap_namespace, plan.state.configmap_name)
        stopped = args.max_seconds is not None and outcome.code == 1 and "interrupted" in outcome.message
        if outcome.code != 0 and not stopped:
            raise SystemExit(f"run at {n} nodes ended {outcome.code}: {outcome.message}")
        done = n if not stopped or outcome.checkpoint is None else \
            sum(1 for r in outcome.checkpoint.nodes if r.phase.terminal)
        turns = runner.metrics.turns
        written = runner.store.written
        print(f"loop N={n} k={k} ({args.pods_per_node} pods per node; sim boot {served.boot:.0f}s, in its own process): "
              f"run {wall:.1f}s, {len(turns)} turns" + (f"; stopped after {args.max_seconds:.0f}s with {done} "
                                                        "nodes finished (per-node figures: per finished node)"
                                                        if stopped else ""), flush=True)
        deciles = statistics.quantiles(turns, n=10) if len(turns) > 1 else turns * 9
        print(f"  turn p50 {1000 * statistics.median(turns):.1f} ms, p90 {1000 * deciles[8]:.1f} ms, "
              f"max {1000 * max(turns):.1f} ms (target p50 <= 20 ms at 5,000 nodes, k=50)")
        print(f"  checkpoint: {written.objects} objects written, {written.bytes / max(done, 1):.0f} bytes of data per node "
              f"(target <= 8192)")
        print(f"  checkpoint write requests: {counts['wire'] / max(done, 1):.0f} bytes per node on the wire")
        print(f"  API requests: {counts['requests'] / max(done, 1):.1f} per node, watches excluded (target <= 40); "
              "the most frequent: " + ", ".join([
                  f"{verb} {resource or '/'} {n / max(done, 1):.1f}" for (verb, resource), n in sorted(
                      counts["by_kind"].items(), key=lambda kv: -kv[1]) if verb != "watch"][:6]))
        if stopped and marked and done > marked[0][1]:
            print(f"  API requests in the second half: {(counts['requests'] - marked[0][0]) / (done - marked[0][1]):.1f} "
                  f"per node finished then ({done - marked[0][1]} nodes): the cost per node once the run's "
                  "one-off work (taints, probe fleet) is behind it")
        print(f"  collector pauses in migrator: {pauses.total:.2f}s in all, longest {1000 * pauses.longest:.0f} ms, "
              f"{pauses.count[2]} full collection(s) ({pauses.count[0]} young, {pauses.count[1]} middle)")
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = used.ru_utime + used.ru_stime - cpu_before
        print(f"  CPU seconds: migrator {cpu:.1f}, simulated cluster {counts['cpu']:.1f} "
              f"(its boot included), in a {wall:.0f}s run")
        print(f"  migrator peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
              + (" (the process's, over the runs so far)" if args.repeat > 1 else ""), flush=True)
        if profiler and args.profile_dump:
            profiler.dump_stats(args.profile_dump)
        if profiler and args.profile:
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        return wall


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
