"""``migrator sim serve`` as a subprocess: the kubeconfig is written once the cluster is
ready, kubectl (or the Python client) can use it, SIGTERM stops it with exit code 0; and
``--list-scenarios`` prints every scenario."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from migrator.sim.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def migrator(*args: str, **kwargs) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "migrator", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line
        if proc.poll() is not None:
            break
    raise AssertionError(f"no line from migrator sim serve; stderr: {proc.stderr.read() if proc.poll() else ''}")


def test_serve_writes_kubeconfig_serves_and_stops_on_sigterm(tmp_path):
    kubeconfig = tmp_path / "kc" / "config"
    proc = migrator("sim", "serve", "--nodes", "4", "--seed", "3", "--time-scale", "10",
                    "--kubeconfig", str(kubeconfig))
    try:
        line = read_line(proc, timeout=60)
        assert "sim cluster ready" in line and f"export KUBECONFIG={kubeconfig}" in line
        assert "https://127.0.0.1:" in line
        assert kubeconfig.exists()
        if shutil.which("kubectl"):
            got = subprocess.run(["kubectl", "get", "nodes", "-o", "name"], capture_output=True, text=True,
                                 env={**os.environ, "KUBECONFIG": str(kubeconfig)}, timeout=30, check=False)
            assert got.returncode == 0, got.stderr
            assert got.stdout.split() == ["node/cp-1", "node/node-1", "node/node-2", "node/node-3"]
        else:
            from kubernetes import client, config

            api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
            assert len(api.list_node().items) == 4
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_list_scenarios_prints_every_name():
    proc = migrator("sim", "serve", "--list-scenarios")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    assert names == list(SCENARIOS)


def test_serve_rejects_unknown_scenario(tmp_path):
    proc = migrator("sim", "serve", "--scenario", "nope", "--kubeconfig", str(tmp_path / "kc"))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "unknown scenario" in err
