"""The dashboard and the alert rules against a real run: ``migrator run --metrics-port`` on the
simulated cluster, scraped over HTTP all along, as Prometheus would scrape the Job's pod.

One short run (three nodes, the chaos suite's quick plan): every query of
``deploy/grafana/migrator-dashboard.json`` and ``deploy/prometheus/migrator-rules.yaml`` must
find the series and labels it uses among the scrapes (``tests/promql_check.py`` says what that
covers), and the values at the end must agree with the checkpoint and the API server's request
log. ``--metrics-linger`` keeps the process serving after the run, so the last scrape shows how
it ended; refused first in one line (exit 2), before anything is sent to the same cluster.
"""

from __future__ import annotations

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


def scrape_run(port: int, run: Invocation) -> list[str]:
    """Scrape ``port`` every few milliseconds until the process ends; every answer, in order."""
    texts = []
    while run.proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
                texts.append(answer.read().decode())
        except OSError:
            pass   # not serving yet, or gone
        time.sleep(0.02)
    return texts


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

    port = free_port()
    began = time.time()
    run = Invocation("run", plan, kubeconfig, tmp_path, "--metrics-port", str(port),
                     "--metrics-linger", str(LINGER))
    texts = scrape_run(port, run)
    outcome = run.finish(timeout=120)
    assert outcome.code == 0, outcome.stderr
    assert len(texts) > 10, f"only {len(texts)} scrapes answered"

    series: Series = {}
    for text in texts:
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
    last = texts[-1]
    phases = values(last, "migrator_run_phase")
    assert cp.run_phase.value == "NODES_DONE"
    assert phases[(("phase", "NODES_DONE"),)] == 1 and sum(phases.values()) == 1
    nodes = values(last, "migrator_nodes")
    assert sum(nodes.values()) == len(cp.nodes) == 3 and nodes[(("phase", "DONE"),)] == 3
    assert values(last, "migrator_run_halted") == {(): 0.0}
    assert values(last, "migrator_run_halted_timestamp_seconds") == {(): 0.0}
    assert values(last, "migrator_lease_info") == {} and values(last, "migrator_phase_oldest_start_timestamp_seconds") == {}
    assert values(last, "migrator_run_info") == {(("purpose", "run"), ("run_id", cp.run_id)): 1.0}
    started = values(last, "migrator_run_started_timestamp_seconds")[()]
    progress = values(last, "migrator_last_progress_timestamp_seconds")[()]
    assert began - 1 <= started <= progress <= time.time()
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
