"""Placement benchmark: the migration's own disruption under each strategy.

For each strategy at 20 and 100 nodes, a full run on the sim (concurrency 10 %, about 20 pods per
worker) reports, under two scheduler scorings (``spread``, like kube-scheduler's defaults, which
favour the nodes a drain just emptied; ``random``, uniform, the model of the 1.7-restart estimate):
restarts per workload pod (successful evictions and deletions of pods owned by a ReplicaSet,
StatefulSet or Job, from the API server's request log, over the workload pods at the start),
sampled pod pairs that failed while neither node was being migrated, and wall time.
Target for the default strategy: <= 1.1 restarts per workload pod and 0 such failures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.engine import FAST, plan_for, pool_for, pools_for, timed_run
from migrator import log as logsetup
from migrator.model.shards import from_configmaps
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig
from migrator.sim.store import Event

WORKLOAD_OWNERS = {"ReplicaSet", "StatefulSet", "Job"}


def measure(strategy: str, nodes: int, pods_per_node: int, scoring: str) -> tuple[float, int, float, int]:
    """(restarts per workload pod, workload pods, wall seconds, failed sampled pairs)."""
    owners: dict[tuple[str, str], str] = {}

    def remember(event: Event) -> None:
        meta = event.obj["metadata"]
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
        owners[(meta["namespace"], meta["name"])] = refs[0]["kind"] if refs else ""

    with tempfile.TemporaryDirectory() as tmp, \
            SimCluster(config=SimConfig(nodes=nodes, latencies=FAST, scheduler_scoring=scoring, **pools_for(nodes)),
                       seed=11, pods_per_node=pods_per_node,
                       converge_timeout=600) as sim:
        for pod in sim.store.list("pods"):
            remember(Event(0, "ADDED", "pods", pod))
        sim.world.on("pods", remember)
        workload = sum(1 for p in sim.store.list("pods")
                       if owners.get((p["metadata"]["namespace"], p["metadata"]["name"])) in WORKLOAD_OWNERS)
        plan = plan_for("10%", Path(tmp), pool_for(nodes), placement={"strategy": strategy},
                        probes={"sampling": {"pairs": 10, "interval": "2s"}})
        wall = timed_run(sim, plan, Path(tmp), f"{strategy} at {nodes} nodes")
        restarts = sum(1 for e in sim.requests.entries
                       if ((e.verb == "create" and e.resource == "pods/eviction" and e.code == 201)
                           or (e.verb == "delete" and e.resource == "pods" and e.code == 200))
                       and owners.get((e.namespace, e.name)) in WORKLOAD_OWNERS)
        cp = from_configmaps(sim.store.list("configmaps", "kube-system"), "cni-migration-state")
        assert cp is not None
        return restarts / max(1, workload), workload, wall, len(cp.sampling.failures)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.placement")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100])
    parser.add_argument("--strategies", nargs="+", default=["drain", "steer", "in-place"])
    parser.add_argument("--scoring", nargs="+", default=["spread", "random"], help="sim scheduler scorings")
    parser.add_argument("--pods-per-node", type=int, default=20,
                        help="pods on an average worker at the start (a filler Deployment tops them up)")
    args = parser.parse_args(argv)
    logsetup.quiet()
    print("| strategy | scheduler | nodes | restarts per workload pod | workload pods "
          "| failed pairs (not migrating) | wall |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for scoring in args.scoring:
        for strategy in args.strategies:
            for n in args.sizes:
                per_pod, pods, wall, failed = measure(strategy, n, args.pods_per_node, scoring)
                print(f"| {strategy} | {scoring} | {n} | {per_pod:.2f} | {pods} | {failed} | {wall:.1f}s |",
                      flush=True)


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
