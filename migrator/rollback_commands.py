"""``migrator rollback`` and ``migrator canary``: wiring only.

``rollback`` records the request in the checkpoint first (compare-and-swap), so a live forward
run sees it at its next step boundary and stands aside; then it waits for the Lease (a dead or
hung run's lease goes stale after its duration; ``--force-takeover`` takes it at once, audited)
and drives the recorded rollback (``engine.oncall``) to the end.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from migrator.commands import (
    EXIT_HELP,
    _common,
    _confirm,
    _finish,
    _load_state,
    _mutating,
    _runner,
    _setup,
    guarded,
    skip_check_option,
    skipped,
    who,
)
from migrator.engine.oncall import NOT_AFTER_FINALIZE, nothing_to_undo
from migrator.model.checkpoint import Checkpoint, RollbackRequest, truncate_error
from migrator.model.identity import plan_changes, same_run
from migrator.model.states import RunPhase
from migrator.runner import Exit

LOCK_MARGIN = 15.0  # seconds beyond the lease duration a rollback waits for the Lease


def register(sub: Any) -> None:
    text = "put nodes (or the whole cluster) back on Calico; works while a run is alive, hung or dead"
    p = sub.add_parser("rollback", help=text, description=f"{text}. {EXIT_HELP}.")
    _common(p)
    _mutating(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--node", action="append", default=[], metavar="NAME",
                       help="node to roll back (repeat for several)")
    which.add_argument("--all", action="store_true",
                       help="every node, then delete the CiliumNodeConfig and the probe fleet")
    p.add_argument("--reason", default="on-call rollback", help="why (recorded on each node and in Events)")
    p.set_defaults(func=cmd_rollback)
    text = "migrate the plan's canary nodes, soak under probes, then keep or roll back by policy"
    p = sub.add_parser("canary", help=text, description=f"{text}. Exit 0: canary passed (kept or rehearsed); "
                                                        f"1: canary failed and was rolled back. {EXIT_HELP}.")
    _common(p)
    _mutating(p)
    skip_check_option(p)
    p.set_defaults(func=cmd_canary)


def _merge(cp: Checkpoint, request: RollbackRequest) -> RollbackRequest:
    """A new request joins one already recorded (a rollback that died half-way is continued)."""
    old = cp.rollback
    if old is None:
        return request
    return old.model_copy(update={"all": old.all or request.all,
                                  "nodes": tuple(dict.fromkeys(old.nodes + request.nodes)),
                                  "swept": False})


@guarded
def cmd_rollback(args: argparse.Namespace) -> int:
    plan = _setup(args)
    store, cp, rv = _load_state(args, plan)
    try:
        if cp is None:
            print(f"nothing to roll back: no migration state in {store.where}")
            return Exit.DONE
        if not same_run(cp, plan):  # refused before the request is recorded, not after
            print(f"error: rollback refused: {' '.join(plan_changes(cp, plan).lines())}; use the plan that "
                  "started the run (tuning may differ)", file=sys.stderr)
            return Exit.INVALID
        if cp.run_phase in (RunPhase.FINALIZING, RunPhase.FINALIZED):
            print(f"error: rollback refused: {NOT_AFTER_FINALIZE}", file=sys.stderr)
            return Exit.HALTED
        unknown = [n for n in args.node if cp.node(n) is None]
        if unknown:
            print(f"error: {', '.join(unknown)} not part of run {cp.run_id} (its nodes: "
                  f"{', '.join(cp.order[:10])}{' …' if len(cp.order) > 10 else ''})", file=sys.stderr)
            return Exit.INVALID
        now = datetime.now(UTC)
        request = RollbackRequest(nodes=tuple(dict.fromkeys(args.node)), all=args.all, requested_at=now,
                                  by=who(), reason=truncate_error(args.reason)[:120])
        if args.all and cp.run_phase is RunPhase.ROLLED_BACK:
            print("nothing to roll back: the run was already rolled back completely")
            return Exit.DONE
        idle = [] if args.all else nothing_to_undo(cp, request)
        if idle and cp.rollback is None:
            print(f"nothing to roll back: {'; '.join(idle)}")
            return Exit.DONE
        if not _confirm(args, "migrator rollback"):
            return Exit.INVALID
        audit = truncate_error(f"{now.isoformat(timespec='seconds')} rollback "
                               f"{'--all' if args.all else ' '.join(args.node)} by {request.by}: {request.reason}")
        store.update(lambda current: current.model_copy(update={
            "rollback": _merge(current, request), "audit": (*current.audit, audit)[-20:]}), cp, rv)
    finally:
        store.port.close()
    print(f"rollback recorded in {store.where}; waiting for the run lock "
          f"(a live run stands aside at its next step boundary)", file=sys.stderr)
    wait = plan.state.lease_duration.total_seconds() + LOCK_MARGIN
    outcome = _runner(args, plan).run("rollback", lock_wait=wait)
    if outcome.code == Exit.LOCKED:
        outcome.message += ("; the request stays recorded and the holder will stand aside when it reaches a step "
                            "boundary. If that run is hung, re-run with --force-takeover (audited)")
    return _finish(outcome)


@guarded
def cmd_canary(args: argparse.Namespace) -> int:
    plan = _setup(args)
    if plan.canary is None:
        print(f"error: invalid plan {args.plan}: canary: required by `migrator canary`; add a canary section "
              "(see plans/canary.yaml)", file=sys.stderr)
        return Exit.INVALID
    if skipped(args) is None or not _confirm(args, "migrator canary"):
        return Exit.INVALID
    runner = _runner(args, plan)
    return _finish(runner.run("canary"), runner)
