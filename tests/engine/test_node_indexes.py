"""Indexes over the cluster's nodes (by name, the placement taint, the sorted names) derived
from the previous observation by the nodes that changed equal those built from scratch."""

from __future__ import annotations

import random

import pytest

from migrator.engine.placement import EFFECT, _tainted
from migrator.engine.probes import _node_names
from migrator.model.observation import (
    KEPT_OBSERVATIONS,
    ClusterObservation,
    Delta,
    NodeFacts,
    Taint,
    _renamed,
)
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


def _changed(facts: dict[str, NodeFacts], before: tuple[NodeFacts, ...], rng: random.Random) -> Delta:
    """Change, remove or add a few nodes of ``facts`` in place; the delta from ``before`` (their
    tuple) to the one after."""
    removed, added = [], []
    for name in rng.sample(sorted(facts), rng.randint(0, 3)):
        old = facts.pop(name)
        removed.append(old)
        if rng.random() < 0.15:
            continue                                      # the node left the cluster
        new = old.model_copy(update={"taints": rng.choice([(), (STEER,), (OTHER,), (OTHER, STEER)]),
                                     "unschedulable": rng.random() < 0.5})
        facts[name] = new
        added.append(new)
    if rng.random() < 0.2:                                # a node joins (it may leave again before asked)
        new = NodeFacts(name=f"node-{rng.randint(20, 99)}", taints=(STEER,))
        if new.name not in facts:
            facts[new.name] = new
            added.append(new)
    return Delta(before, tuple(facts.values()), tuple(removed), tuple(added))


@pytest.mark.parametrize("seed", range(5))
def test_node_indexes_derived_by_changes_equal_a_fresh_build(seed: int) -> None:
    rng = random.Random(seed)
    facts = {f"node-{i}": NodeFacts(name=f"node-{i}", taints=(STEER,) if i % 2 else ()) for i in range(20)}
    current = tuple(facts.values())
    obs = observe(current)
    indexes(obs)
    for _ in range(60):
        delta = _changed(facts, current, rng)
        current = delta.after
        nxt = observe(current, obs, delta)
        assert indexes(nxt) == indexes(observe(current))
        obs = nxt


def _asked(obs: ClusterObservation, built: list[str]) -> dict[str, NodeFacts]:
    def build() -> dict[str, NodeFacts]:
        built.append("built")
        return {n.name: n for n in obs.nodes}
    index: dict[str, NodeFacts] = obs.indexed("nodes", obs.nodes, build, _renamed)
    return index


@pytest.mark.parametrize("skipped", [1, 5, KEPT_OBSERVATIONS - 1])
def test_an_index_not_asked_for_some_turns_is_derived_by_every_change_since(skipped: int) -> None:
    """A turn with no node at the step that reads an index does not ask for it; the next turn
    that does derives it from the last observation that had it, by each delta since."""
    rng = random.Random(skipped)
    facts = {f"node-{i}": NodeFacts(name=f"node-{i}") for i in range(30)}
    obs = observe(tuple(facts.values()))
    built: list[str] = []
    _asked(obs, built)
    for _ in range(4):
        for _ in range(skipped):
            delta = _changed(facts, obs.nodes, rng)
            obs = observe(delta.after, obs, delta)
        delta = _changed(facts, obs.nodes, rng)
        obs = observe(delta.after, obs, delta)
        assert _asked(obs, built) == {n.name: n for n in facts.values()}
    assert built == ["built"]   # the first observation's only


def test_an_index_is_built_afresh_past_the_kept_observations_or_after_a_whole_read() -> None:
    rng = random.Random(7)
    facts = {f"node-{i}": NodeFacts(name=f"node-{i}") for i in range(30)}
    obs = observe(tuple(facts.values()))
    built: list[str] = []
    _asked(obs, built)
    for _ in range(KEPT_OBSERVATIONS + 1):   # too long ago: no observation kept has it
        delta = _changed(facts, obs.nodes, rng)
        obs = observe(delta.after, obs, delta)
    assert _asked(obs, built) == {n.name: n for n in facts.values()} and built == ["built"] * 2
    delta = _changed(facts, obs.nodes, rng)
    obs = observe(delta.after, obs, delta)
    whole = tuple(NodeFacts(name=n.name, unschedulable=not n.unschedulable) for n in facts.values())
    obs = observe(whole, obs, None)   # the cache read whole: a new tuple, no delta leads to it
    nxt = observe(whole, obs, Delta(whole, whole, (), ()))
    assert _asked(nxt, built) == {n.name: n for n in whole} and built == ["built"] * 3
