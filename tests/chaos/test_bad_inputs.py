"""The bad-input table (``chaos/bad_inputs.yaml``): every row gets its documented exit code, a
message naming what is wrong and what to do, and no write to the cluster beyond what it allows.

The CLI runs in-process (``migrator.cli.main``) against one simulated cluster shared by the
rows that leave it as it was; the driver deletes the checkpoint and the Lease a row created, so
every row starts from a cluster with no run. A row marked ``cluster: fresh`` (or one that sends
a signal, which needs a process of its own) gets a cluster of its own. Writes are counted in
the sim's request log: create/update/patch/delete sent with the tool's user agent.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrator.cluster.kube import USER_AGENT
from migrator.model.shards import from_configmaps
from migrator.sim.cluster import SimCluster
from migrator.sim.requestlog import RequestEntry
from tests.chaos.incli import run_cli
from tests.conftest import fast_config
from tests.runner.helpers import WORKDIR

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "chaos" / "bad_inputs.yaml"
EXAMPLE = ROOT / "plans" / "example.yaml"
ROWS: list[dict[str, Any]] = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
STATE = ("kube-system", "cni-migration-state")
LOCK = ("kube-system", "cni-migration-lock")
LEASES = "coordination.k8s.io/leases"
KNOWN_KEYS = {"id", "args", "plan", "other_plan", "kubeconfig", "cluster", "scenario", "setup", "signal",
              "delete_node", "exit", "message", "writes"}


def test_table_is_well_formed() -> None:
    ids = [row["id"] for row in ROWS]
    assert len(ids) == len(set(ids)), "row ids must be unique"
    assert len(ROWS) >= 30
    for row in ROWS:
        assert set(row) <= KNOWN_KEYS, f"{row['id']}: unknown keys {set(row) - KNOWN_KEYS}"
        assert row["exit"] in (0, 1, 2, 3) and row["writes"] in ("none", "lease", "lease+checkpoint", "any")
        assert row.get("setup", "none") in SETUPS, f"{row['id']}: unknown setup {row.get('setup')}"
        re.compile(row["message"])


# ------------------------------------------------------------------ fixtures
def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def write_plan(spec: dict[str, Any] | None, path: Path) -> Path:
    """The plan file a row describes (see the table's header)."""
    spec = spec or {}
    text = EXAMPLE.read_text(encoding="utf-8")
    if "text" in spec:
        path.write_text(spec["text"], encoding="utf-8")
    elif "hex" in spec:
        path.write_bytes(bytes.fromhex(spec["hex"]))
    elif spec.get("directory"):
        path.mkdir()
    elif spec.get("missing"):
        pass
    elif "duplicate" in spec:
        *parents, leaf = spec["duplicate"].split(".")
        indent = "  " * len(parents)
        lines = text.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{indent}{leaf}:"))
        lines.insert(at, lines[at])
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif "bytes" in spec:
        data = yaml.safe_load(text)
        count = spec["bytes"] // 12 + 1
        data["nodes"] = {"names": [f"node-{i:06d}" for i in range(count)]}
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert path.stat().st_size >= spec["bytes"]
    else:
        data = yaml.safe_load(text)
        for dotted, value in (spec.get("set") or {}).items():
            _set(data, dotted, value)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_kubeconfig(sim: SimCluster, variant: str, path: Path) -> Path:
    good = sim.write_kubeconfig(path)
    if variant == "good":
        return good
    if variant == "missing":
        good.unlink()
        return path
    if variant == "garbage":
        path.write_text("apiVersion: v1\nclusters: [\n  - name: {{broken\n", encoding="utf-8")
        return path
    doc = yaml.safe_load(good.read_text(encoding="utf-8"))
    if variant == "wrong-token":
        doc["users"][0]["user"]["token"] = "not-the-token"
    elif variant == "closed-port":
        doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{closed_port()}"
    else:
        raise AssertionError(f"unknown kubeconfig variant {variant}")
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimCluster]:
    cluster = SimCluster(config=fast_config(6), seed=7).start()
    yield cluster
    cluster.stop()


def reset(sim: SimCluster) -> None:
    """Back to a cluster with no run: no checkpoint, no Lease."""
    for resource, (ns, name) in (("configmaps", STATE), (LEASES, LOCK)):
        if sim.store.try_get(resource, ns, name) is not None:
            sim.store.delete(resource, ns, name)


def tool_writes(entries: list[RequestEntry]) -> list[RequestEntry]:
    return [e for e in entries if e.is_write and e.user_agent.startswith(USER_AGENT.split("/")[0] + "/")]


def allowed(entry: RequestEntry, writes: str) -> bool:
    if writes == "any":
        return True
    def named(where: tuple[str, str]) -> bool:  # a create's log entry has no name (it is in the body)
        return entry.namespace == where[0] and entry.name in (where[1], "" if entry.verb == "create" else where[1])

    lease = entry.resource == LEASES and named(LOCK)
    state = entry.resource == "configmaps" and (named(STATE) or (   # the run ConfigMap or a node shard
        entry.namespace == STATE[0] and entry.name.startswith(STATE[1] + "-nodes-")))
    return (writes in ("lease", "lease+checkpoint") and lease) or (writes == "lease+checkpoint" and state)


