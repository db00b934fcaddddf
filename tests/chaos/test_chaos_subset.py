"""The chaos suite's seeded fast subset (``make chaos`` runs the whole of it).

One seed at 5 % API faults on 4 nodes, finished in one invocation; a 10 s outage answered 503
mid-run, waited out; SIGKILL after three of the runner's writes spread over a 4-node run, then
resume; ``--force-takeover`` of a live run, after which the first writes nothing; five
concurrent runs, of which one proceeds. Every scenario is judged by the one invariant checker
of ``chaos.invariants``, which is shown first not to pass an unmigrated cluster.
"""

from __future__ import annotations

from chaos import crashes, faults, lease
from chaos.__main__ import spread
from chaos.harness import start_sim
from chaos.invariants import baseline, check

SEED = 1


def test_the_invariant_checker_fails_an_unmigrated_cluster():
    sim = start_sim(3, SEED)
    try:
        problems = check(sim, baseline(sim), settle=5)
    finally:
        sim.stop()
    assert "node node-1 not labelled io.cilium.migration/cilium-default=true" in problems
    assert any(p.startswith("node node-1: agent cilium-") and p.endswith("restarted 0 times") for p in problems)
    assert any("not Cilium's 10.245.0.0/16" in p for p in problems)
    assert "no checkpoint" in problems


def test_a_run_at_5_percent_api_faults_finishes_in_one_invocation():
    cell = faults.fault_cell(0.05, SEED, nodes=4)
    assert cell.injected > 0
    assert cell.code == 0, f"exit {cell.code} after {cell.injected} faults: {cell.last_words}"
    assert cell.problems == []


def test_a_run_waits_out_a_10s_outage_answered_503():
    result = faults.outage(SEED, nodes=4, seconds=10, mode="503", after_writes=40)
    assert result.began
    assert result.code == 0, f"exit {result.code}: {result.last_words}"
    assert result.problems == []


def test_sigkill_after_three_spread_writes_then_resume_converges():
    total = crashes.reference(SEED, nodes=4)
    ks = spread(total, 5)[1:4]                    # a quarter, half and three quarters through
    points = crashes.sweep(SEED, ks, nodes=4)
    assert [p.k for p in points] == ks
    for point in points:
        assert point.reached, f"k={point.k} of {total} writes was not reached"
        assert point.converged, f"k={point.k} ({point.killed_at}): resume exit {point.resume_code}, " \
                                f"{point.problems[:3]}, {point.last_words}"


def test_after_a_forced_takeover_the_first_run_writes_nothing():
    result = lease.takeover(SEED, nodes=4)
    assert result.taken_over, "the second process never took the lease from a live first run"
    assert result.executed_after == [], f"the first executed {len(result.executed_after)} writes after the takeover"
    assert result.second_code == 0, result.last_words
    assert result.problems == []


def test_five_concurrent_runs_one_proceeds_four_exit_3_naming_it():
    result = lease.concurrent_runs(SEED, nodes=4, count=5)
    assert sorted(result.codes) == [0, 3, 3, 3, 3], result.last_words
    assert result.refused_naming_holder == 4, result.last_words
    assert result.loser_writes == []
    assert result.problems == []
