"""Chaos: SIGKILL the migration runner at seeded random moments, resume, check convergence.

    python -m chaos.kill_resume --seeds 1 2 3

For each seed: a fresh 6-node simulated cluster, `migrator run` killed after a random delay
(from the seed), then `migrator resume`. It checks that every node ends labelled and
schedulable, every non-hostNetwork pod has a Cilium address, and each node's agent pod was
deleted exactly once. A failing seed replays with the same delay.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrator import log as logsetup
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "plans" / "example.yaml"


def one(seed: int) -> list[str]:
    problems: list[str] = []
    with SimCluster(config=SimConfig(nodes=6), seed=seed) as sim, tempfile.TemporaryDirectory() as tmp:
        kc = str(sim.write_kubeconfig(Path(tmp) / "kubeconfig"))
        args = ["--plan", str(PLAN), "--kubeconfig", kc, "--yes", "--output-dir", tmp, "--log-format", "json"]
        delay = random.Random(seed).uniform(0.5, 12.0)
        proc = subprocess.Popen([sys.executable, "-m", "migrator", "run", *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = subprocess.run([sys.executable, "-m", "migrator", "resume", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            problems.append(f"resume exited {done.returncode}: {done.stderr[-500:]}")
        sim.settle(timeout=20)
        for node in sim.store.list("nodes"):
            name = node["metadata"]["name"]
            if node["spec"].get("unschedulable"):
                problems.append(f"{name} left cordoned")
            if node["metadata"]["labels"].get("io.cilium.migration/cilium-default") != "true":
                problems.append(f"{name} not labelled")
        for pod in sim.store.list("pods"):
            ip = (pod.get("status") or {}).get("podIP", "")
            if not pod["spec"].get("hostNetwork") and pod["status"].get("phase") == "Running" and not ip.startswith("10.245."):
                problems.append(f"pod {pod['metadata']['name']} still on {ip}")
        agent_deletes = [e for e in sim.requests.entries if e.verb == "delete" and e.resource == "pods"
                         and e.name.startswith("cilium-") and not e.name.startswith("cilium-operator")]
        if len(agent_deletes) != len(sim.store.list("nodes")):
            problems.append(f"{len(agent_deletes)} agent pod deletions for {len(sim.store.list('nodes'))} nodes")
        print(f"seed {seed}: killed after {delay:.1f}s -> {'ok' if not problems else problems}", flush=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args(argv)
    logsetup.quiet()
    failed = [s for s in args.seeds if one(s)]
    print(f"{len(args.seeds) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
