"""The run report from a recorded timeline, without a cluster: what the recorder writes at each
turn, what the report makes of it (and of its absence), and that untrusted text never becomes
markup. The report of a real run against the simulated cluster is tests/test_report_run.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from migrator.engine.actions import ActionResult, DeletePod, EvictPod
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint, NodeRecord
from migrator.model.findings import Finding, Severity
from migrator.model.observation import ClusterObservation, PodFacts
from migrator.model.plan import load_plan
from migrator.model.states import NodePhase, RunPhase
from migrator.report import build, render
from migrator.report.screenshot import main as screenshot
from migrator.report.timeline import TimelineRecorder, read_timeline, timeline_path

ROOT = Path(__file__).resolve().parents[1]
PLAN = load_plan(ROOT / "plans" / "example.yaml")
T0 = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)
EVIL = "<script>alert(1)</script>"
EVIL_NODE = f"node-{EVIL}"


class FakeClock:
    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return (self.at - T0).total_seconds()

    def sleep(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


class Page(HTMLParser):
    """The parts of the page the tests read: elements, text, and data-* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.segments: list[tuple[str, str]] = []      # (node, phase) of each chart segment
        self.waves: list[str] = []
        self.external: list[str] = []
        self._node: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self.node_rows: list[list[str]] = []
        self._in_nodes = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))
        if tag == "link":
            self.external.append(str(a))
        if tag == "g" and "data-node" in a:
            self._node = a["data-node"]
        if tag == "g" and "data-wave" in a:
            self.waves.append(str(a["data-wave"]))
        if tag == "rect" and "data-phase" in a:
            self.segments.append((self._node or "(run)", str(a["data-phase"])))
        if tag == "table" and a.get("id") == "nodes":
            self._in_nodes = True
        if self._in_nodes and tag == "tr":
            self._row = []
        if self._row is not None and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "g":
            self._node = None
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr" and self._row is not None:
            if self._row:
                self.node_rows.append(self._row)
            self._row = None
        if tag == "table":
            self._in_nodes = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


def checkpoint(phases: dict[str, NodePhase], *, run_phase: RunPhase = RunPhase.MIGRATING,
               **node_changes: dict[str, Any]) -> Checkpoint:
    nodes = tuple(NodeRecord(name=name, phase=phase, attempt=0 if phase is NodePhase.PENDING else 1,
                             phase_started_at=T0, **node_changes.get(name, {}))
                  for name, phase in phases.items())
    return Checkpoint(plan_name="example", plan_hash="abc", run_id="run1", started_at=T0, run_phase=run_phase,
                      nodes=nodes)


def pod(name: str, uid: str, node: str, owner: str | None) -> PodFacts:
    return PodFacts(namespace="shop", name=name, uid=uid, node=node, owner_kind="ReplicaSet" if owner else None,
                    owner_name=owner)


def recorded_run(directory: Path) -> tuple[Checkpoint, Path]:
    """A run of two nodes told turn by turn: node-1 migrates, the other fails its gate and rolls back."""
    clock = FakeClock()
    metrics = Metrics()
    rec = TimelineRecorder(directory, process="p1", purpose="run", metrics=metrics, clock=clock)
    P = NodePhase
    findings = (Finding(check="calico.vxlan-port", severity=Severity.WARNING, message=f"port {EVIL}"),)
    rec.turn(checkpoint({"node-1": P.PENDING, EVIL_NODE: P.PENDING}, run_phase=RunPhase.PREFLIGHT),
             obs=ClusterObservation(findings=findings))
    clock.sleep(5)
    rec.turn(checkpoint({"node-1": P.LABELED, EVIL_NODE: P.LABELED}))
    clock.sleep(5)
    evict = EvictPod(node="node-1", namespace="shop", name="web-1", uid="u1")
    bare = EvictPod(node=EVIL_NODE, namespace="shop", name="debug", uid="u2")
    metrics.actions.labels(kind="evict-pod", outcome="ok").inc(2)
    metrics.actions.labels(kind="evict-pod", outcome="DisruptionBudgetBlocked").inc()
    metrics.retries.inc(3)
    rec.turn(checkpoint({"node-1": P.CNI_VERIFIED, EVIL_NODE: P.CNI_VERIFIED}),
             results=(ActionResult.success(evict),
                      ActionResult.failure(evict, "DisruptionBudgetBlocked", f"PDB says no {EVIL}"),
                      ActionResult.success(bare),
                      ActionResult.success(DeletePod(node="node-1", namespace="shop", name="log-1", uid="u3",
                                                     reason="recycle"))),
             obs=ClusterObservation(pods=(pod("web-1", "u1", "node-1", "web"), pod("debug", "u2", EVIL_NODE, None),
                                          pod("log-1", "u3", "node-1", "log"))))
    clock.sleep(5)
    rec.turn(checkpoint({"node-1": P.DONE, EVIL_NODE: P.ROLLING_BACK},
                        **{"node-1": {"probes": "ok 9/9"},
                           EVIL_NODE: {"probes": f"fail 0/9: {EVIL}", "rollback_reason": f"gate failed {EVIL}",
                                       "last_error": f"dial {EVIL}"}}))
    clock.sleep(5)
    final = checkpoint({"node-1": P.DONE, EVIL_NODE: P.ROLLED_BACK}, run_phase=RunPhase.NODES_DONE,
                       **{"node-1": {"probes": "ok 9/9"},
                          EVIL_NODE: {"probes": f"fail 0/9: {EVIL}", "rollback_reason": f"gate failed {EVIL}",
                                      "last_error": f"dial {EVIL}"}})
    final = final.model_copy(update={"halted": f"rollback.halt_after reached {EVIL}"})
    rec.end(1, "halted", final)
    return final, timeline_path(directory, "run1")


