"""The run's metrics, the dashboard and the alert rules, without a cluster.

* ``Metrics`` read from checkpoints: the run phase state set, nodes by phase, the oldest start of
  each phase among nodes in flight, the last progress, rollbacks, halts, the lock holder, and
  the ``plan`` label on every sample.
* The plan's phase time limits cover every step of the engine's tables that has a timeout.
* The query check (``tests/promql_check.py``) passes the artefacts against the tool's own
  registry, and fails each one mutated to query a series, label or value the tool does not export.
* The PrometheusRule against the real CRD schema (vendored, ``deploy/prometheus/crd``), its
  severities, annotations and runbooks; the dashboard's structure.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import generate_latest

from migrator.engine import node_rows, rollback
from migrator.metrics import Metrics, phase_time_limits
from migrator.model.checkpoint import Checkpoint, Intent, NodeRecord
from migrator.model.plan import load_plan
from migrator.model.states import NodePhase, RunPhase
from tests.promql_check import (
    DASHBOARD,
    RULES,
    Series,
    add_scrape,
    check_all,
    dashboard_queries,
    rule_queries,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plans" / "example.yaml"
CRD = ROOT / "deploy" / "prometheus" / "crd" / "monitoring.coreos.com_prometheusrules.yaml"
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def samples(metrics: Metrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def cp(*nodes: NodeRecord, phase: RunPhase = RunPhase.MIGRATING, halted: str | None = None) -> Checkpoint:
    return Checkpoint(plan_name="example", plan_hash="h", run_id="run-1", started_at=T0, run_phase=phase,
                      run_phase_started_at=at(5), halted=halted, nodes=nodes)


def node(name: str, phase: NodePhase, started: int | None, *, intent: bool = False) -> NodeRecord:
    return NodeRecord(name=name, phase=phase, phase_started_at=at(started) if started is not None else None,
                      intent=Intent(step="label") if intent else None, attempt=1 if started else 0)


@pytest.fixture
def plan() -> Any:
    return load_plan(str(EXAMPLE))


def test_the_run_state_is_read_from_each_checkpoint(plan: Any) -> None:
    metrics = Metrics()
    metrics.bind_plan(plan)
    metrics.run_started("run", "host/42/run-1")
    metrics.observe_checkpoint(cp(node("a", NodePhase.LABELED, 30), node("b", NodePhase.LABELED, 20),
                                  node("c", NodePhase.PENDING, 10, intent=True), node("d", NodePhase.PENDING, None),
                                  node("e", NodePhase.DONE, 25)))
    assert samples(metrics, "migrator_run_phase")[(("phase", "MIGRATING"), ("plan", "example"))] == 1
    assert sum(samples(metrics, "migrator_run_phase").values()) == 1
    nodes = samples(metrics, "migrator_nodes")
    assert sum(nodes.values()) == 5 and len(nodes) == len(NodePhase)
    assert nodes[(("phase", "LABELED"), ("plan", "example"))] == 2
    # the longest-waiting node of each phase, nodes in flight only (d waits its turn, e is done)
    assert samples(metrics, "migrator_phase_oldest_start_timestamp_seconds") == {
        (("phase", "LABELED"), ("plan", "example")): at(20).timestamp(),
        (("phase", "PENDING"), ("plan", "example")): at(10).timestamp()}
    assert samples(metrics, "migrator_last_progress_timestamp_seconds") == {(("plan", "example"),): at(30).timestamp()}
    assert samples(metrics, "migrator_lease_info") == {(("holder", "host/42/run-1"), ("plan", "example")): 1}
    assert samples(metrics, "migrator_run_info") == {(("plan", "example"), ("purpose", "run"), ("run_id", "run-1")): 1}
    assert samples(metrics, "migrator_run_halted") == {(("plan", "example"),): 0}

    # b rolls back and c moves on: the old phase's series goes, a rollback is counted, a halt shows
    metrics.observe_checkpoint(cp(node("a", NodePhase.LABELED, 30), node("b", NodePhase.ROLLED_BACK, 90),
                                  node("c", NodePhase.LABELED, 60), node("d", NodePhase.PENDING, None),
                                  node("e", NodePhase.DONE, 25), halted="rollback.halt_after reached"))
    assert samples(metrics, "migrator_phase_oldest_start_timestamp_seconds") == {
        (("phase", "LABELED"), ("plan", "example")): at(30).timestamp()}
    assert samples(metrics, "migrator_rollbacks_total") == {(("plan", "example"),): 1}
    assert samples(metrics, "migrator_step_duration_seconds_count")[(("phase", "LABELED"), ("plan", "example"))] == 1
    assert samples(metrics, "migrator_last_progress_timestamp_seconds") == {(("plan", "example"),): at(90).timestamp()}
    assert samples(metrics, "migrator_run_halted") == {(("plan", "example"),): 1}

    metrics.run_stopped(halted=True)
    assert samples(metrics, "migrator_lease_info") == {}
    assert samples(metrics, "migrator_phase_oldest_start_timestamp_seconds") == {}
    halted_at = samples(metrics, "migrator_run_halted_timestamp_seconds")[(("plan", "example"),)]
    assert halted_at >= samples(metrics, "migrator_run_started_timestamp_seconds")[(("plan", "example"),)] > 0
    text = generate_latest(metrics.registry).decode()
    lines = [line for line in text.splitlines() if line.startswith("migrator_")]
    assert lines and all('plan="example"' in line for line in lines)


def test_linger_waits_only_when_asked_and_a_stop_ends_it() -> None:
    metrics, stop = Metrics(), threading.Event()
    metrics.linger(stop)                       # no --metrics-linger: returns at once
    metrics.serve(0, linger=300.0)             # any free port
    stop.set()
    metrics.linger(stop)                       # SIGTERM already asked to stop: no wait either


@pytest.mark.parametrize("strategy", ["in-place", "drain", "steer"])
def test_phase_time_limits_cover_every_step_with_a_timeout(plan: Any, strategy: str) -> None:
    """A row with a timeout, in a phase the strategy uses, has the plan's limit exported: a new
    timed step in the engine's tables fails here until the metric knows it."""
    plan = plan.model_copy(update={"placement": plan.placement.model_copy(update={"strategy": strategy})})
    limits = phase_time_limits(plan)
    in_place = strategy == "in-place"
    for step, row in node_rows.FORWARD.items():
        if row.timeout is None:
            continue
        phases = node_rows.ONLY_FROM.get((step, "timeout"), node_rows.RUNS_IN[step])
        used = [p for p in phases if not (in_place and p is NodePhase.CORDONED)
                and not (not in_place and step == "label" and p is NodePhase.PENDING)]
        assert all(p in limits for p in used), (step, used, limits)
    assert limits[NodePhase.ROLLING_BACK] == plan.rollback.timeout
    assert any(r.timeout is not None for r in rollback.ROWS)
    assert limits[NodePhase.LABELED] == plan.cilium.agent.restart_timeout
    assert NodePhase.PROBED not in limits and NodePhase.DONE not in limits   # the uncordon has no deadline


