"""Drive ``decide`` against the toy cluster the way the runner does (persist, act, fold)."""

from __future__ import annotations

from datetime import datetime, timedelta

from migrator.engine.decide import Decision, decide, new_checkpoint
from migrator.engine.results import record_results
from migrator.model.checkpoint import Checkpoint, from_configmap_data, to_configmap_data
from migrator.model.plan import MigrationPlan, parse_plan
from tests.engine.toy import T0, ToyCluster

BASE_PLAN = {"api_version": "migrator.io/v1", "kind": "MigrationPlan", "name": "test",
             "cilium": {"pod_cidr": "10.245.0.0/16"},
             "probes": {"enabled": False},  # the toy has no network: probes are tested on the sim
             "placement": {"strategy": "drain"}}  # nor taints: steering is tested on the sim


def make_plan(**sections: object) -> MigrationPlan:
    """A valid plan with some sections replaced."""
    return parse_plan({**BASE_PLAN, **sections})


def start(plan: MigrationPlan, toy: ToyCluster, now: datetime = T0) -> Checkpoint:
    return new_checkpoint(plan, toy.observe(), "run-1", now)


def iterate(plan: MigrationPlan, toy: ToyCluster, cp: Checkpoint, now: datetime,
            execute: bool = True) -> tuple[Checkpoint, Decision]:
    """One loop iteration; the checkpoint goes through the ConfigMap encoding like in a run."""
    decision = decide(plan, cp, toy.observe(), now)
    cp = from_configmap_data(to_configmap_data(decision.checkpoint))
    if execute:
        results = [toy.apply(a) for a in decision.actions]
        cp = record_results(cp, results, now, plan.drain.retry_interval)
        toy.settle()
    return cp, decision


def run(plan: MigrationPlan, toy: ToyCluster, cp: Checkpoint, now: datetime = T0,
        limit: int = 400, tick: timedelta = timedelta(seconds=1)) -> tuple[Checkpoint, datetime]:
    """Iterate until the decision says nothing more will happen."""
    for _ in range(limit):
        cp, decision = iterate(plan, toy, cp, now)
        if decision.finished:
            return cp, now
        now += tick
    raise AssertionError(f"run did not finish: {decision.reason}")
