"""``retry_node``: an operator sends a node that ended without migrating back for a fresh attempt.

A node rolled back (automatically after a failed gate, or by ``migrator rollback --node``) or
skipped (drain blocked with ``on_pdb_blocked: skip``, an abort, or deleted from the cluster and
since joined again) is terminal for the forward run: ``resume`` would never start it again and
finalize refuses while it is not ``DONE``. ``migrator retry --node N``, once the cause is fixed,
applies this change to the checkpoint (compare-and-swap, like ``pause``): the node goes back to
``PENDING`` along ``table.RETRY_EDGES``, its error and gate outcome are cleared, its attempt
counter is kept (the next start increments it, so ``status`` shows it is a second attempt) and
the request is audited on the node and the run (who, when). A run that had finished its nodes
(``NODES_DONE``) goes back to ``MIGRATING``. ``migrator resume`` then starts the node like any
other pending node, recording its prior state afresh.

A ``FAILED`` node is not retried: it may still be cordoned and half switched, so it is rolled
back first (``migrator rollback --node``), then retried.
"""

from __future__ import annotations

from datetime import datetime

from migrator.engine.table import RETRY_EDGES, check_node_move, check_run_move
from migrator.model.checkpoint import Checkpoint, truncate_error, utc
from migrator.model.states import NodePhase, RunPhase

AUDIT_KEPT = 20
#: Run phases in which a node can be sent back (the run still migrates nodes, or just finished).
RETRY_RUN_PHASES = (RunPhase.PREFLIGHT, RunPhase.PREPARED, RunPhase.MIGRATING, RunPhase.PAUSED,
                    RunPhase.NODES_DONE)


class RetryRefused(ValueError):
    """The node cannot be sent back now; the message says why and what to do."""


def retry_refusal(cp: Checkpoint, name: str) -> str | None:
    """Why ``name`` cannot be retried in the run ``cp`` (None when it can)."""
    record = cp.node(name)
    if record is None:
        shown = ", ".join(cp.order[:10]) + (" …" if len(cp.order) > 10 else "")
        return f"{name} is not part of run {cp.run_id} (its nodes: {shown})"
    if cp.canary is not None:
        return "this is a canary run: `migrator canary` starts a new one"
    if cp.rollback is not None:
        return f"an on-call rollback by {cp.rollback.by} is in progress; let it finish, then retry"
    if cp.run_phase not in RETRY_RUN_PHASES:
        return (f"the run is {cp.run_phase.value}: nodes are migrated again only by a new run "
                "(`migrator run` after the state ConfigMap is removed)")
    if record.phase is NodePhase.FAILED:
        return (f"{name} is FAILED and may still be cordoned or half switched: roll it back first "
                f"(`migrator rollback --node {name}`), then retry it")
    if record.phase not in RETRY_EDGES:
        return f"{name} is {record.phase.value}: only a ROLLED_BACK or SKIPPED node is retried"
    return None


def retry_node(cp: Checkpoint, name: str, by: str, now: datetime, reason: str = "") -> Checkpoint:
    """``cp`` with ``name`` back to PENDING for a fresh attempt (raises ``RetryRefused``)."""
    refusal = retry_refusal(cp, name)
    if refusal is not None:
        raise RetryRefused(refusal)
    when = utc(now)
    record = cp.by_name[name]
    check_node_move(record.phase, NodePhase.PENDING)
    note = truncate_error(f"{when.isoformat(timespec='seconds')} retry by {by} after {record.phase.value} "
                          f"(attempt {record.attempt})"
                          + (f": {record.last_error or record.rollback_reason}"
                             if record.last_error or record.rollback_reason else "")
                          + (f"; fixed: {reason}" if reason else ""))
    fresh = record.model_copy(update={
        "phase": NodePhase.PENDING, "phase_started_at": when, "intent": None, "last_error": None,
        "probes": None, "audit": (*record.audit, note)[-AUDIT_KEPT:]})
    changes: dict[str, object] = {"audit": (*cp.audit, f"{name}: {note}")[-AUDIT_KEPT:]}
    if cp.run_phase is RunPhase.NODES_DONE:
        check_run_move(cp.run_phase, RunPhase.MIGRATING)
        changes.update(run_phase=RunPhase.MIGRATING, run_phase_started_at=when)
    return cp.with_nodes({name: fresh}, **changes)
