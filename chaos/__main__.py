"""``python -m chaos`` (``make chaos``): every chaos scenario, then the results as a table.

    python -m chaos                          # everything (the crash sweep takes a while)
    python -m chaos --only faults takeover   # some scenarios
    python -m chaos --sweep-points 10        # 10 crash points spread over the run, not every write

Scenarios: ``faults`` (1, 5, 10 % of requests failing, 3 seeds, 6 nodes, plus a fault-free run
per seed), ``timing`` (5 % and none at a real cluster's pace, every seed side by side, about
4 minutes: what the faults cost in wall time), ``outage`` (the API server unavailable 60 s mid-run), ``sweep`` (SIGKILL after every
write of a 4-node run, then resume), ``takeover`` (``--force-takeover`` of a live run),
``concurrency`` (5 runs at once). Exit 0 when every target is met, 1 otherwise. The whole suite
takes about 35 minutes on two busy cores, most of it the crash sweep (about 110 points of
20 s each: a fresh cluster, the killed run, the resume); ``--jobs 2`` halves that where cores allow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from chaos import crashes, faults, lease, report
from migrator import log as logsetup

SCENARIOS = ("faults", "timing", "outage", "sweep", "takeover", "concurrency")


def spread(total: int, count: int | None) -> list[int]:
    """``count`` points from 1 to ``total``, evenly spread (all of them when ``count`` is None)."""
    if count is None or count >= total:
        return list(range(1, total + 1))
    if count <= 1:
        return [max(1, total // 2)]
    return sorted({1 + round(i * (total - 1) / (count - 1)) for i in range(count)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.01, 0.05, 0.10])
    parser.add_argument("--nodes", type=int, default=6, help="nodes of the fault, outage and takeover runs")
    parser.add_argument("--sweep-nodes", type=int, default=4)
    parser.add_argument("--sweep-points", type=int, help="crash points to try (default: every write)")
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--outage-modes", nargs="+", choices=("refuse", "503"), default=["refuse", "503"])
    parser.add_argument("--jobs", type=int, default=1, help="crash points run at once (default 1)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every result as JSON to FILE")
    args = parser.parse_args(argv)
    logsetup.quiet()
    began = time.monotonic()
    results = report.Results()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731

    if "faults" in args.only or "outage" in args.only:
        for rate in [0.0, *args.rates] if "faults" in args.only else [0.0]:
            for seed in args.seeds if "faults" in args.only else args.seeds[:1]:
                cell = faults.fault_cell(rate, seed, args.nodes)
                results.cells.append(cell)
                say(f"faults {rate * 100:g} % seed {seed}: exit {cell.code} in {cell.wall:.1f} s, "
                    f"{cell.injected} faults, {'invariants hold' if not cell.problems else cell.problems[0]}")
    if "timing" in args.only:
        say(f"timing: 5 % faults and none at a real cluster's pace, seeds {args.seeds} side by side")
        results.timing = faults.timing_cells(0.05, args.seeds, args.nodes)
        for cell in results.timing:
            say(f"timing {cell.rate * 100:g} % seed {cell.seed}: exit {cell.code} in {cell.wall:.1f} s, "
                f"{cell.injected} faults, {'invariants hold' if not cell.problems else cell.problems[0]}")
    if "outage" in args.only:
        writes = [c.writes for c in results.cells if c.rate == 0 and c.code == 0]
        middle = max(1, writes[0] // 2) if writes else 60
        for mode in args.outage_modes:
            o = faults.outage(args.seeds[0], args.nodes, args.outage_seconds, mode, after_writes=middle)
            results.outages.append(o)
            say(f"outage {o.seconds:g} s ({mode}) after write {middle}: exit {o.code} in {o.wall:.0f} s")
        if "faults" not in args.only:
            results.cells.clear()
    if "sweep" in args.only:
        total = crashes.reference(args.seeds[0], args.sweep_nodes)
        results.sweep_writes = total
        points = spread(total, args.sweep_points)
        say(f"crash sweep: {len(points)} points over {total} writes of a {args.sweep_nodes}-node run")
        results.sweep = crashes.sweep(args.seeds[0], points, args.sweep_nodes, args.jobs, progress=lambda p: say(
            f"  k={p.k}: {'not reached' if not p.reached else p.killed_at} -> "
            f"{'converged' if p.converged else (p.problems[:1] or [f'resume exit {p.resume_code}'])[0]}"))
    if "takeover" in args.only:
        results.takeover = lease.takeover(args.seeds[0], args.nodes)
        say(f"takeover: {results.takeover}")
    if "concurrency" in args.only:
        results.concurrency = lease.concurrent_runs(args.seeds[0])
        say(f"concurrency: exit codes {results.concurrency.codes}")

    rows = report.summary(results)
    if args.json is not None:
        args.json.write_text(json.dumps(dataclasses.asdict(results), indent=1, default=str))
    print(f"\n## Chaos results ({time.monotonic() - began:.0f} s)\n")
    print(report.markdown(("check", "result", "target", "met"), rows))
    if results.cells or results.timing:
        print("\n### Fault runs (one invocation each)\n")
        print(report.fault_table(results.cells + results.timing))
    if any(not p.converged for p in results.sweep):
        print("\n### Crash points that did not converge\n")
        print(report.sweep_failures(results.sweep))
    return 0 if report.all_met(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
