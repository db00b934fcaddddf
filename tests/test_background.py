"""The background worker the decision loop hands slow work to (the gap report of a node about to
switch): the asker gets None while the work runs, then the result; the reader runs on the asker's
thread once per key; a failure reaches the asker once and the next ask submits the work again."""

from __future__ import annotations

import threading
import time

import pytest

from migrator.background import Background


def wait_for(bg: Background[int], key: str, job, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = bg.result(key, job)
        if found is not None:
            return found
        time.sleep(0.001)
    raise AssertionError("the result never came")


def test_the_asker_gets_none_while_the_work_runs_then_the_result_and_reads_once():
    release = threading.Event()
    reads: list[str] = []

    def job():
        reads.append(threading.current_thread().name)
        return lambda: (release.wait(5), 41 + 1)[1]

    bg: Background[int] = Background("test-worker")
    assert bg.result("node-1", job) is None
    assert bg.result("node-1", job) is None          # still running: not submitted again
    release.set()
    assert wait_for(bg, "node-1", job) == 42
    assert bg.result("node-1", job) == 42            # kept
    assert reads == [threading.current_thread().name]   # the reader ran once, on the asker's thread


def test_jobs_run_one_at_a_time_in_submission_order():
    order: list[str] = []
    gate = threading.Event()

    def job(name: str):
        def work() -> int:
            if name == "a":
                gate.wait(5)
            order.append(name)
            return len(order)
        return lambda: work

    bg: Background[int] = Background("test-worker")
    assert bg.result("a", job("a")) is None and bg.result("b", job("b")) is None
    time.sleep(0.05)
    assert order == []                                # b waits behind a
    gate.set()
    assert wait_for(bg, "b", job("b")) == 2 and wait_for(bg, "a", job("a")) == 1


def test_a_failure_reaches_the_asker_once_and_the_next_ask_runs_it_again():
    attempts: list[int] = []

    def job():
        def work() -> int:
            attempts.append(1)
            if len(attempts) == 1:
                raise ValueError("policy gnp/x cannot be read")
            return 7
        return work

    bg: Background[int] = Background("test-worker")
    deadline = time.monotonic() + 5
    with pytest.raises(ValueError, match="cannot be read"):
        while time.monotonic() < deadline:
            bg.result("node-1", job)
            time.sleep(0.001)
    assert wait_for(bg, "node-1", job) == 7 and len(attempts) == 2
