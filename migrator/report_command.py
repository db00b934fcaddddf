"""``migrator report``: the run's report as one HTML page or as JSON. Wiring only.

Reads the checkpoint from the cluster (no run there: exit 2, like ``status``), the run's
timeline file(s) (``--timeline FILE``, repeatable, else ``migrator-timeline-<run id>.jsonl`` in
``--output-dir``), and renders ``migrator.report``. A timeline that is missing or cannot be
read is not an error: the report is made from the checkpoint, says what is missing, exit 0.
The format is ``--format``, else the suffix of ``-o`` (``.json``: JSON; anything else: HTML).
Nothing is written to the cluster.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrator.commands import EXIT_HELP, UsageError, _common, _load_state, _setup, guarded, no_run
from migrator.report import build, render, report_path
from migrator.runner import Exit


def register(sub: Any) -> None:
    """Add ``migrator report`` to the CLI."""
    text = "write the run's report: a self-contained HTML page (timeline, evictions, probes, rollbacks, API " \
           "requests, plan, findings) or the same facts as JSON"
    p = sub.add_parser("report", help=text, description=f"{text}. Writes nothing to the cluster. {EXIT_HELP}.")
    _common(p)
    p.add_argument("-o", "--output", type=Path, metavar="FILE",
                   help="file to write (default: migrator-report-<run id>.html in --output-dir); '-' for stdout")
    p.add_argument("--format", choices=("html", "json"), help="default: from the suffix of -o (.json: json), "
                                                               "else html")
    p.add_argument("--timeline", type=Path, action="append", default=[], metavar="FILE",
                   help="the run's timeline file (repeatable; default: the one in --output-dir)")
    p.add_argument("--output-dir", type=Path, default=Path.cwd(), metavar="DIR",
                   help="the run's --output-dir, where its timeline is looked for (default: current directory)")
    p.set_defaults(func=cmd_report)


def output_format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    out: Path | None = args.output
    return "json" if out is not None and out.suffix.lower() == ".json" else "html"


@guarded
def cmd_report(args: argparse.Namespace) -> int:
    plan = _setup(args)
    out: Path | None = args.output
    if out is not None and str(out) != "-":
        if out.is_dir():
            raise UsageError(f"-o {out}: is a directory; name a file, e.g. -o {out / 'report.html'}")
        if not out.parent.is_dir():
            raise UsageError(f"-o {out}: {out.parent} is not a directory; name a file in an existing directory")
    store, cp, _ = _load_state(args, plan)
    try:
        if cp is None:
            return no_run(store, args, "no run to report on")
    finally:
        store.port.close()
    fmt = output_format(args)
    report = build(cp, plan, timelines=list(args.timeline) or None, output_dir=args.output_dir,
                   now=datetime.now(UTC), checkpoint_source=f"checkpoint {store.where}")
    text = render(report, fmt)
    if out is not None and str(out) == "-":
        sys.stdout.write(text)
        return Exit.DONE
    path = out if out is not None else report_path(args.output_dir, cp.run_id, fmt)
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot be written ({exc.strerror or exc}); pass a writable path") from exc
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"report of run {cp.run_id} written to {path}")
    return Exit.DONE
