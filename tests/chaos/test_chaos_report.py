"""The chaos table: which rows carry a target, and how the wall-time ratio is computed."""

from __future__ import annotations

from chaos.faults import FaultCell, Pace
from chaos.report import Results, all_met, fault_table, summary


def cell(rate: float, seed: int, wall: float, pace: Pace = "fast", code: int = 0) -> FaultCell:
    return FaultCell(rate=rate, seed=seed, nodes=6, code=code, wall=wall, injected=0, requests=0, writes=0,
                     pace=pace)


def rows_by_check(results: Results) -> dict[str, tuple[str, str, str, str]]:
    return {row[0]: row for row in summary(results)}


def test_the_wall_ratio_target_is_judged_at_a_real_clusters_pace_and_the_fast_ratio_is_shown():
    fast = [cell(0.0, 1, 3.0), cell(0.05, 1, 15.0), cell(0.1, 1, 20.0)]
    timing = [cell(0.0, 1, 100.0, "real"), cell(0.05, 1, 110.0, "real"),
              cell(0.0, 2, 100.0, "real"), cell(0.05, 2, 120.0, "real")]
    rows = rows_by_check(Results(cells=fast, timing=timing))
    real = rows["wall time at 5 % faults vs none, a real cluster's pace"]
    assert real[1].startswith("1.15x (115.0 s vs 100.0 s)") and real[3] == "yes"
    shown = rows["wall time at 5 % faults vs none, fast pace (6 nodes in seconds)"]
    assert shown[1].startswith("5.00x") and shown[3] == "-"
    assert all_met(list(rows.values()))
    assert "| real |" in fault_table(fast + timing)


def test_a_slow_faulty_run_at_real_pace_misses_the_target_and_a_failed_one_is_not_averaged_in():
    timing = [cell(0.0, 1, 100.0, "real"), cell(0.05, 1, 140.0, "real"), cell(0.05, 2, 101.0, "real", code=1)]
    rows = rows_by_check(Results(timing=timing))
    real = rows["wall time at 5 % faults vs none, a real cluster's pace"]
    assert real[1].startswith("1.40x") and "only 1/2 finished" in real[1] and real[3] == "NO"
    assert not all_met(list(rows.values()))
