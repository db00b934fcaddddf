"""The chaos suite's results as tables (markdown, so they paste into a pull request).

``summary`` reduces every scenario to one row (what was measured, the target, met or not);
``fault_table`` and ``sweep_failures`` give the detail behind the rows that need it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean

from chaos.crashes import CrashPoint
from chaos.faults import FaultCell, OutageResult
from chaos.lease import ConcurrencyResult, TakeoverResult


@dataclass
class Results:
    """Everything one ``python -m chaos`` gathered (a scenario not run stays empty)."""

    cells: list[FaultCell] = field(default_factory=list)
    timing: list[FaultCell] = field(default_factory=list)   # the same runs at a real cluster's pace
    outages: list[OutageResult] = field(default_factory=list)
    sweep: list[CrashPoint] = field(default_factory=list)
    sweep_writes: int | None = None
    takeover: TakeoverResult | None = None
    concurrency: ConcurrencyResult | None = None


def _pct(rate: float) -> str:
    return f"{rate * 100:g} %"


def highest_rate(cells: list[FaultCell]) -> tuple[float | None, str]:
    """The highest fault rate (above 0) at which every seed finished in one invocation, with
    every lower rate also passing; and how each rate fared."""
    rates = sorted({c.rate for c in cells if c.rate > 0})
    notes = []
    best, passing = None, True
    for rate in rates:
        at = [c for c in cells if c.rate == rate]
        ok = sum(c.finished for c in at)
        notes.append(f"{_pct(rate)}: {ok}/{len(at)}")
        passing = passing and ok == len(at)   # a rate counts only when every lower rate passed too
        if passing:
            best = rate
    return best, ", ".join(notes)


def wall_ratio(cells: list[FaultCell], rate: float = 0.05) -> tuple[float | None, str]:
    base = [c.wall for c in cells if c.rate == 0 and c.finished]
    faulty = [c.wall for c in cells if c.rate == rate and c.finished]
    at = [c for c in cells if c.rate == rate]
    if not base:
        return None, "no fault-free run finished"
    if not faulty:
        return None, f"0/{len(at)} runs finished at {_pct(rate)} (fault-free: {mean(base):.1f} s)"
    note = f"{mean(faulty):.1f} s vs {mean(base):.1f} s"
    if len(faulty) < len(at):
        note += f" (only {len(faulty)}/{len(at)} finished at {_pct(rate)})"
    return mean(faulty) / mean(base), note


def summary(r: Results) -> list[tuple[str, str, str, str]]:
    """(check, result, target, met) rows."""
    rows: list[tuple[str, str, str, str]] = []
    if r.cells:
        best, notes = highest_rate(r.cells)
        rows.append(("highest fault rate, every seed done in one invocation",
                     f"{_pct(best) if best else 'none'} ({notes})", "10 %",
                     _met(best is not None and best >= 0.1)))
        ratio, note = wall_ratio(r.cells)
        rows.append(("wall time at 5 % faults vs none, fast pace (6 nodes in seconds)",
                     f"{f'{ratio:.2f}x' if ratio else 'n/a'} ({note})", "(shown, not a target)", INFO))
    if r.timing:
        ratio, note = wall_ratio(r.timing)
        rows.append(("wall time at 5 % faults vs none, a real cluster's pace",
                     f"{f'{ratio:.2f}x' if ratio else 'n/a'} ({note})", "<= 1.3x",
                     _met(ratio is not None and ratio <= 1.3)))
    for o in r.outages:
        result = "done in one invocation" if o.finished else \
            (f"exit {o.code}" + (f", {len(o.problems)} invariants broken" if o.problems else "")
             if o.began else "the run ended before the outage")
        rows.append((f"API server unavailable {o.seconds:g} s ({o.mode}) mid-run",
                     f"{result}, {o.wall:.0f} s", "done in one invocation", _met(o.finished)))
    if r.sweep:
        ok = sum(p.converged for p in r.sweep)
        reached = sum(p.reached for p in r.sweep)
        rows.append(("crash sweep: SIGKILL after the k-th write, then resume",
                     f"{ok}/{len(r.sweep)} converged ({reached} points reached"
                     f"{f', of {r.sweep_writes} writes' if r.sweep_writes else ''})", "100 %",
                     _met(ok == len(r.sweep))))
    if r.takeover is not None:
        t = r.takeover
        if not t.taken_over:
            result = "no takeover happened"
        else:
            result = (f"first executed {len(t.executed_after)} writes after the takeover "
                      f"({t.attempted_after} attempted), exited {t.first_code}"
                      f"{' naming the new holder' if t.first_named_holder else ''}; second exited {t.second_code}"
                      f"{f', {len(t.problems)} invariants broken' if t.problems else ''}")
        rows.append(("--force-takeover while the first run is alive", result, "first writes nothing",
                     _met(t.passed)))
    if r.concurrency is not None:
        c = r.concurrency
        rows.append((f"{len(c.codes)} concurrent runs",
                     f"{c.proceeded} proceeded, {c.refused_naming_holder} exit 3 naming the holder "
                     f"(exit codes {','.join(map(str, c.codes))})"
                     f"{f', {len(c.problems)} invariants broken' if c.problems else ''}",
                     f"1 proceeds, {len(c.codes) - 1} exit 3", _met(c.passed)))
    return rows


INFO = "-"   # a row shown for context, with no target of its own


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def all_met(rows: list[tuple[str, str, str, str]]) -> bool:
    return all(row[3] in ("yes", INFO) for row in rows)


def markdown(header: tuple[str, ...], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=False)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def fault_table(cells: list[FaultCell]) -> str:
    rows = [(_pct(c.rate), c.pace, str(c.seed), str(c.nodes), str(c.code), f"{c.wall:.1f}", str(c.injected),
             str(c.requests), "hold" if not c.problems else f"{len(c.problems)} broken: {c.problems[0]}",
             "" if c.code == 0 else c.last_words[:120])
            for c in sorted(cells, key=lambda c: (c.pace, c.rate, c.seed))]
    return markdown(("faults", "pace", "seed", "nodes", "exit", "wall s", "injected", "requests", "invariants",
                     "last words"), rows)


def sweep_failures(points: list[CrashPoint]) -> str:
    bad = [p for p in points if not p.converged]
    rows = [(str(p.k), p.killed_at, str(p.resume_code), p.problems[0] if p.problems else "", p.last_words[:120])
            for p in bad]
    return markdown(("k", "killed after", "resume exit", "first broken invariant", "last words"), rows)
