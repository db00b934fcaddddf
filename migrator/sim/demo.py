"""``migrator demo``: the whole migration on the embedded simulated cluster, end to end.

Starts a simulated cluster in this process, writes a kubeconfig for it, and runs exactly what
an operator runs against a real cluster — preflight, the dry-run forecast, the run, finalize —
through the same code and the same HTTP API, then prints a closing summary.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from migrator import log as logsetup
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig

DEFAULT_PLAN = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run the whole migration on an embedded simulated cluster")
    p.add_argument("--nodes", type=int, default=6, help="cluster size, control plane included (default 6)")
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated cluster")
    p.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="plan to run (default plans/example.yaml)")
    p.add_argument("--time-scale", type=float, default=1.0, help="speed of simulated latencies")
    p.add_argument("--keep", action="store_true", help="keep serving the cluster after the demo (Ctrl-C ends)")
    p.set_defaults(func=cmd_demo)


def _run(argv: list[str]) -> int:
    from migrator.cli import main
    print(f"\n$ migrator {' '.join(argv)}", flush=True)
    return main(argv)


def cmd_demo(args: argparse.Namespace) -> int:
    logsetup.quiet()
    if args.nodes < 2:
        print("error: --nodes must be at least 2 (a control-plane node and a worker)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="migrator-demo-"))
    print(f"starting a simulated cluster: {args.nodes} nodes, seed {args.seed} ...", flush=True)
    sim = SimCluster(config=SimConfig(nodes=args.nodes), seed=args.seed, time_scale=args.time_scale)
    sim.start()
    try:
        kc = str(sim.write_kubeconfig(workdir / "kubeconfig"))
        common = ["--plan", str(args.plan), "--kubeconfig", kc, "--log-format", "console", "--log-level", "warning"]
        t0 = time.monotonic()
        _run(["preflight", *common])
        _run(["plan", *common])
        code = _run(["run", *common, "--yes", "--output-dir", str(workdir)])
        if code == 0:
            code = _run(["finalize", *common, "--yes", "--output-dir", str(workdir)])
        elapsed = time.monotonic() - t0
        print(summary(sim, elapsed, workdir), flush=True)
        if args.keep:
            print(f"cluster still serving: export KUBECONFIG={kc}  (Ctrl-C to stop)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return code
    finally:
        sim.stop()


def summary(sim: SimCluster, elapsed: float, workdir: Path) -> str:
    pods = sim.store.list("pods")
    cilium = sum(1 for p in pods if (p.get("status") or {}).get("podIP", "").startswith("10.245."))
    host = sum(1 for p in pods if (p.get("spec") or {}).get("hostNetwork"))
    other = len(pods) - cilium - host
    counts: Counter[tuple[str, str]] = Counter()
    for e in sim.requests.entries:
        counts[(e.verb, e.resource)] += 1
    evictions = counts[("create", "pods/eviction")]
    deletes = counts[("delete", "pods")]
    nodes = sim.store.list("nodes")
    labelled = sum(1 for n in nodes if (n["metadata"].get("labels") or {}).get("io.cilium.migration/cilium-default") == "true")
    calico = sim.store.try_get("apps/daemonsets", "kube-system", "calico-node") is not None
    lines = ["", "== summary ==",
             f"nodes migrated:      {labelled}/{len(nodes)} (labelled io.cilium.migration/cilium-default=true)",
             f"pods on Cilium IPs:  {cilium}   hostNetwork: {host}   other: {other}",
             f"evictions:           {evictions}   pod deletions: {deletes}",
             f"Calico installed:    {'yes' if calico else 'no (removed by finalize)'}",
             f"API requests:        {sim.requests.total()} (excluding watch streams), writes {sim.requests.writes()}",
             f"wall time:           {elapsed:.1f}s",
             f"files:               {workdir}"]
    return "\n".join(lines)
