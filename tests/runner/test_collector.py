"""While a run loop turns, the garbage collector's young generation waits for
``collector.YOUNG`` net allocations (far fewer full collections, each of which stops every
thread); the thresholds the process had are back once the run ends, however it ends."""

from __future__ import annotations

import gc

import pytest

from migrator import runner as runner_module
from migrator.cluster.kube import KubeCluster
from migrator.collector import YOUNG, fewer_collections
from migrator.model.plan import load_plan
from migrator.runner import Exit, Runner
from tests.runner.helpers import fast_plan


@pytest.fixture
def thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_the_block_raises_the_young_threshold_and_restores_it(thresholds) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("the loop failed")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_of_the_process_is_kept(thresholds) -> None:
    gc.set_threshold(2 * YOUNG, 5, 5)
    with fewer_collections():
        assert gc.get_threshold() == (2 * YOUNG, 5, 5)
    assert gc.get_threshold() == (2 * YOUNG, 5, 5)


def test_a_run_decides_under_the_raised_threshold(sim, kubeconfig, tmp_path, thresholds,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: set[int] = set()
    decide = runner_module.decide

    def recorded(*args, **kwargs):
        seen.add(gc.get_threshold()[0])
        return decide(*args, **kwargs)

    monkeypatch.setattr(runner_module, "decide", recorded)
    plan = load_plan(fast_plan(tmp_path))
    outcome = Runner(plan, KubeCluster.from_kubeconfig(str(kubeconfig)), output_dir=tmp_path).run()
    assert outcome.code == Exit.DONE, outcome.message
    assert seen == {YOUNG}
    assert gc.get_threshold() == (700, 10, 10)