# ------------------------------------------------------------------ the query check
def registry_scrape(plan: Any) -> Series:
    """What the tool's own registry exports after a few turns of a run (no cluster)."""
    metrics = Metrics()
    metrics.bind_plan(plan)
    metrics.run_started("run", "host/42/run-1")
    metrics.observe_checkpoint(cp(node("a", NodePhase.PENDING, 10, intent=True), node("b", NodePhase.PENDING, None)))
    metrics.observe_checkpoint(cp(node("a", NodePhase.LABELED, 20), node("b", NodePhase.PENDING, None)))
    metrics.evictions.labels(outcome="ok").inc()
    metrics.actions.labels(kind="evict-pod", outcome="ok").inc()
    metrics.probes.labels(purpose="gate", outcome="ok").inc()
    series: Series = {}
    add_scrape(series, generate_latest(metrics.registry).decode())
    return series


def test_the_artefacts_pass_against_the_registry(plan: Any) -> None:
    series = registry_scrape(plan)
    dashboard = json.loads(DASHBOARD.read_text())
    rules = yaml.safe_load(RULES.read_text())
    assert check_all(dashboard_queries(dashboard) + rule_queries(rules), series) == []


def _mutate_panel(dashboard: dict[str, Any], title: str, change: Any) -> dict[str, Any]:
    out = copy.deepcopy(dashboard)
    panel = next(p for p in out["panels"] if p["title"] == title)
    change(panel["targets"][0])
    return out


