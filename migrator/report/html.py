"""``RunReport`` as one self-contained HTML page: inline CSS, an inline SVG timeline, no script.

Nothing is loaded from anywhere: the page opens from a file, offline, in any browser, and can be
attached to a ticket. Every value that comes from the cluster or the run (node names, messages,
reasons, the plan) is untrusted and goes through ``esc`` (``html.escape`` with quotes), in text
and in attributes alike, so a node named ``<script>`` is shown, never run.

The chart has one row per node (and one for the run), each phase a colored segment whose
tooltip (``<title>``) gives its times, and a dashed line per wave. Rows and segments carry
``data-node`` / ``data-phase`` attributes so the facts can be read back from the page.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from html import escape

from migrator.report.data import RunReport, Segment

CHART_ROWS = 1000        # nodes drawn in the chart (the tables list every node)
ROW = 18
LABEL_WIDTH = 200
PLOT_WIDTH = 900
LABEL_CHARS = 30         # longer node names are cut in the chart (the tooltip and the tables have them whole)
STUB = 0.04              # share of the plot past the last known moment
PHASE_COLORS = {
    "PENDING": "#d9d9d9", "CORDONED": "#9ecae1", "DRAINED": "#6baed6", "LABELED": "#4292c6",
    "AGENT_RESTARTED": "#2171b5", "CNI_VERIFIED": "#807dba", "PODS_RECYCLED": "#6a51a3",
    "PROBED": "#74c476", "UNCORDONED": "#41ab5d", "DONE": "#238b45", "SKIPPED": "#fdd0a2",
    "FAILED": "#d62728", "ROLLING_BACK": "#fd8d3c", "ROLLED_BACK": "#e6550d",
    # run phases
    "PREFLIGHT": "#bdbdbd", "PREPARED": "#9e9ac8", "MIGRATING": "#3182bd", "NODES_DONE": "#31a354",
    "FINALIZING": "#756bb1", "FINALIZED": "#006d2c", "PAUSED": "#fdae6b", "SOAKING": "#a1d99b",
    "ABORTED": "#a50f15",
}
CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:4px 0 8px}th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right}.note{background:#fff4d6;border-left:4px solid
#e0a800;padding:6px 10px;margin:6px 0}.bad{color:#b00}.ok{color:#186a2e}pre{background:#f7f7f7;padding:8px;
overflow:auto;font-size:12px}.legend span{display:inline-block;margin:0 10px 4px 0}.legend i{display:inline-block;
width:12px;height:12px;margin-right:4px;vertical-align:middle}dl{display:grid;grid-template-columns:max-content
auto;gap:2px 14px}dt{font-weight:600}dd{margin:0}svg text{font:11px system-ui,sans-serif}
"""


def esc(value: object) -> str:
    """Text or attribute value, escaped."""
    return escape("" if value is None else str(value), quote=True)


def _color(phase: str) -> str:
    return PHASE_COLORS.get(phase, "#999999")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "—"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, empty: str, attrs: str = "") -> str:
    body = "".join("<tr>" + "".join(rows_cell for rows_cell in row) + "</tr>" for row in rows)
    if not body:
        return f"<p>{esc(empty)}</p>"
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def td(value: object, cls: str = "") -> str:
    return f'<td class="{esc(cls)}">{esc(value)}</td>' if cls else f"<td>{esc(value)}</td>"


