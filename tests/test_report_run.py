"""`migrator report` against the simulated cluster: before a run (exit 2), after a short run (the
report the run wrote into --output-dir, and the command's HTML and JSON agreeing with each other
and with the cluster's checkpoint), and with its timeline gone (exit 0, a note)."""

from __future__ import annotations

import json
from collections import Counter

from migrator.cli import main
from migrator.report.timeline import read_timeline, timeline_path
from tests.runner.helpers import checkpoint, fast_plan
from tests.test_report import parse


def test_report_of_a_short_run(sim_factory, tmp_path, capsys):
    sim = sim_factory(nodes=3)
    kubeconfig = str(sim.write_kubeconfig(tmp_path / "kubeconfig"))
    plan = str(fast_plan(tmp_path))
    out = tmp_path / "out"
    common = ["--plan", plan, "--kubeconfig", kubeconfig, "--log-level", "warning"]

    assert main(["report", *common, "-o", str(tmp_path / "early.html")]) == 2
    assert "no migration state in" in capsys.readouterr().err
    assert not (tmp_path / "early.html").exists()
    assert main(["report", *common, "-o", str(tmp_path / "no-such-dir" / "r.html")]) == 2
    assert "is not a directory" in capsys.readouterr().err

    assert main(["run", *common, "--yes", "--output-dir", str(out)]) == 0
    cp = checkpoint(sim)
    assert cp is not None
    written = out / f"migrator-report-{cp.run_id}.html"
    assert written.exists()          # the run wrote its report when it ended
    records = read_timeline([timeline_path(out, cp.run_id)]).records
    assert [r["kind"] for r in records][0] == "session" and records[-1]["kind"] == "end"

    html_path, json_path = tmp_path / "report.html", tmp_path / "report.json"
    assert main(["report", *common, "--output-dir", str(out), "-o", str(html_path)]) == 0
    assert main(["report", *common, "--output-dir", str(out), "-o", str(json_path)]) == 0
    data = json.loads(json_path.read_text())
    page = parse(html_path.read_text())

    # every node of the cluster's checkpoint, with its final phase, in both
    assert [(n["name"], n["phase"]) for n in data["nodes"]] == [(r.name, r.phase.value) for r in cp.nodes]
    assert [row[:2] for row in page.node_rows] == [[r.name, r.phase.value] for r in cp.nodes]
    assert data["notes"] == [] and all(n["history"] for n in data["nodes"])
    # every phase each node went through, in order, drawn in its chart row
    segments = [(n["name"], s["phase"]) for n in data["nodes"] for s in n["segments"]]
    assert [s for s in page.segments if s[0] != "(run)"] == segments
    for record in cp.nodes:
        seen = [phase for name, phase in segments if name == record.name]
        assert seen[0] == "PENDING" and seen[-1] == "DONE" and len(seen) >= 4, seen
    assert [p for n, p in page.segments if n == "(run)"] == [s["phase"] for s in data["run_segments"]]
    assert [s["phase"] for s in data["run_segments"]][-1] == "NODES_DONE"
    # waves, evictions, probes, API counts and findings: the same facts, and the ones the run had
    assert page.waves == [str(w["number"]) for w in data["waves"]]
    assert sorted(n for w in data["waves"] for n in w["nodes"]) == sorted(r.name for r in cp.nodes)
    evicted = Counter(e.name for e in sim.requests.entries
                      if e.verb == "create" and e.resource == "pods/eviction" and e.code == 201)
    assert sum(p["count"] for p in data["pods"] if p["action"] == "evict" and p["outcome"] == "ok") == \
        sum(evicted.values()) > 0
    text = "\n".join(page.text)
    assert all(p["workload"] in text for p in data["pods"])
    assert {p["node"]: p["result"] for p in data["probes"]} == {r.name: r.probes for r in cp.nodes}
    api = {(a["kind"], a["outcome"]): a["count"] for a in data["api"]["actions"]}
    assert api[("evict-pod", "ok")] == sum(evicted.values())
    assert data["findings_recorded"] and all(f["check"] in text for f in data["findings"])
    assert data["overview"]["counts"] == {"DONE": len(cp.nodes)}

    # the timeline gone: the report still comes, from the checkpoint, and says what is missing
    timeline_path(out, cp.run_id).unlink()
    capsys.readouterr()
    assert main(["report", *common, "--output-dir", str(out), "--format", "json", "-o", "-"]) == 0
    captured = capsys.readouterr()
    bare = json.loads(captured.out)
    assert any("no timeline" in note for note in bare["notes"]) and not bare["api"]["recorded"]
    assert [(n["name"], n["phase"]) for n in bare["nodes"]] == [(r.name, r.phase.value) for r in cp.nodes]
