"""The simulated cluster in its own process, as the wall-time benchmarks run it.

A real API server is another process on other machines: the tool does not share an interpreter
with it. Run in the tool's process, the simulator's threads take the same interpreter lock as
the run loop, its watch threads and its probe dials, so a run's wall time would count the
cluster's CPU as the tool's (a 1,000-node run at k = 50 took 100 s in one process against 72 s
in two, on the same machine). ``Served`` forks the cluster into a process of its own and talks
to it over a pipe: when to start counting requests, the count halfway, and the figures at the
end.
"""

from __future__ import annotations

import multiprocessing
import resource
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from migrator import log as logsetup
from migrator.sim.cluster import SimCluster
from migrator.sim.config import SimConfig
from migrator.sim.world import own_process


def _serve(config: SimConfig, pods_per_node: int, kubeconfig: str, conn: Connection) -> None:
    """Serve the cluster until the run ends, then send its figures over ``conn``."""
    logsetup.quiet()
    own_process()
    began = time.monotonic()
    with SimCluster(config=config, seed=11, pods_per_node=pods_per_node, converge_timeout=1800) as sim:
        sim.write_kubeconfig(kubeconfig)
        conn.send(time.monotonic() - began)
        conn.recv()                        # the run starts: count its requests only
        sim.requests.reset()
        conn.send("counting")
        while (state := conn.recv()) == "mark":   # halfway through a stopped run: the count so far
            conn.send(sim.requests.total(exclude_watch=True))
        # the run ended: ``state`` is its checkpoint's namespace and name
        used = resource.getrusage(resource.RUSAGE_SELF)
        conn.send({"requests": sim.requests.total(exclude_watch=True), "by_kind": sim.requests.counts(),
                   "cpu": used.ru_utime + used.ru_stime,
                   "wire": sim.requests.bytes_written(resource="configmaps", namespace=state[0],
                                                      name_prefix=state[1])})


class Served:
    """A simulated cluster served from a forked process; its kubeconfig is at ``kubeconfig``.

    ``with Served(config, kubeconfig) as served:`` boots it (``served.boot``: seconds);
    ``served.start()`` clears its request log just before the run; ``served.mark()`` is the
    request count so far; ``served.finish(namespace, name)`` ends it and returns its figures:
    ``requests`` (watches excluded), ``by_kind`` ({(verb, resource): count}), ``cpu`` (the
    server's CPU seconds, its boot included) and ``wire`` (request body bytes written to the
    ConfigMaps in ``namespace`` whose name starts with ``name``: the checkpoint's)."""

    def __init__(self, config: SimConfig, kubeconfig: Path, pods_per_node: int = 0) -> None:
        self.kubeconfig = kubeconfig
        self._config, self._pods_per_node = config, pods_per_node
        self.boot = 0.0
        self._ours: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> Served:
        context = multiprocessing.get_context("fork")
        self._ours, theirs = context.Pipe()
        self._process = context.Process(target=_serve, daemon=True,
                                        args=(self._config, self._pods_per_node, str(self.kubeconfig), theirs))
        self._process.start()
        self.boot = self._ours.recv()
        return self

    def start(self) -> None:
        self._pipe.send("start")
        self._pipe.recv()

    def mark(self) -> int:
        self._pipe.send("mark")
        return self._pipe.recv()

    def finish(self, namespace: str, name: str) -> dict[str, Any]:
        self._pipe.send((namespace, name))
        figures = self._pipe.recv()
        self._stop(60)
        return figures

    def __exit__(self, *exc: object) -> None:
        self._stop(0)

    @property
    def _pipe(self) -> Connection:
        if self._ours is None:
            raise RuntimeError("the served cluster is not running: use it in a with block")
        return self._ours

    def _stop(self, grace: float) -> None:
        if self._process is None:
            return
        self._process.join(grace)
        if self._process.is_alive():       # a run that failed never sent its end
            self._process.terminate()
            self._process.join(10)
        self._process = None
