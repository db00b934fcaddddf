"""Chaos against a faulty control plane: API errors at a rate, and an outage mid-run.

``fault_cell(rate, seed)``: a fresh cluster whose API server answers ``rate`` of all requests
(every verb, pods/proxy and watches included) with 503, 500 or 429 drawn from the seed; one
``migrator run``; did it finish, in that one invocation, with every invariant holding? The
cells run at the fast pace (a 6-node run in seconds) to show correctness; ``pace="real"``
runs them at a real cluster's pace with the example plan as it is, to measure what the faults
cost in wall time (``timing_cells``: with and without faults, side by side).

``outage(seed)``: one ``migrator run`` during which, right after the tool's n-th write, the API
server becomes unavailable for ``seconds`` (``refuse``: connections cut and refused, as a
kube-apiserver restarting; ``503``: answered 503, as a load balancer in front of it). Did the
run wait it out and finish in that one invocation?
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from chaos.harness import FAST, REALISTIC, example_plan, fast_plan, invoke, is_tool_write, scenario
from chaos.invariants import baseline, check
from migrator.sim.faults import OutageMode

CODES = (503, 500, 429)
Pace = Literal["fast", "real"]


@dataclass
class FaultCell:
    """One run at one fault rate and seed."""

    rate: float
    seed: int
    nodes: int
    code: int                 # the run's exit code
    wall: float               # seconds
    injected: int             # faults the server answered
    requests: int             # requests from the tool (watches included)
    writes: int               # write requests from the tool
    problems: list[str] = field(default_factory=list)
    last_words: str = ""
    pace: Pace = "fast"

    @property
    def finished(self) -> bool:
        """Done in this one invocation, every invariant holding."""
        return self.code == 0 and not self.problems


def fault_cell(rate: float, seed: int, nodes: int = 6, codes: tuple[int, ...] = CODES,
               pace: Pace = "fast") -> FaultCell:
    with scenario("faults", nodes, seed, FAST if pace == "fast" else REALISTIC) as (out, sim):
        base = baseline(sim)
        kubeconfig = sim.write_kubeconfig(out / "kubeconfig", user="run")
        if rate:
            sim.faults.add_mixed(rate, codes)
        done = invoke("run", fast_plan(out) if pace == "fast" else example_plan(out), kubeconfig, out)
        sim.faults.clear()
        entries = [e for e in sim.requests.entries if e.user == "run"]
        return FaultCell(rate, seed, nodes, done.code, done.wall, sim.faults.injected, len(entries),
                         sum(is_tool_write(e) for e in entries), check(sim, base), done.last_words, pace)


def timing_cells(rate: float, seeds: list[int], nodes: int = 6) -> list[FaultCell]:
    """A run at ``rate`` and a fault-free run per seed, at a real cluster's pace, all side by
    side (they wait far more than they compute, and share the machine's load alike)."""
    jobs = [(r, seed) for seed in seeds for r in (0.0, rate)]
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="timing") as pool:
        return list(pool.map(lambda job: fault_cell(job[0], job[1], nodes, pace="real"), jobs))


@dataclass
class OutageResult:
    """One run through an outage."""

    seed: int
    nodes: int
    seconds: float
    mode: str
    after_writes: int
    began: bool               # the outage happened (the run reached that write)
    code: int
    wall: float
    problems: list[str] = field(default_factory=list)
    last_words: str = ""

    @property
    def finished(self) -> bool:
        return self.began and self.code == 0 and not self.problems


def outage(seed: int, nodes: int = 6, seconds: float = 60.0, mode: OutageMode = "refuse",
           after_writes: int = 60) -> OutageResult:
    with scenario("outage", nodes, seed) as (out, sim):
        base = baseline(sim)
        kubeconfig = sim.write_kubeconfig(out / "kubeconfig", user="run")
        # on the serving thread, before that write is answered: in refuse mode its answer is lost
        sim.requests.on_nth(after_writes, lambda _e: sim.server.outage(seconds, mode),
                            match=lambda e: is_tool_write(e, "run"))
        done = invoke("run", fast_plan(out), kubeconfig, out, timeout=seconds + 600)
        return OutageResult(seed, nodes, seconds, mode, after_writes, sim.server.outages > 0, done.code,
                            done.wall, check(sim, base), done.last_words)
