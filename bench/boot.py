"""Boot benchmark: a large simulated cluster from nothing to converged.

Builds ``--nodes`` nodes with a filler Deployment bringing workers to ``--pods-per-node``
pods, with tiny latencies and a large time scale, and prints how long the cluster took
to converge (wall seconds, and the process's CPU seconds, the steadier figure on a shared
machine), how many pods run and the peak RSS. Targets: 1,000 nodes / 20,000 pods in 60 s or
less, within 1.5 GB; 5,000 nodes / 100,000 pods (``--nodes 5000``) in 3 min, within 6 GB.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from collections import Counter

import structlog

from migrator.sim.config import Latencies, SimConfig

#: The default Calico pool (a /16 of /26 blocks) holds 1,024 nodes' blocks, and the sim's Calico
#: IPAM does not borrow from other nodes' blocks: larger clusters get pools that hold them (and
#: Cilium's, a /24 per node, for the agents' CiliumNodes).
LARGE_POOLS = {"calico_pool": "10.0.0.0/13", "cilium_pool": "10.128.0.0/10"}

TINY = Latencies(schedule=0.0, sandbox=0.001, ready=0.001, terminate=0.001, agent_start=0.001,
                 calico_start=0.001, node_action=0.001, controller=0.0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.boot", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods-per-node", type=int, default=20)
    parser.add_argument("--time-scale", type=float, default=1000.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    from migrator.sim.cluster import SimCluster
    from migrator.sim.world import own_process

    own_process()
    config = SimConfig(nodes=args.nodes, latencies=TINY, **(LARGE_POOLS if args.nodes > 1000 else {}))
    began, cpu_began = time.monotonic(), time.process_time()
    sim = SimCluster(config=config, seed=args.seed, time_scale=args.time_scale,
                     pods_per_node=args.pods_per_node, converge_timeout=900)
    try:
        sim.start()
        boot, cpu = time.monotonic() - began, time.process_time() - cpu_began
        pods = sim.store.list("pods")
        phases = Counter((p.get("status") or {}).get("phase") for p in pods)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        per_node = Counter(p["spec"].get("nodeName") for p in pods)
        print(f"boot.nodes {args.nodes}")
        large = args.nodes > 1000
        print(f"boot.seconds {boot:.1f}  (target <= {180 if large else 60})")
        print(f"boot.cpu_seconds {cpu:.1f}")
        print(f"boot.pods_total {len(pods)}")
        print(f"boot.pods_running {phases.get('Running', 0)}")
        print(f"boot.pods_per_node max {max(per_node.values())} min {min(per_node.values())}")
        print(f"boot.rss_mb {rss_mb:.0f}  (target <= {6144 if large else 1536})")
        print(f"boot.store_resource_version {sim.store.resource_version}")
        print(f"boot.world_errors {len(sim.world.errors)}")
    finally:
        sim.stop()


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
