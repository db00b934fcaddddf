"""The transition tables are well formed and the committed runbook copy is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.engine.table import (
    NODE_EDGES,
    NODE_INITIAL,
    RUN_EDGES,
    TransitionError,
    check_node_move,
    render_markdown,
    validate_table,
)
from migrator.model.states import NodePhase, RunPhase

ROOT = Path(__file__).resolve().parents[2]


def test_tables_pass_their_own_validation() -> None:
    validate_table(NODE_EDGES, NODE_INITIAL, frozenset(s for s in NodePhase if s.terminal))
    assert set(RUN_EDGES) == set(RunPhase)


def test_terminals_have_no_exits_and_forward_path_is_allowed() -> None:
    for phase in NodePhase:
        assert (not NODE_EDGES[phase]) == phase.terminal
    path = [NodePhase.PENDING, NodePhase.CORDONED, NodePhase.DRAINED, NodePhase.LABELED,
            NodePhase.AGENT_RESTARTED, NodePhase.CNI_VERIFIED, NodePhase.PODS_RECYCLED, NodePhase.PROBED,
            NodePhase.UNCORDONED, NodePhase.DONE]
    for source, target in zip(path, path[1:], strict=False):
        check_node_move(source, target)
    with pytest.raises(TransitionError):
        check_node_move(NodePhase.DONE, NodePhase.PENDING)
    with pytest.raises(TransitionError):
        check_node_move(NodePhase.CORDONED, NodePhase.LABELED)


def test_validation_rejects_broken_tables() -> None:
    terminals = frozenset(s for s in NodePhase if s.terminal)
    looping = {**NODE_EDGES, NodePhase.UNCORDONED: {NodePhase.PROBED: "loop"},
               NodePhase.PROBED: {NodePhase.UNCORDONED: "loop"},
               NodePhase.PENDING: {**NODE_EDGES[NodePhase.PENDING], NodePhase.DONE: "shortcut"}}
    with pytest.raises(TransitionError, match="cannot reach a terminal"):
        validate_table(looping, NODE_INITIAL, terminals)
    exits = {**NODE_EDGES, NodePhase.DONE: {NodePhase.PENDING: "again"}}
    with pytest.raises(TransitionError):
        validate_table(exits, NODE_INITIAL, terminals)
    missing = {k: v for k, v in NODE_EDGES.items() if k is not NodePhase.SKIPPED}
    with pytest.raises(TransitionError, match="wrongly"):
        validate_table(missing, NODE_INITIAL, terminals)


def test_runbook_state_table_is_current() -> None:
    committed = (ROOT / "runbooks" / "state-table.md").read_text()
    assert committed == render_markdown(), "regenerate: python -m migrator.engine.table > runbooks/state-table.md"