def test_the_recorder_writes_transitions_waves_pods_probes_rollbacks_findings_and_counters(tmp_path):
    _, path = recorded_run(tmp_path)
    records = read_timeline([path]).records
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "session" and kinds[-1] == "end"
    phases = [(r["node"], r["phase"]) for r in records if r["kind"] == "phase"]
    assert phases == [("node-1", "PENDING"), (EVIL_NODE, "PENDING"), ("node-1", "LABELED"), (EVIL_NODE, "LABELED"),
                      ("node-1", "CNI_VERIFIED"), (EVIL_NODE, "CNI_VERIFIED"), ("node-1", "DONE"),
                      (EVIL_NODE, "ROLLING_BACK"), (EVIL_NODE, "ROLLED_BACK")]
    assert [r["nodes"] for r in records if r["kind"] == "wave"] == [["node-1", EVIL_NODE]]
    pods = [(r["pod"], r["workload"], r["action"], r["outcome"]) for r in records if r["kind"] == "pod"]
    assert pods == [("shop/web-1", "ReplicaSet/shop/web", "evict", "ok"),
                    ("shop/web-1", "ReplicaSet/shop/web", "evict", "DisruptionBudgetBlocked"),
                    ("shop/debug", None, "evict", "ok"),
                    ("shop/log-1", "ReplicaSet/shop/log", "delete (recycle)", "ok")]
    assert [r["reason"] for r in records if r["kind"] == "rollback"] == [f"gate failed {EVIL}"]
    assert [r["findings"][0]["check"] for r in records if r["kind"] == "findings"] == ["calico.vxlan-port"]
    counters = [r for r in records if r["kind"] == "counters"][-1]
    assert counters["retries"] == 3
    assert counters["actions"] == {"evict-pod/DisruptionBudgetBlocked": 1, "evict-pod/ok": 2}


def test_a_resume_appends_to_the_same_timeline_and_goes_on_from_its_last_state(tmp_path):
    _, path = recorded_run(tmp_path)
    before = path.read_text().splitlines()
    clock = FakeClock()
    clock.at = T0 + timedelta(minutes=5)
    rec = TimelineRecorder(tmp_path, process="p2", purpose="resume", clock=clock)
    P = NodePhase
    rec.turn(checkpoint({"node-1": P.DONE, EVIL_NODE: P.ROLLED_BACK}, run_phase=RunPhase.NODES_DONE,
                        **{"node-1": {"probes": "ok 9/9"},
                           EVIL_NODE: {"probes": f"fail 0/9: {EVIL}", "rollback_reason": f"gate failed {EVIL}"}}))
    rec.close()
    after = path.read_text().splitlines()
    assert after[:len(before)] == before
    added = [json.loads(line) for line in after[len(before):]]
    assert [r["kind"] for r in added] == ["session"], added   # nothing changed since the last process


