"""The dashboard and the alert rules against a real run: ``migrator run --metrics-port`` on the
simulated cluster, scraped over HTTP all along, as Prometheus would scrape the Job's pod.

One short run (three nodes, the chaos suite's quick plan), after one that halts at once in its
own state (a blocking preflight finding): every query of
``deploy/grafana/migrator-dashboard.json`` and ``deploy/prometheus/migrator-rules.yaml`` must
find the series and labels it uses among the scrapes (``tests/promql_check.py`` says what that
covers), and the values at the end must agree with the checkpoint and the API server's request
log. ``--metrics-linger`` keeps the process serving after the run, so the last scrape shows how
it ended; refused first in one line (exit 2), before anything is sent to the same cluster.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from chaos.harness import Invocation, fast_plan
from tests.chaos.incli import run_cli
from tests.promql_check import Series, add_scrape, check_all, load_artefacts
from tests.runner.helpers import checkpoint

LINGER = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def values(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named ``name`` in one scrape, keyed by their labels (plan left out)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted((k, v) for k, v in sample.labels.items() if k != "plan"))] = sample.value
    return out


def scraped_run(plan: Path, kubeconfig: Path, directory: Path) -> tuple[Invocation, int, list[str]]:
    """``migrator run`` with metrics, scraped every few milliseconds until the process ends: the
    run, its exit code and every answer, in order."""
    port = free_port()
    run = Invocation("run", plan, kubeconfig, directory, "--metrics-port", str(port), "--metrics-linger", str(LINGER))
    texts = []
    while run.proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                texts.append(answer.read().decode())
        except (OSError, http.client.HTTPException):
            pass   # not serving yet, or gone (mid-answer, as the process exits)
        time.sleep(0.02)
    outcome = run.finish(timeout=120)
    assert texts, f"no scrape answered; the run said: {outcome.stderr}"
    return run, outcome.code, texts


def test_every_query_finds_its_series_in_a_scraped_run(sim_factory: Callable[..., Any], tmp_path: Path) -> None:
    sim = sim_factory(nodes=3)
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    plan = fast_plan(tmp_path)
    base = ["run", "--yes", "--plan", str(plan), "--kubeconfig", str(kubeconfig), "--output-dir", str(tmp_path)]
    for flags, message in ((["--metrics-linger", "30"], "--metrics-linger keeps serving metrics after the run: "
                                                        "pass --metrics-port too"),
                           (["--metrics-port", "9", "--metrics-linger", "-1"],
                            "argument --metrics-linger: -1 is out of range; pass 0 to 3600 seconds"),
                           (["--metrics-port", "9", "--metrics-linger", "soon"], "'soon' is not a number of seconds")):
        code, text = run_cli([*base, *flags])
        assert code == 2 and message in text, text
    assert not [e for e in sim.requests.entries if e.is_write]

    # a run that halts at once (a blocking preflight finding), in its own state: seen halted at the end
    began = time.time()
    clash = fast_plan(tmp_path, {"name": "clash", "cilium.tunnel_port": 4789, "state.configmap_name": "clash-state",
                                 "state.lease_name": "clash-lock"}, name="clash.yaml")
    _, code, halted = scraped_run(clash, kubeconfig, tmp_path)
    assert code == 1
    # this run's scrapes only (a loaded machine may hand the freed port to another test's process)
    halted = [t for t in halted if 'plan="clash"' in t]
    assert halted, "no scrape of the halted run answered"
    assert values(halted[-1], "migrator_run_phase")[(("phase", "PREFLIGHT"),)] == 1
    assert values(halted[-1], "migrator_run_halted") == {(): 1.0}
    stopped = values(halted[-1], "migrator_run_halted_timestamp_seconds")[()]
    assert stopped > values(halted[-1], "migrator_run_started_timestamp_seconds")[()] >= began - 1
    assert all('plan="clash"' in line for line in halted[-1].splitlines() if line.startswith("migrator_"))

    run, code, texts = scraped_run(plan, kubeconfig, tmp_path)
    assert code == 0 and len(texts) > 10, f"exit {code}, {len(texts)} scrapes answered"
    series: Series = {}
    for text in halted + texts:
        add_scrape(series, text)
    assert check_all(load_artefacts(), series) == []

    # during the run: the lock's holder, nodes in flight against the plan's limits
    cp = checkpoint(sim)
    assert cp is not None
    holder = f"{socket.gethostname()}/{run.pid}/{cp.run_id}"
    during = [t for t in texts if values(t, "migrator_run_phase").get((("phase", "MIGRATING"),)) == 1]
    assert during, "no scrape saw the run MIGRATING"
    assert any(values(t, "migrator_lease_info") == {(("holder", holder),): 1.0} for t in during)
    assert any(values(t, "migrator_phase_oldest_start_timestamp_seconds") for t in during)

    # the end, served while lingering: agrees with the checkpoint and the API server's log
    # this run's scrapes (a loaded machine may hand a freed port to another test's process first)
    last = [t for t in texts if f'run_id="{cp.run_id}"' in t][-1]
    phases = values(last, "migrator_run_phase")
    assert cp.run_phase.value == "NODES_DONE"
    assert phases[(("phase", "NODES_DONE"),)] == 1 and sum(phases.values()) == 1
    nodes = values(last, "migrator_nodes")
    assert sum(nodes.values()) == len(cp.nodes) == 3 and nodes[(("phase", "DONE"),)] == 3
    assert values(last, "migrator_run_halted") == {(): 0.0}
    assert values(last, "migrator_run_halted_timestamp_seconds") == {(): 0.0}   # never halted: 0 < started
    assert values(last, "migrator_lease_info") == {} and values(last, "migrator_phase_oldest_start_timestamp_seconds") == {}
    assert values(last, "migrator_run_info") == {(("purpose", "run"), ("run_id", cp.run_id)): 1.0}
    started = values(last, "migrator_run_started_timestamp_seconds")[()]
    progress = values(last, "migrator_last_progress_timestamp_seconds")[()]
    assert began - 1 <= started <= time.time() and int(started) <= progress <= time.time()   # whole seconds
    assert cp.updated_at is not None and progress <= cp.updated_at.timestamp()
    evictions = values(last, "migrator_evictions_total")
    sent = [e for e in sim.requests.entries if e.verb == "create" and e.resource == "pods/eviction"]
    assert evictions.get((("outcome", "ok"),), 0) == sum(e.code == 201 for e in sent) > 0
    assert values(last, "migrator_step_duration_seconds_count")[(("phase", "PENDING"),)] == 3
    assert values(last, "migrator_rollbacks_total") == {(): 0.0}
    limits = values(last, "migrator_phase_timeout_seconds")
    assert limits[(("phase", "LABELED"),)] == 300 and limits[(("phase", "PODS_RECYCLED"),)] == 20
    samples = [line for line in last.splitlines() if line.startswith("migrator_")]
    assert samples and all('plan="example"' in line for line in samples)
