"""The executor: results in the order of the actions, one node's actions in order, nodes side by side."""

from __future__ import annotations

import threading
import time

from migrator.cluster import errors as E
from migrator.engine import actions as A
from migrator.execute import Executor


class SlowPort:
    """Records each call per node and how many calls were in flight at once."""

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = {}
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def _call(self, node: str, what: str) -> bool:
        with self._lock:
            self.calls.setdefault(node, []).append(what)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        if node == "node-3" and what.startswith("label"):
            raise E.Conflict("the node changed meanwhile")
        return True

    def cordon_node(self, node: str) -> bool:
        return self._call(node, "cordon")

    def set_node_label(self, node: str, key: str, value: str | None) -> bool:
        return self._call(node, f"label {key}={value}")


def test_nodes_run_side_by_side_while_each_nodes_actions_keep_their_order() -> None:
    port = SlowPort()
    actions: list[A.Action] = []
    for i in range(1, 5):
        actions += [A.Cordon(node=f"node-{i}"), A.LabelNode(node=f"node-{i}", key="k", value=str(i))]
    results = Executor(port).run(actions)  # type: ignore[arg-type]
    assert [r.action for r in results] == actions
    assert [r.ok for r in results] == [True, True, True, True, True, False, True, True]
    assert results[5].error_kind == "Conflict"
    assert all(calls == ["cordon", f"label k={node[-1]}"] for node, calls in port.calls.items())
    assert len(port.calls) == 4 and port.most >= 2


def test_a_single_node_runs_in_order_on_the_calling_thread() -> None:
    port = SlowPort()
    actions = [A.Cordon(node="node-1"), A.LabelNode(node="node-1", key="k", value="v")]
    results = Executor(port).run(actions)  # type: ignore[arg-type]
    assert [r.ok for r in results] == [True, True] and port.most == 1
    assert port.calls == {"node-1": ["cordon", "label k=v"]}
