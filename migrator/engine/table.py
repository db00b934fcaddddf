"""The frozen transition tables of nodes and runs, checked when this module is imported.

``engine.decide`` moves a record only along these edges (``check_node_move`` /
``check_run_move``); ``validate_table`` proves at import that each table has exactly one
initial state, that terminal states have no exits and that every state can reach a terminal.
``render_markdown`` produces ``runbooks/state-table.md`` (``python -m migrator.engine.table``);
a test keeps the committed copy current.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable, Iterable, Mapping
from enum import Enum
from types import MappingProxyType
from typing import TypeVar

from migrator.model.states import NodePhase, RunPhase

S = TypeVar("S", bound=Enum)
K = TypeVar("K", bound=Hashable)
N = NodePhase
R = RunPhase


class TransitionError(RuntimeError):
    """A move that the table does not allow (a bug in the engine, never an input error)."""


ROLLBACK_ASKED = "rollback requested (automatic after a failed gate, or on call)"
GONE_WHEN = "node deleted from the cluster (last_error says so; nothing left to undo)"

#: Node edges with the condition that takes each one.
NODE_EDGES: Mapping[NodePhase, Mapping[NodePhase, str]] = MappingProxyType({
    N.PENDING: {N.CORDONED: "node observed unschedulable after our cordon",
                N.LABELED: "placement in-place: migration label observed (the node is neither cordoned nor "
                           "drained; no pod a drain would refuse is on it)",
                N.SKIPPED: "abort before the cordon was observed (prior state restored), or the node was "
                           "deleted from the cluster (last_error says so)",
                N.ROLLING_BACK: ROLLBACK_ASKED},
    N.CORDONED: {N.DRAINED: "no evictable pod left on the node",
                 N.SKIPPED: "drain blocked past the deadline with on_pdb_blocked=skip, or abort "
                            "(prior state restored); or " + GONE_WHEN,
                 N.ROLLING_BACK: ROLLBACK_ASKED},
    N.DRAINED: {N.LABELED: "migration label observed on the node",
                N.SKIPPED: GONE_WHEN,
                N.ROLLING_BACK: ROLLBACK_ASKED},
    N.LABELED: {N.AGENT_RESTARTED: "a new agent pod (not the recorded uid) is Ready",
                N.FAILED: "agent restart deadline passed",
                N.SKIPPED: GONE_WHEN,
                N.ROLLING_BACK: ROLLBACK_ASKED},
    N.AGENT_RESTARTED: {N.CNI_VERIFIED: "verification pod Running with an IP in the Cilium CIDR",
                        N.FAILED: "verification pod got a non-Cilium IP or the deadline passed",
                        N.SKIPPED: GONE_WHEN,
                        N.ROLLING_BACK: ROLLBACK_ASKED},
    N.CNI_VERIFIED: {N.PODS_RECYCLED: "every pod on the node has a Cilium IP, replacements Ready",
                     N.FAILED: "recycle deadline passed",
                     N.SKIPPED: GONE_WHEN,
                     N.ROLLING_BACK: ROLLBACK_ASKED},
    N.PODS_RECYCLED: {N.PROBED: "every connectivity check passed from the node's probe pods",
                      N.ROLLING_BACK: "a check still failed at the gate's deadline (rollback.automatic), "
                                      "or " + ROLLBACK_ASKED,
                      N.FAILED: "a check still failed at the deadline and rollback.automatic is false",
                      N.SKIPPED: GONE_WHEN},
    N.PROBED: {N.UNCORDONED: "node observed schedulable (or it was cordoned before us)",
               N.SKIPPED: GONE_WHEN,
               N.ROLLING_BACK: ROLLBACK_ASKED},
    N.UNCORDONED: {N.DONE: "always (bookkeeping)"},
    N.ROLLING_BACK: {N.ROLLED_BACK: "node back on Calico, probes pass, prior state restored",
                     N.FAILED: "a rollback stage failed or the rollback deadline passed",
                     N.SKIPPED: GONE_WHEN},
    N.DONE: {}, N.SKIPPED: {}, N.FAILED: {}, N.ROLLED_BACK: {},
})

#: Moves out of a forward-terminal phase: only an on-call rollback takes them.
ROLLBACK_EDGES: Mapping[NodePhase, Mapping[NodePhase, str]] = MappingProxyType({
    N.DONE: {N.ROLLING_BACK: "on-call rollback of a migrated node"},
    N.FAILED: {N.ROLLING_BACK: "on-call rollback of a failed node (or a retry of a failed rollback)"},
})

#: Moves back to the start: only an operator's `migrator retry --node` takes them (engine.retry).
RETRY_EDGES: Mapping[NodePhase, Mapping[NodePhase, str]] = MappingProxyType({
    N.ROLLED_BACK: {N.PENDING: "`migrator retry --node` once the cause is fixed (audited; attempt kept)"},
    N.SKIPPED: {N.PENDING: "`migrator retry --node` once the cause is fixed, or the node joined again "
                           "(audited; attempt kept)"},
})

#: Run edges with the condition that takes each one.
RUN_EDGES: Mapping[RunPhase, Mapping[RunPhase, str]] = MappingProxyType({
    R.PREFLIGHT: {R.PREPARED: "no blocking preflight finding (or its check skipped), then the "
                              "CiliumNodeConfig observed with the guide's spec",
                  R.ABORTED: "abort requested; or a canary's preflight found a blocking problem",
                  R.ROLLING_BACK: "rollback --all requested"},
    R.PREPARED: {R.MIGRATING: "probe fleet Ready (or probes disabled)", R.ABORTED: "abort requested",
                 R.ROLLING_BACK: "rollback --all requested"},
    R.MIGRATING: {R.NODES_DONE: "every node terminal", R.PAUSED: "pause requested, no node in flight",
                  R.ABORTED: "abort requested, no node in flight",
                  R.ROLLING_BACK: "rollback --all requested"},
    R.PAUSED: {R.MIGRATING: "resumed", R.ABORTED: "abort requested",
               R.ROLLING_BACK: "rollback --all requested"},
    R.NODES_DONE: {R.FINALIZING: "finalize started (every node DONE, none in the cluster left on Calico)",
                   R.MIGRATING: "`migrator retry --node` sent a node back for a fresh attempt",
                   R.SOAKING: "canary: soak started",
                   R.ROLLING_BACK: "rollback --all requested"},
    R.SOAKING: {R.NODES_DONE: "canary: soak passed and canary.on_success is keep",
                R.ROLLING_BACK: "canary: a sample failed during the soak, or canary.on_success is rollback; "
                                "or rollback --all requested"},
    R.ROLLING_BACK: {R.ROLLED_BACK: "every node back on Calico, CiliumNodeConfig and probe fleet removed"},
    R.FINALIZING: {R.FINALIZED: "every finalize step done"},
    R.FINALIZED: {}, R.ABORTED: {}, R.ROLLED_BACK: {},
})

NODE_INITIAL = N.PENDING
RUN_INITIAL = R.PREFLIGHT


def reaching(ends: Iterable[K], successors: Mapping[K, Iterable[K]]) -> set[K]:
    """Every key from which some path through ``successors`` arrives at one of ``ends``."""
    reaches = set(ends)
    changed = True
    while changed:
        changed = False
        for key, following in successors.items():
            if key not in reaches and any(t in reaches for t in following):
                reaches.add(key)
                changed = True
    return reaches


def validate_table(edges: Mapping[S, Mapping[S, str]], initial: S, terminals: frozenset[S]) -> None:
    """Raise ``TransitionError`` unless the table is well formed."""
    states = set(type(initial))
    if set(edges) != states:
        raise TransitionError(f"table lists {sorted(s.name for s in set(edges) ^ states)} wrongly")
    targets = {t for exits in edges.values() for t in exits}
    unreachable = [s for s in states if s not in targets and s is not initial]
    if initial in targets:
        raise TransitionError(f"initial state {initial.name} has incoming edges")
    if unreachable:
        raise TransitionError(f"states {sorted(s.name for s in unreachable)} are unreachable")
    for state in terminals:
        if edges[state]:
            raise TransitionError(f"terminal state {state.name} has exits")
    for state in states - terminals:
        if not edges[state]:
            raise TransitionError(f"non-terminal state {state.name} has no exit")
    reaches = reaching(terminals, {state: list(exits) for state, exits in edges.items()})
    stuck = states - reaches
    if stuck:
        raise TransitionError(f"states {sorted(s.name for s in stuck)} cannot reach a terminal")


NODE_TERMINALS = frozenset(s for s, exits in NODE_EDGES.items() if not exits)
RUN_TERMINALS = frozenset(s for s, exits in RUN_EDGES.items() if not exits)
validate_table(NODE_EDGES, NODE_INITIAL, NODE_TERMINALS)
validate_table(RUN_EDGES, RUN_INITIAL, RUN_TERMINALS)


for _source, _exits in ROLLBACK_EDGES.items():
    if _source not in NODE_TERMINALS or any(t is not N.ROLLING_BACK for t in _exits):
        raise TransitionError(f"rollback edges may only lead from a terminal phase to ROLLING_BACK ({_source.name})")


for _source, _exits in RETRY_EDGES.items():
    if _source not in NODE_TERMINALS or any(t is not NODE_INITIAL for t in _exits):
        raise TransitionError(f"retry edges may only lead from a terminal phase to {NODE_INITIAL.name} "
                              f"({_source.name})")


def check_node_move(source: NodePhase, target: NodePhase) -> None:
    """Raise ``TransitionError`` when no table has an edge ``source → target``."""
    if target not in NODE_EDGES[source] and target not in ROLLBACK_EDGES.get(source, {}) \
            and target not in RETRY_EDGES.get(source, {}):
        raise TransitionError(f"node move {source.name} → {target.name} is not in the table")


def check_run_move(source: RunPhase, target: RunPhase) -> None:
    """Raise ``TransitionError`` when the run table has no edge ``source → target``."""
    if target not in RUN_EDGES[source]:
        raise TransitionError(f"run move {source.name} → {target.name} is not in the table")


def _section(title: str, edges: Mapping[S, Mapping[S, str]], initial: S) -> list[str]:
    lines = [f"## {title}", "", f"Initial: `{initial.name}`. Terminal: "
             + ", ".join(f"`{s.name}`" for s, exits in edges.items() if not exits) + ".", "",
             "| From | To | When |", "|---|---|---|"]
    for source, exits in edges.items():
        for target, when in exits.items():
            lines.append(f"| `{source.name}` | `{target.name}` | {when} |")
    return lines + [""]


def render_markdown() -> str:
    """The state tables as Markdown (the content of ``runbooks/state-table.md``)."""
    lines = ["# State tables", "",
             "Generated by `python -m migrator.engine.table` from `migrator/engine/table.py`; "
             "do not edit by hand.", "",
             "A phase names the last step that is done. The step towards the next phase is the "
             "intent recorded in the checkpoint before any action runs, so after a crash the "
             "engine observes and decides again instead of replaying.", ""]
    lines += _section("Node phases", NODE_EDGES, NODE_INITIAL)
    lines += ["### Leaving a terminal phase", "", "Only an on-call `migrator rollback` takes these.", "",
              "| From | To | When |", "|---|---|---|"]
    for source, exits in ROLLBACK_EDGES.items():
        for target, when in exits.items():
            lines.append(f"| `{source.name}` | `{target.name}` | {when} |")
    lines += ["", "### Back to the start", "", "Only an operator's `migrator retry --node` takes these "
              "(a `FAILED` node is rolled back first).", "", "| From | To | When |", "|---|---|---|"]
    for source, exits in RETRY_EDGES.items():
        for target, when in exits.items():
            lines.append(f"| `{source.name}` | `{target.name}` | {when} |")
    lines += [""]
    lines += _section("Run phases", RUN_EDGES, RUN_INITIAL)
    lines += _step_tables()
    return "\n".join(lines)


def _step_tables() -> list[str]:
    """The sub-machines' rows (imported here: they build on this module's moves)."""
    from migrator.engine.canary import SOAK
    from migrator.engine.finalize import FINALIZE
    from migrator.engine.handover import BACK as HANDOVER_BACK
    from migrator.engine.handover import FORWARD as HANDOVER
    from migrator.engine.node_rows import FORWARD
    from migrator.engine.rollback import ROLLBACK
    from migrator.engine.rows import render

    lines = ["## Steps", "",
             "Each phase's work is a row run by one interpreter (`migrator/engine/rows.py`): it moves on "
             "when the row's observation shows the step done, sends the row's actions (again only after "
             "20 s without effect), and takes the failure or timeout way out when one applies. Deadlines "
             "count from the phase's start, so they survive restarts.", ""]
    lines += render("Node steps", "The step recorded in a node's intent; `blocked` halts the run or skips the "
                    "node (`drain.on_pdb_blocked`), `gate-failed` rolls the node back (`rollback.automatic`) "
                    "or fails it.", FORWARD)
    lines += render("Rollback stages", "`ROLLING_BACK` works through these stages, recorded in the node's "
                    "intent; a node never switched (its rollback began before `LABELED`) skips all but "
                    "`unlabel` and `restore`. A failure or the timeout leaves the node `FAILED` and cordoned.",
                    ROLLBACK, "`ROLLING_BACK`")
    lines += render("Finalize steps", "`FINALIZING` works through these steps, recorded in the checkpoint's "
                    "`finalize`; `halt` stops the run until `migrator resume`.", FINALIZE, "`FINALIZING`")
    lines += render("Hand-over steps", "`migrator handover` (plan `routing.handover`, run at `NODES_DONE`, before "
                    "finalize) runs one row per step of the ordered list `engine/handover_steps.py` derives, the "
                    "step in flight recorded in the checkpoint's `handover`; `next` moves to the following step, "
                    "`halt` stops until `migrator handover` runs again.", HANDOVER, "`NODES_DONE`")
    lines += render("Hand-over rollback", "`migrator handover --rollback` undoes the steps done, newest first, "
                    "from the step in flight; a patched object is given back what it carries in its "
                    "`migrator.io/handover-undo` annotation (written with the first patch), then the annotation "
                    "is dropped.", HANDOVER_BACK, "`NODES_DONE`")
    lines += render("Canary soak", "After every canary node is `DONE`, the run soaks; `passed` keeps the nodes "
                    "(`canary.on_success: keep`, back to `NODES_DONE`) or rolls them back as a rehearsal, "
                    "`failed` rolls every canary node back and the canary exits 1.", SOAK)
    return lines


if __name__ == "__main__":  # pragma: no cover - exercised through the golden-file test
    sys.stdout.write(render_markdown())
