"""The phases of a node and of a run.

A phase names the last step that is *done* (``CORDONED`` = the node is cordoned); the work
towards the next phase is described by the intent recorded in the node's checkpoint record.
The allowed moves between phases live in ``migrator.engine.table``.
"""

from __future__ import annotations

from enum import StrEnum


class NodePhase(StrEnum):
    """Where one node stands in its migration."""

    PENDING = "PENDING"
    CORDONED = "CORDONED"
    DRAINED = "DRAINED"
    LABELED = "LABELED"
    AGENT_RESTARTED = "AGENT_RESTARTED"
    CNI_VERIFIED = "CNI_VERIFIED"
    PODS_RECYCLED = "PODS_RECYCLED"
    PROBED = "PROBED"
    UNCORDONED = "UNCORDONED"
    DONE = "DONE"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"

    @property
    def terminal(self) -> bool:
        """No step follows this phase in a forward run."""
        return self in TERMINAL_NODE_PHASES


TERMINAL_NODE_PHASES = frozenset({NodePhase.DONE, NodePhase.SKIPPED, NodePhase.FAILED,
                                  NodePhase.ROLLED_BACK})

#: The forward path, in order.
FORWARD_PATH: tuple[NodePhase, ...] = (
    NodePhase.PENDING, NodePhase.CORDONED, NodePhase.DRAINED, NodePhase.LABELED,
    NodePhase.AGENT_RESTARTED, NodePhase.CNI_VERIFIED, NodePhase.PODS_RECYCLED,
    NodePhase.PROBED, NodePhase.UNCORDONED, NodePhase.DONE,
)


class RunPhase(StrEnum):
    """Where the whole run stands."""

    PREFLIGHT = "PREFLIGHT"
    PREPARED = "PREPARED"
    MIGRATING = "MIGRATING"
    PAUSED = "PAUSED"
    NODES_DONE = "NODES_DONE"
    SOAKING = "SOAKING"
    ROLLING_BACK = "ROLLING_BACK"
    ROLLED_BACK = "ROLLED_BACK"
    FINALIZING = "FINALIZING"
    FINALIZED = "FINALIZED"
    ABORTED = "ABORTED"

    @property
    def terminal(self) -> bool:
        """The run has ended; nothing more is decided."""
        return self in (RunPhase.FINALIZED, RunPhase.ABORTED, RunPhase.ROLLED_BACK)