def _chart(report: RunReport) -> str:
    start, end = report.overview.started_at, report.overview.ended_at
    # a stub past the last known moment shows each row's final phase, however late it began
    span = max((end - start).total_seconds(), 1.0) * (1 + STUB)

    def x(moment: datetime) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * min(max((moment - start).total_seconds() / span, 0.0), 1.0)

    rows: list[tuple[str, str, tuple[Segment, ...]]] = [("run", "(run)", report.run_segments)]
    rows += [("node", n.name, n.segments) for n in report.nodes[:CHART_ROWS]]
    top = 22
    height = top + ROW * len(rows) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_WIDTH + PLOT_WIDTH + 20}" height="{height}" '
             'role="img" aria-label="timeline of the run">']
    for i in range(5):
        moment_x = LABEL_WIDTH + PLOT_WIDTH * i / 4
        seconds = span * i / 4
        parts.append(f'<line x1="{moment_x:.1f}" y1="{top - 4}" x2="{moment_x:.1f}" y2="{height - 8}" '
                     'stroke="#eee"/>')
        label = f"+{seconds:.1f}s" if span < 60 else f"+{seconds / 60:.0f}m" if span < 7200 else f"+{seconds / 3600:.1f}h"
        parts.append(f'<text x="{moment_x:.1f}" y="12" text-anchor="middle">{label}</text>')
    for index, (kind, name, segments) in enumerate(rows):
        y = top + ROW * index
        attr = ' data-row="run"' if kind == "run" else f' data-node="{esc(name)}"'
        parts.append(f"<g{attr}>")
        label = name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + 12}" text-anchor="end">{esc(label)}<title>{esc(name)}'
                     "</title></text>")
        for index_seg, seg in enumerate(segments):
            x1 = x(seg.start)
            x2 = LABEL_WIDTH + PLOT_WIDTH if index_seg == len(segments) - 1 else x(seg.end)
            width = max(x2 - x1, 1.5)
            parts.append(f'<rect x="{x1:.1f}" y="{y + 2}" width="{width:.1f}" height="{ROW - 4}" '
                         f'fill="{_color(seg.phase)}" data-phase="{esc(seg.phase)}"><title>{esc(name)}: '
                         f"{esc(seg.phase)} {esc(_when(seg.start))} → {esc(_when(seg.end))}</title></rect>")
        parts.append("</g>")
    for wave in report.waves:
        wx = x(wave.at)
        parts.append(f'<g data-wave="{wave.number}"><line x1="{wx:.1f}" y1="{top - 4}" x2="{wx:.1f}" '
                     f'y2="{height - 8}" stroke="#444" stroke-dasharray="3,3"/><text x="{wx + 2:.1f}" '
                     f'y="{top + 2}">W{wave.number}</text><title>wave {wave.number}: '
                     f"{esc(', '.join(wave.nodes))} at {esc(_when(wave.at))}</title></g>")
    parts.append("</svg>")
    phases = sorted({s.phase for _, _, segs in rows for s in segs})
    legend = "".join(f'<span><i style="background:{_color(p)}"></i>{esc(p)}</span>' for p in phases)
    more = (f'<p class="note">The chart shows the first {CHART_ROWS} of {len(report.nodes)} nodes; the tables '
            "list every node.</p>" if len(report.nodes) > CHART_ROWS else "")
    return f'<div class="legend">{legend}</div>{"".join(parts)}{more}'


def _bad(report: RunReport) -> bool:
    """The run did not go as planned: halted, aborted, rolled back, a node failed, a canary failed."""
    o = report.overview
    return bool(o.halted) or o.run_phase in ("ABORTED", "ROLLED_BACK") or bool(
        o.canary and o.canary.startswith("failed")) or any(n.phase in ("FAILED", "ROLLED_BACK") for n in report.nodes)