@pytest.mark.parametrize(("title", "change", "expected"), [
    ("Nodes by phase", lambda t: t.update(expr=t["expr"].replace("migrator_nodes", "migrator_nodes_by_phase")),
     "exports no series named migrator_nodes_by_phase"),
    ("Nodes by phase", lambda t: t.update(expr=t["expr"].replace('plan=~"$plan"', 'plan=~"$plan", node="a"')),
     "selects no series: no label node"),
    ("Evictions", lambda t: t.update(expr=t["expr"].replace('{plan=~"$plan"}', '{plan=~"$plan", outcome="evicted"}')),
     "no exported series matches all its matchers"),
    ("Nodes by phase", lambda t: t.update(legendFormat="{{node}}"), "the legend or annotations uses label(s) node"),
    ("Evictions", lambda t: t.update(expr=t["expr"].replace("by (outcome)", "by (reason)")),
     "sum by (...) uses label(s) reason"),
    ("Step duration p50 / p95", lambda t: t.update(expr=t["expr"].replace("by (le, phase)", "by (phase)")),
     "uses label(s) le"),
    ("Run phase", lambda t: t.update(expr=t["expr"].replace("max by (phase) (", "max by (phase (")),
     "does not parse"),
])
def test_a_panel_querying_what_the_tool_does_not_export_fails_the_check(plan: Any, title: str, change: Any,
                                                                        expected: str) -> None:
    series = registry_scrape(plan)
    dashboard = json.loads(DASHBOARD.read_text())
    problems = check_all(dashboard_queries(_mutate_panel(dashboard, title, change)), series)
    assert len(problems) == 1 and problems[0].startswith(f"panel {title!r}") and expected in problems[0], problems


@pytest.mark.parametrize(("alert", "field", "old", "new", "expected"), [
    ("MigratorNodePastPhaseDeadline", "expr", "migrator_phase_timeout_seconds", "migrator_phase_deadline_seconds",
     "exports no series named migrator_phase_deadline_seconds"),
    ("MigratorRunHalted", "summary", "$labels.plan", "$labels.node", "uses label(s) node"),
    ("MigratorApiUnavailable", "expr", "max by (plan)", "max by (pod)", "uses label(s) pod"),
    ("MigratorNodePastPhaseDeadline", "expr", "migrator_phase_oldest_start_timestamp_seconds",
     'migrator_phase_oldest_start_timestamp_seconds{phase="DONE"}', "no exported series matches"),
])
def test_a_rule_querying_what_the_tool_does_not_export_fails_the_check(plan: Any, alert: str, field: str, old: str,
                                                                       new: str, expected: str) -> None:
    series = registry_scrape(plan)
    rules = yaml.safe_load(RULES.read_text())
    rule = next(r for r in rules["spec"]["groups"][0]["rules"] if r.get("alert") == alert)
    where = rule if field == "expr" else rule["annotations"]
    assert old in where[field]
    where[field] = where[field].replace(old, new)
    problems = check_all(rule_queries(rules), series)
    assert len(problems) == 1 and problems[0].startswith(f"rule {alert!r}") and expected in problems[0], problems


# ------------------------------------------------------------------ the artefacts' shape
def _strict(schema: Any) -> Any:
    """The CRD's openAPIV3Schema as JSON Schema that refuses unknown fields (strict validation)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if k not in ("properties", "x-kubernetes-int-or-string")}
    if "properties" in schema:
        out["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return out


def rule_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


def test_the_rules_validate_against_the_prometheus_operator_crd() -> None:
    rules = yaml.safe_load(RULES.read_text())
    assert rules["apiVersion"] == "monitoring.coreos.com/v1" and rules["kind"] == "PrometheusRule"
    validator = rule_validator()
    assert [e.message for e in validator.iter_errors(rules)] == []
    typo = copy.deepcopy(rules)
    typo["spec"]["groups"][0]["rules"][0]["annotation"] = typo["spec"]["groups"][0]["rules"][0].pop("annotations")
    assert any("'annotation' was unexpected" in e.message for e in validator.iter_errors(typo))
    bad_for = copy.deepcopy(rules)
    bad_for["spec"]["groups"][0]["rules"][1]["for"] = "5 minutes"
    assert any("does not match" in e.message for e in validator.iter_errors(bad_for))


def test_every_alert_says_how_bad_what_happened_and_which_runbook() -> None:
    rules = yaml.safe_load(RULES.read_text())["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"MigratorRunHalted", "MigratorNodePastPhaseDeadline",
                                           "MigratorNodeRolledBack", "MigratorApiUnavailable"}
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, rule["alert"]
        found = re.fullmatch(r"https://github\.com/migrator/migrator/blob/main/(runbooks/[\w.-]+\.md)",
                             rule["annotations"]["runbook_url"])
        assert found and (ROOT / found.group(1)).is_file(), rule["annotations"]["runbook_url"]


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["plan"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0, panel["title"]
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        assert all(t["datasource"] == panel["datasource"] and t["expr"] for t in panel["targets"]), panel["title"]
    assert {"Run phase", "Halted", "Last progress", "Lease holder", "Nodes by phase", "Step duration p50 / p95",
            "Evictions", "Rollbacks", "Probe pass rate", "API errors and retries", "API server unavailable"} <= titles
