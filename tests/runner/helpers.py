"""Driving the real CLI against the simulated cluster: subprocess helpers and checkpoint reads."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from chaos.harness import (
    fast_plan as fast_plan,  # the example plan with quicker waits, as the chaos suite runs it
)
from migrator.model.checkpoint import Checkpoint
from migrator.model.shards import from_configmaps

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plans" / "example.yaml"
#: Where CLI processes run: a command given no --output-dir writes its files (the run's timeline
#: and report, finalize's Helm values) into its working directory, never into the checkout.
WORKDIR = Path(tempfile.mkdtemp(prefix="migrator-cli-"))
atexit.register(shutil.rmtree, WORKDIR, ignore_errors=True)
LABEL = "io.cilium.migration/cilium-default"


def migrator(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "migrator", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=WORKDIR)


class Spawned(subprocess.Popen[str]):
    """A background CLI run whose output goes to files, not pipes: a long run cannot block on a
    full pipe nobody reads while the test waits for it."""

    def __init__(self, *args: str) -> None:
        self._out = tempfile.TemporaryFile("w+")
        self._err = tempfile.TemporaryFile("w+")
        super().__init__([sys.executable, "-m", "migrator", *args], stdout=self._out, stderr=self._err,
                         text=True, cwd=WORKDIR)

    def finish(self, timeout: float) -> int:
        """Wait for the run to end; past ``timeout`` kill it and fail with its last words."""
        try:
            return self.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.wait(timeout=10)
            pytest.fail(f"the run did not end within {timeout:.0f}s; its stderr ends with:\n{self.err()[-3000:]}")

    def err(self) -> str:
        """Everything written to stderr so far."""
        self._err.seek(0)
        return self._err.read()


def spawn(*args: str) -> Spawned:
    return Spawned(*args)


def checkpoint(sim) -> Checkpoint | None:
    return from_configmaps(sim.store.list("configmaps", "kube-system"), "cni-migration-state")


def kill_when(proc: Spawned, sim, predicate, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cp = checkpoint(sim)
        if cp is not None and predicate(cp):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            return
        if proc.poll() is not None:
            pytest.fail(f"runner ended before the crash point: {proc.err()[-2000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail("crash point never reached")