def render_html(report: RunReport) -> str:
    """The whole page."""
    o = report.overview
    title = f"migrator run {o.run_id} — {o.plan_name}"
    counts = ", ".join(f"{esc(k)}: {v}" for k, v in o.counts.items()) or "no nodes"
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in report.notes)
    overview = (
        "<dl>"
        f"<dt>Run</dt><dd>{esc(o.run_id)}</dd><dt>Plan</dt><dd>{esc(o.plan_name)} ({esc(o.plan_hash)})</dd>"
        f"<dt>Started</dt><dd>{esc(_when(o.started_at))}</dd><dt>Last known</dt><dd>{esc(_when(o.ended_at))}</dd>"
        f'<dt>Outcome</dt><dd class="{"bad" if _bad(report) else "ok"}">{esc(o.outcome)}</dd>'
        f"<dt>Run phase</dt><dd>{esc(o.run_phase)}</dd>"
        + (f"<dt>Canary</dt><dd>{esc(o.canary)}</dd>" if o.canary else "")
        + f"<dt>Nodes</dt><dd>{len(report.nodes)} ({counts})</dd>"
        f"<dt>Sources</dt><dd>{'<br>'.join(esc(s) for s in report.sources)}</dd></dl>")
    node_rows = [[td(n.name), td(n.phase), td(n.attempt, "n"), td(n.probes or ""), td(n.rollback_reason or ""),
                  td(n.last_error or ""), td("timeline" if n.history else "current phase only"),
                  td(" · ".join(n.audit))] for n in report.nodes]
    nodes = _table(["node", "final phase", "attempt", "last gate", "rollback reason", "last error", "history",
                    "audit"], node_rows, empty="The run has no nodes.", attrs=' id="nodes"')
    waves = _table(["wave", "at", "nodes"], [[td(w.number, "n"), td(_when(w.at)), td(", ".join(w.nodes))]
                                             for w in report.waves],
                   empty="No wave was recorded (no timeline, or no node was started).")
    pods = _table(["workload", "action", "outcome", "requests", "pods", "nodes"],
                  [[td(p.workload), td(p.action), td(p.outcome, "" if p.outcome == "ok" else "bad"),
                    td(p.count, "n"), td(p.pods, "n"), td(", ".join(p.nodes))] for p in report.pods],
                  empty="No eviction or pod deletion was recorded.")
    probes = _table(["node", "at", "result"], [[td(p.node), td(_when(p.at)),
                                                td(p.result, "ok" if p.result.startswith("ok") else "bad")]
                                               for p in report.probes],
                    empty="No connectivity gate outcome was recorded.")
    rollbacks = _table(["node", "at", "reason", "final phase"],
                       [[td(r.node), td(_when(r.at)), td(r.reason), td(r.phase)] for r in report.rollbacks],
                       empty="No node was rolled back.")
    api = report.api
    if api.recorded:
        api_html = (f"<p>{api.processes} process(es); {api.retries} retried request(s); {api.outages} API server "
                    f"outage(s) waited out ({api.unavailable_seconds:.1f} s). Each action is one write request "
                    "through the guarded port; checkpoint saves, lease renewals and the reads served by the "
                    "watch cache are not counted.</p>"
                    + _table(["action", "outcome", "requests"],
                             [[td(a.kind), td(a.outcome, "" if a.outcome == "ok" else "bad"), td(a.count, "n")]
                              for a in api.actions], empty="No action was sent.")
                    + _table(["probe checks (purpose/outcome)", "count"],
                             [[td(k), td(v, "n")] for k, v in api.probe_checks.items()], empty=""))
    else:
        api_html = "<p>Not recorded: no timeline holds the run's API counters.</p>"
    if report.findings_recorded:
        findings = _table(["severity", "check", "finding", "fix"],
                          [[td("skipped (--skip-check)" if f.skipped else f.severity,
                               "bad" if f.severity == "blocking" and not f.skipped else ""),
                            td(f.check), td(f.message), td(f.fix_command)] for f in report.findings],
                          empty="Preflight found nothing.")
    else:
        findings = "<p>Not recorded: no timeline holds the findings of the run's preflight.</p>"
    audit = "".join(f"<li>{esc(a)}</li>" for a in report.overview.audit)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>Report generated {esc(_when(report.generated_at))}.</p>{notes}"
        f"<h2 id=\"overview\">Overview</h2>{overview}"
        + (f"<h3>Run audit</h3><ul>{audit}</ul>" if audit else "")
        + f"<h2 id=\"timeline\">Timeline</h2>{_chart(report)}"
        f"<h2 id=\"node-table\">Nodes</h2>{nodes}"
        f"<h2 id=\"waves\">Waves</h2>{waves}"
        f"<h2 id=\"evictions\">Evictions and deletions per workload</h2>{pods}"
        f"<h2 id=\"probes\">Probes</h2>{probes}"
        f"<h2 id=\"rollbacks\">Rollbacks</h2>{rollbacks}"
        f"<h2 id=\"api\">API requests</h2>{api_html}"
        f"<h2 id=\"findings\">Preflight findings</h2>{findings}"
        f"<h2 id=\"plan\">Plan</h2><pre>{esc(report.plan_yaml)}</pre>"
        "</body></html>\n")