def test_report_html_and_json_carry_the_same_facts(tmp_path):
    cp, _ = recorded_run(tmp_path)
    report = build(cp, PLAN, timelines=None, output_dir=tmp_path, now=T0 + timedelta(hours=1),
                   checkpoint_source="checkpoint kube-system/cni-migration-state")
    data = json.loads(render(report, "json"))
    page = parse(render(report, "html"))
    assert data["notes"] == []
    assert [n["name"] for n in data["nodes"]] == ["node-1", EVIL_NODE]
    # every node and every phase it went through, as segments of its chart row
    json_segments = [("(run)", s["phase"]) for s in data["run_segments"]]
    json_segments += [(n["name"], s["phase"]) for n in data["nodes"] for s in n["segments"]]
    assert page.segments == json_segments
    assert [p for n, p in json_segments if n == EVIL_NODE] == ["PENDING", "LABELED", "CNI_VERIFIED", "ROLLING_BACK",
                                                               "ROLLED_BACK"]
    assert [n for n, _ in json_segments if n == "(run)"] and ("(run)", "NODES_DONE") in json_segments
    # the node table: name, final phase, attempt, gate, rollback reason, last error
    assert [row[:6] for row in page.node_rows] == [
        [n["name"], n["phase"], str(n["attempt"]), n["probes"] or "", n["rollback_reason"] or "",
         n["last_error"] or ""] for n in data["nodes"]]
    assert page.waves == [str(w["number"]) for w in data["waves"]] == ["1"]
    text = "\n".join(page.text)
    for row in data["pods"]:
        assert row["workload"] in text
    assert {(p["workload"], p["outcome"], p["count"]) for p in data["pods"]} == {
        ("ReplicaSet/shop/web", "ok", 1), ("ReplicaSet/shop/web", "DisruptionBudgetBlocked", 1),
        ("bare pod", "ok", 1), ("ReplicaSet/shop/log", "ok", 1)}
    assert [r["reason"] for r in data["rollbacks"]] == [f"gate failed {EVIL}"]
    assert data["api"]["retries"] == 3 and f"{data['api']['retries']} retried request(s)" in text
    assert [f["check"] for f in data["findings"]] == ["calico.vxlan-port"] and "calico.vxlan-port" in text
    assert data["overview"]["counts"] == {"DONE": 1, "ROLLED_BACK": 1}
    assert "name: example" in text   # the plan, as YAML


def test_untrusted_text_is_shown_never_run(tmp_path):
    cp, _ = recorded_run(tmp_path)
    html = render(build(cp, PLAN, timelines=None, output_dir=tmp_path, now=T0,
                        checkpoint_source="checkpoint"), "html")
    page = parse(html)
    assert "script" not in page.tags
    assert "<script" not in html.lower()
    assert page.external == []   # nothing loaded from anywhere
    text = "".join(page.text)
    assert EVIL_NODE in text and f"gate failed {EVIL}" in text and f"port {EVIL}" in text


def test_without_a_timeline_the_report_shows_the_current_state_and_says_so(tmp_path):
    cp, path = recorded_run(tmp_path)
    path.unlink()
    report = build(cp, PLAN, timelines=None, output_dir=tmp_path, now=T0, checkpoint_source="checkpoint")
    assert any("no timeline" in note for note in report.notes)
    assert all(not n.history and [s.phase for s in n.segments] == [n.phase] for n in report.nodes)
    assert not report.api.recorded and not report.findings_recorded
    assert [r.reason for r in report.rollbacks] == [f"gate failed {EVIL}"]   # from the checkpoint
    page = parse(render(report, "html"))
    assert "Not recorded: no timeline holds the run's API counters." in page.text


def test_a_cut_or_missing_timeline_file_is_a_note_not_a_failure(tmp_path):
    cp, path = recorded_run(tmp_path)
    with path.open("a") as f:
        f.write('{"kind":"phase","t":"2026-05-')   # a line cut by a crash
    report = build(cp, PLAN, timelines=[path, tmp_path / "missing.jsonl"], output_dir=tmp_path, now=T0,
                   checkpoint_source="checkpoint")
    assert any("1 unreadable line(s) skipped" in n for n in report.notes)
    assert any("missing.jsonl could not be read" in n for n in report.notes)
    assert all(n.history for n in report.nodes)


def test_report_screenshot_without_a_browser_says_so_and_succeeds(tmp_path, monkeypatch, capsys):
    page = tmp_path / "r.html"
    page.write_text("<html></html>")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("BROWSER", raising=False)
    assert screenshot([str(page)]) == 0
    assert "no headless browser installed" in capsys.readouterr().out
    assert screenshot([str(tmp_path / "none.html")]) == 2
