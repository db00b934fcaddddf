"""Chaos: SIGKILL the runner right after its k-th write, then ``resume``; for every k.

The kill is exact, not timed: the simulator calls back when it records the runner's k-th
write request (``RequestLog.on_nth``, counted by the run's own kubeconfig user and the tool's
User-Agent), on the thread serving it and before the answer is sent, and the callback sends
SIGKILL. So the k-th write was executed and the runner died without learning its outcome, the
hardest moment to crash at. Then ``migrator resume`` (as another user) must finish, with every
invariant of ``chaos.invariants`` holding. A run killed before its checkpoint existed has
nothing to resume: ``resume`` exits 2 saying to start with ``run``, and the point is then
judged by that ``run`` (reported as such).

``reference(seed)`` counts the writes of an uninterrupted run; ``sweep`` kills at each of
``points`` (default every k from 1 to that count). A point the run never reaches (this run made
fewer writes) is reported as such, and its cluster is checked all the same.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chaos.harness import Invocation, fast_plan, invoke, is_tool_write, scenario
from chaos.invariants import STATE, baseline, check


@dataclass
class CrashPoint:
    """One kill and its resume."""

    k: int
    reached: bool             # the run made a k-th write (and was killed there)
    killed_at: str            # "verb resource/name" of the k-th write
    run_code: int
    resume_code: int | None   # None when nothing was killed
    problems: list[str] = field(default_factory=list)
    last_words: str = ""
    then_run: int | None = None   # resume found no checkpoint (exit 2, "start with run"): run's exit code

    @property
    def converged(self) -> bool:
        code = self.run_code if not self.reached else (self.then_run if self.then_run is not None
                                                        else self.resume_code)
        return code == 0 and not self.problems


def reference(seed: int, nodes: int = 4) -> int:
    """The number of writes an uninterrupted run makes (the sweep's range)."""
    with scenario("ref", nodes, seed) as (out, sim):
        done = invoke("run", fast_plan(out), sim.write_kubeconfig(out / "kubeconfig", user="run"), out)
        if done.code != 0:
            raise RuntimeError(f"the reference run exited {done.code}: {done.last_words}")
        return sum(is_tool_write(e, "run") for e in sim.requests.entries)


def crash_point(k: int, seed: int, nodes: int = 4) -> CrashPoint:
    with scenario("crash", nodes, seed) as (out, sim):
        base = baseline(sim)
        plan = fast_plan(out)
        pid: list[int] = []
        started, killed = threading.Event(), threading.Event()
        where: list[str] = []

        def kill(entry: object) -> None:
            started.wait(10)
            os.kill(pid[0], signal.SIGKILL)
            where.append(f"{getattr(entry, 'verb', '')} {getattr(entry, 'resource', '')}/"
                         f"{getattr(entry, 'name', '')}")
            killed.set()

        sim.requests.on_nth(k, kill, match=lambda e: is_tool_write(e, "run"))
        run = Invocation("run", plan, sim.write_kubeconfig(out / "kubeconfig", user="run"), out)
        pid.append(run.pid)
        started.set()
        first = run.finish()
        if not killed.is_set():
            return CrashPoint(k, False, "", first.code, None, check(sim, base), first.last_words)
        kubeconfig = sim.write_kubeconfig(out / "kubeconfig-resume", user="resume")
        resumed = invoke("resume", plan, kubeconfig, out)
        if resumed.code == 2 and sim.store.try_get("configmaps", *STATE) is None:
            # killed before the checkpoint existed: resume says so and to start with `run`
            started_again = invoke("run", plan, kubeconfig, out)
            return CrashPoint(k, True, where[0], first.code, resumed.code, check(sim, base),
                              started_again.last_words, then_run=started_again.code)
        return CrashPoint(k, True, where[0], first.code, resumed.code, check(sim, base), resumed.last_words)


def sweep(seed: int, points: Iterable[int], nodes: int = 4, jobs: int = 1,
          progress: Callable[[CrashPoint], None] | None = None) -> list[CrashPoint]:
    """``crash_point`` at every k of ``points``, ``jobs`` at a time."""
    def one(k: int) -> CrashPoint:
        point = crash_point(k, seed, nodes)
        if progress is not None:
            progress(point)
        return point

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return sorted(pool.map(one, points), key=lambda p: p.k)
