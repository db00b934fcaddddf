"""Indexes over the cluster's nodes (by name, the placement taint, the sorted names) derived
from the previous observation by the nodes that changed equal those built from scratch."""

from __future__ import annotations

import random

import pytest

from migrator.engine.placement import EFFECT, _tainted
from migrator.engine.probes import _node_names
from migrator.model.observation import ClusterObservation, Delta, NodeFacts, Taint
from migrator.model.plan import STEER_TAINT

STEER = Taint(key=STEER_TAINT, effect=EFFECT)
OTHER = Taint(key="example.com/other", effect="NoSchedule")


def observe(nodes: tuple[NodeFacts, ...], previous: ClusterObservation | None = None,
            delta: Delta | None = None) -> ClusterObservation:
    obs = ClusterObservation().model_copy(update={"nodes": nodes})   # the very tuple, as the Observer
    if previous is not None and delta is not None:
        obs.follow(previous, {id(delta.before): delta})
    return obs


def indexes(obs: ClusterObservation) -> tuple[object, ...]:
    return obs.node_by_name, _tainted(obs), _node_names(obs)


@pytest.mark.parametrize("seed", range(5))
def test_node_indexes_derived_by_changes_equal_a_fresh_build(seed: int) -> None:
    rng = random.Random(seed)
    facts = {f"node-{i}": NodeFacts(name=f"node-{i}", taints=(STEER,) if i % 2 else ()) for i in range(20)}
    current = tuple(facts.values())
    obs = observe(current)
    indexes(obs)
    for _ in range(60):
        removed, added = [], []
        for name in rng.sample(sorted(facts), rng.randint(0, 3)):
            old = facts.pop(name)
            removed.append(old)
            if rng.random() < 0.1:
                continue                                  # the node left the cluster
            new = old.model_copy(update={"taints": rng.choice([(), (STEER,), (OTHER,), (OTHER, STEER)]),
                                         "unschedulable": rng.random() < 0.5})
            facts[name] = new
            added.append(new)
        if rng.random() < 0.1:                            # a node joins
            new = NodeFacts(name=f"node-{rng.randint(20, 99)}", taints=(STEER,))
            if new.name not in facts:
                facts[new.name] = new
                added.append(new)
        before, current = current, tuple(facts.values())
        nxt = observe(current, obs, Delta(before, current, tuple(removed), tuple(added)))
        assert indexes(nxt) == indexes(observe(current))
        obs = nxt
