"""What every chaos scenario stands on: a fast simulated cluster, a fast plan, and the CLI.

The migrator is driven as an operator drives it, ``python -m migrator run --plan ... --yes``
in a subprocess, against an in-process ``SimCluster`` whose store and request log the
scenarios read. Each process gets its own kubeconfig user (``SimCluster.write_kubeconfig(user=)``)
so that the request log tells its requests apart, as an audit log does. The plan is
``plans/example.yaml`` with short retry and probe intervals (the same steps, quicker waits),
and the cluster's latencies are a few simulated milliseconds, so a 6-node run takes seconds.
Scenarios that measure wall time run at a real cluster's pace instead (``REALISTIC`` latencies,
the example plan as it is): in a migration compressed into seconds, every second the tool waits
on a server's ``Retry-After`` would be a large share of the run, which it is not on a real one.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from migrator.sim.cluster import SimCluster
from migrator.sim.config import Latencies, SimConfig
from migrator.sim.requestlog import RequestEntry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plans" / "example.yaml"
TOOL_AGENT = "migrator/"   # the prefix of the tool's User-Agent (cluster/kube.py)
FAST = Latencies(schedule=0.0, sandbox=0.005, ready=0.01, terminate=0.005, agent_start=0.01,
                 calico_start=0.005, node_action=0.01, controller=0.0)
#: A real cluster's pace, in seconds, for the scenarios that measure wall time: the sim at time
#: scale 1 with kubelet and agent timings of the order a real cluster shows. Pod start-up within
#: a few seconds (the Kubernetes pod start-up SLO is 5 s at the 99th percentile, image pulls
#: excluded), a short shutdown after SIGTERM, a cilium agent ready some 15 s after its
#: container starts (cache sync and BPF programs), calico-node about 10 s.
REALISTIC = Latencies(schedule=0.0, sandbox=2.0, ready=3.0, terminate=2.0, agent_start=15.0,
                      calico_start=10.0, node_action=3.0, controller=0.0)
RUN_TIMEOUT = 600.0


def start_sim(nodes: int, seed: int, latencies: Latencies = FAST) -> SimCluster:
    """A converged default cluster of ``nodes`` nodes (one control plane), fast unless told."""
    return SimCluster(config=SimConfig(nodes=nodes, latencies=latencies), seed=seed).start()


@contextmanager
def scenario(name: str, nodes: int, seed: int, latencies: Latencies = FAST) -> Iterator[tuple[Path, SimCluster]]:
    """A scenario's working directory and its cluster (``start_sim``), both gone at the end."""
    with tempfile.TemporaryDirectory(prefix=f"chaos-{name}-") as tmp:
        sim = start_sim(nodes, seed, latencies)
        try:
            yield Path(tmp), sim
        finally:
            sim.stop()


def fast_plan(directory: Path, changes: dict[str, Any] | None = None, name: str = "plan.yaml") -> Path:
    """The example plan with short retry and probe intervals (same steps, quicker waits), plus
    ``changes`` given as dotted paths (``{"rollback.halt_after": None}``), written into
    ``directory`` as ``name``."""
    data = yaml.safe_load(EXAMPLE.read_text())
    data["drain"]["retry_interval"] = "1s"
    data.setdefault("probes", {}).update({"checks": {"interval": "1s", "deadline": "20s"},
                                          "sampling": {"interval": "2s"}})
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = directory / name
    path.write_text(yaml.safe_dump(data))
    return path


def example_plan(directory: Path, name: str = "plan.yaml") -> Path:
    """``plans/example.yaml`` as it is (its own retry and probe intervals), copied into ``directory``."""
    path = directory / name
    path.write_text(EXAMPLE.read_text())
    return path


def is_tool_write(entry: RequestEntry, user: str | None = None) -> bool:
    """A write the migrator sent (as ``user``, when given)."""
    return entry.is_write and entry.user_agent.startswith(TOOL_AGENT) and (user is None or entry.user == user)


@dataclass
class Outcome:
    """How one CLI invocation ended."""

    code: int
    wall: float          # seconds
    stderr: str          # its last lines

    @property
    def last_words(self) -> str:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""


class Invocation:
    """One ``python -m migrator COMMAND`` running in the background, output in files (a long run
    never blocks on a full pipe)."""

    def __init__(self, command: str, plan: Path, kubeconfig: Path, output_dir: Path, *extra: str) -> None:
        self._err = tempfile.TemporaryFile("w+")
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migrator", command, "--plan", str(plan), "--kubeconfig", str(kubeconfig),
             "--yes", "--output-dir", str(output_dir), "--log-format", "json", *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self._err, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def finish(self, timeout: float = RUN_TIMEOUT) -> Outcome:
        """Wait for the end (killing it past ``timeout``, reported as exit code -9)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        wall = time.monotonic() - self.began
        self._err.seek(0)
        text = self._err.read()
        self._err.close()
        return Outcome(code, wall, "\n".join(text.splitlines()[-40:]))


def invoke(command: str, plan: Path, kubeconfig: Path, output_dir: Path, *extra: str,
           timeout: float = RUN_TIMEOUT) -> Outcome:
    return Invocation(command, plan, kubeconfig, output_dir, *extra).finish(timeout)
