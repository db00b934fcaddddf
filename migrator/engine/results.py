"""``record_results(checkpoint, results, now, backoff) -> Checkpoint``: fold action outcomes back in.

The engine moves phases only on what it *observes*; results matter for what cannot be
observed: a refused eviction (back off until ``not_before`` — the server's Retry-After, else
the plan's ``drain.retry_interval`` — remember when PDBs started
blocking, forget the uid so the pod is tried again), a failed write (clear ``sent_at`` so the
step is re-sent at once, keep the error for humans; an API error — ``Unavailable``,
``Throttled`` — is an unknown outcome, re-sent after the back-off and never recorded as the
node's error), and the answers of probe rounds (a check the API server did not relay is
``unknown``: neither passed nor failed, dialled again after the interval). "Already
gone" and "already exists" count as
success: every action is idempotent. Event failures are not journaled (they are logged).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from migrator.engine.actions import (
    ActionResult,
    DeletePod,
    EmitEvent,
    EnsureNodeConfig,
    EvictPod,
    RunProbes,
)
from migrator.engine.policy_probe import fold_baseline, fold_table
from migrator.engine.probes import pair_nodes, unknown
from migrator.model.checkpoint import Checkpoint, NodeRecord, truncate_error, utc
from migrator.model.states import RunPhase

DEFAULT_BACKOFF = timedelta(seconds=5)
HARMLESS = frozenset({"NotFound", "AlreadyExists"})
#: The API server could not answer: the outcome is unknown, not a failure of the node or the
#: step. The action is sent again after a back-off unless the next observation shows its effect.
API_ERRORS = frozenset({"Unavailable", "Throttled"})


def _fold_node(record: NodeRecord, result: ActionResult, now: datetime, backoff: timedelta) -> NodeRecord:
    intent = record.intent
    message = truncate_error(f"{result.action.kind}: {result.error_kind}: {result.message}")
    if intent is None:
        return record.model_copy(update={"last_error": message})
    changes: dict[str, object] = {}
    action = result.action
    if isinstance(action, (EvictPod, DeletePod)):
        changes["pods"] = tuple(uid for uid in intent.pods if uid != action.uid)
        if isinstance(action, DeletePod) and action.reason == "agent-restart":
            changes["sent_at"] = None
    else:
        changes["sent_at"] = None
    if result.error_kind in ("Throttled", "DisruptionBudgetBlocked", "Unavailable"):
        delay = timedelta(seconds=result.retry_after) if result.retry_after else backoff
        changes["not_before"] = now + delay
    if result.error_kind == "DisruptionBudgetBlocked" and intent.blocked_since is None:
        changes["blocked_since"] = now
    if result.error_kind in API_ERRORS:  # unknown outcome: try again, the node did nothing wrong
        return record.model_copy(update={"intent": intent.model_copy(update=changes)})
    return record.model_copy(update={"intent": intent.model_copy(update=changes),
                                     "last_error": message})


def _fold_run(cp: Checkpoint, result: ActionResult) -> Checkpoint:
    """A failed run-level action: re-send its step at once, keep the error for humans."""
    action = result.action
    progress = cp.finalize
    if result.error_kind in API_ERRORS:  # unknown outcome: re-send, but it is no error of the run
        if isinstance(action, EnsureNodeConfig):
            return cp.model_copy(update={"prepare_sent_at": None})
        if progress is not None:
            return cp.model_copy(update={"finalize": progress.model_copy(update={"sent_at": None})})
        return cp
    message = truncate_error(f"{action.kind}: {result.error_kind}: {result.message}")
    if isinstance(action, EnsureNodeConfig):
        return cp.model_copy(update={"prepare_sent_at": None, "last_error": message})
    if progress is not None:
        progress = progress.model_copy(update={"sent_at": None, "last_error": message})
        return cp.model_copy(update={"finalize": progress, "last_error": message})
    return cp.model_copy(update={"last_error": message})


SAMPLE_FAILURES_KEPT = 10


def _fold_gate(record: NodeRecord, result: ActionResult) -> NodeRecord:
    """Checks that passed join ``intent.passed``; the others' last failure is kept. An unknown
    outcome (the API server did not relay the answer) never replaces a genuine failure."""
    intent = record.intent
    if intent is None or (intent.step != "probe" and intent.stage != "probe"):
        return record  # the gate moved on meanwhile
    ok = [name for name, outcome in result.detail.items() if outcome.startswith("ok")]
    failures = {**intent.failures, **{n: truncate_error(o)[:120] for n, o in result.detail.items()
                                      if not o.startswith("ok") and not unknown(o)}}
    for name, outcome in result.detail.items():
        if unknown(outcome) and (name not in failures or unknown(failures[name])):
            failures[name] = truncate_error(outcome)[:120]
    for name in ok:
        failures.pop(name, None)
    return record.model_copy(update={"intent": intent.model_copy(update={
        "passed": tuple(dict.fromkeys(intent.passed + tuple(ok))), "failures": failures})})


def _fold_sample(cp: Checkpoint, result: ActionResult, gone: frozenset[str]) -> Checkpoint:
    """Failures between two nodes that are not in flight pause the run (or fail a canary soak).
    A pair with a node deleted from the cluster (``gone``) says nothing about the network; a pair
    the API server did not relay is neither, and a round with such a pair does not count as
    answered (a rollback's sweep passes only on a round answered whole)."""
    if not any(unknown(outcome) for outcome in result.detail.values()):
        cp = cp.model_copy(update={"sampling": cp.sampling.model_copy(update={"answered": cp.sampling.rounds})})
    busy = cp.census.in_flight | gone
    bad = [f"{name} {outcome}" for name, outcome in sorted(result.detail.items())
           if not outcome.startswith("ok") and not unknown(outcome) and not set(pair_nodes(name)) & busy]
    if not bad:
        return cp
    kept = tuple(truncate_error(b)[:160] for b in bad)[:SAMPLE_FAILURES_KEPT]
    cp = cp.model_copy(update={"sampling": cp.sampling.model_copy(update={"failures": kept})})
    if cp.run_phase in (RunPhase.SOAKING, RunPhase.ROLLING_BACK) or cp.rollback is not None:
        return cp
    message = truncate_error(f"paused, no node is rolled back: {len(bad)} sampled pod-to-pod pair(s) failed "
                             f"between nodes not being migrated: {'; '.join(kept[:2])}")
    requested = cp.requested or "pause"
    return cp.model_copy(update={"requested": requested, "last_error": message})


def record_results(checkpoint: Checkpoint, results: Iterable[ActionResult], now: datetime,
                   backoff: timedelta = DEFAULT_BACKOFF, gone: frozenset[str] = frozenset()) -> Checkpoint:
    """The checkpoint with the outcomes of executed actions folded in (pure).

    ``backoff`` is how long a refused request waits when the server names no Retry-After
    (the runner passes the plan's ``drain.retry_interval``); ``gone`` names the nodes deleted
    from the cluster since (their sampled pairs are not evidence)."""
    now = utc(now)
    cp = checkpoint
    updates: dict[str, NodeRecord] = {}
    for result in results:
        action = result.action
        if isinstance(action, EmitEvent):
            continue
        if isinstance(action, RunProbes):
            if action.purpose == "policy":
                progress = cp.finalize
                if progress is not None and progress.step == "policy-table" and progress.policy_table is not None:
                    cp = cp.model_copy(update={"finalize": progress.model_copy(update={
                        "policy_table": fold_table(progress.policy_table, result.detail)})})
                elif progress is None and cp.policy_baseline is not None:
                    cp = cp.model_copy(update={"policy_baseline": fold_baseline(cp.policy_baseline, result.detail)})
            elif action.purpose == "sample":
                cp = _fold_sample(cp.with_nodes(updates), result, gone)
                updates = {}
            elif action.node is not None and cp.node(action.node) is not None:
                updates[action.node] = _fold_gate(updates.get(action.node) or cp.by_name[action.node], result)
            continue
        failed = not result.ok and result.error_kind not in HARMLESS
        finalizing = cp.finalize is not None
        if not finalizing and action.node is not None and cp.node(action.node) is not None:
            if failed:
                current = updates.get(action.node) or cp.by_name[action.node]
                updates[action.node] = _fold_node(current, result, now, backoff)
            continue
        if failed:
            cp = _fold_run(cp, result)
    return cp.with_nodes(updates)