def _garbage_checkpoint(sim: SimCluster, ctx: dict[str, Path]) -> None:
    sim.store.create("configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"namespace": STATE[0], "name": STATE[1]},
                                    "data": {"run.json": "{this is not json", "summary": "edited by hand"}})


def _halted_run_of_other_plan(sim: SimCluster, ctx: dict[str, Path]) -> None:
    code, text = run_cli(["run", "--yes", "--plan", str(ctx["other_plan"]), "--kubeconfig", str(ctx["kubeconfig"]),
                          "--output-dir", str(ctx["output_dir"]), "--log-level", "error"])
    assert code == 1 and sim.store.try_get("configmaps", *STATE) is not None, text[-2000:]


#: ``setup:`` names, each a function of the cluster and the row's files (plan, other_plan,
#: kubeconfig — a good one —, output_dir) run before the command. Add a row's setup here.
SETUPS: dict[str, Callable[[SimCluster, dict[str, Path]], None]] = {
    "none": lambda sim, ctx: None,
    "garbage-checkpoint": _garbage_checkpoint,
    "halted-run-of-other-plan": _halted_run_of_other_plan,
}


def spawn_and_disturb(args: list[str], sim: SimCluster, disturb: Callable[[int], None]) -> tuple[int, str]:
    """Run the CLI as a process, call ``disturb(pid)`` once a node is in flight, return its exit
    and output."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "migrator", *args], stdout=out, stderr=out, text=True,
                                cwd=WORKDIR)
        try:
            wait_until(lambda: _started(sim) or proc.poll() is not None, 120)
            assert proc.poll() is None, "the run ended before a node was in flight"
            disturb(proc.pid)
            code = proc.wait(timeout=180)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        return code, out.read()


def _started(sim: SimCluster) -> bool:
    cp = from_configmaps(sim.store.list("configmaps", STATE[0]), STATE[1])
    if cp is None:
        return False
    return any(r.intent is not None or r.phase.value != "PENDING" for r in cp.nodes)


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)


# ------------------------------------------------------------------ the table
@pytest.mark.parametrize("row", ROWS, ids=[row["id"] for row in ROWS])
def test_bad_input(row: dict[str, Any], shared_sim: SimCluster, tmp_path: Path) -> None:
    spawned = "signal" in row or "delete_node" in row   # disturbed while it runs: a process of its own
    fresh = row.get("cluster", "shared") == "fresh" or spawned or "scenario" in row
    sim = SimCluster(config=fast_config(4), seed=11, scenario=row.get("scenario", "default")).start() \
        if fresh else shared_sim
    try:
        reset(sim)
        out = tmp_path / "out"
        out.mkdir()
        plan = write_plan(row.get("plan"), tmp_path / "plan.yaml")
        other = write_plan(row.get("other_plan"), tmp_path / "other-plan.yaml")
        good = write_kubeconfig(sim, "good", tmp_path / "setup-kubeconfig")
        kubeconfig = write_kubeconfig(sim, row.get("kubeconfig", "good"), tmp_path / "kubeconfig")
        SETUPS[row.get("setup", "none")](sim, {"plan": plan, "other_plan": other, "kubeconfig": good,
                                               "output_dir": out})
        fill = {"plan": str(plan), "other_plan": str(other), "kubeconfig": str(kubeconfig), "output_dir": str(out)}
        args = [str(a).format(**fill) for a in row["args"]]
        before = len(sim.requests.entries)
        if "signal" in row:
            signum = getattr(signal, row["signal"])
            code, text = spawn_and_disturb([*args, "--log-level", "warning"], sim, lambda pid: os.kill(pid, signum))
        elif "delete_node" in row:   # `kubectl delete node` while the run is going on
            code, text = spawn_and_disturb([*args, "--log-level", "warning"], sim,
                                           lambda _pid: sim.store.delete("nodes", None, row["delete_node"]))
        else:
            code, text = run_cli(args)
        writes = tool_writes(sim.requests.entries[before:])
        assert "Traceback" not in text, text[-3000:]
        assert code == row["exit"], f"exit {code}, expected {row['exit']}:\n{text[-3000:]}"
        assert re.search(row["message"], text), f"no match for {row['message']!r} in:\n{text[-3000:]}"
        extra = [f"{e.verb} {e.resource} {e.namespace}/{e.name}" for e in writes if not allowed(e, row["writes"])]
        assert not extra, f"writes beyond {row['writes']!r}: {extra}"
        if "signal" in row:   # interrupted, and resumable: the checkpoint is there and the run not over
            cp = from_configmaps(sim.store.list("configmaps", STATE[0]), STATE[1])
            assert cp is not None and not cp.run_phase.terminal
    finally:
        if fresh:
            sim.stop()
        else:
            reset(sim)
