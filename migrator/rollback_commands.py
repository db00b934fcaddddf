"""``migrator rollback``, ``migrator retry`` and ``migrator canary``: wiring only.

``rollback`` records the request in the checkpoint first (compare-and-swap), so a live forward
run sees it at its next step boundary and stands aside; then it waits for the Lease (a dead or
hung run's lease goes stale after its duration; ``--force-takeover`` takes it at once, audited)
and drives the recorded rollback (``engine.oncall``) to the end. With ``--all --from-cluster``
and an unreadable checkpoint, the rollback is rebuilt from the cluster's own state
(``engine.recover``) after the unreadable ConfigMap is kept as a copy. ``retry`` sends a rolled-back
or skipped node back to PENDING in the checkpoint (``engine.retry``, audited) for ``resume``.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from migrator.cluster.store import CheckpointStore, CheckpointUnreadable, Versions
from migrator.commands import (
    EXIT_HELP,
    _common,
    _confirm,
    _connect,
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
from migrator.engine.recover import cordoned_nodes, from_cluster, switched_nodes
from migrator.engine.retry import RetryRefused, retry_node, retry_refusal
from migrator.model.checkpoint import Checkpoint, RollbackRequest, truncate_error
from migrator.model.identity import plan_changes, same_run
from migrator.model.plan import MIGRATION_LABEL, STEER_TAINT, MigrationPlan
from migrator.model.states import RunPhase
from migrator.observe import Observer
from migrator.runner import Exit

LOCK_MARGIN = 15.0  # seconds beyond the lease duration a rollback waits for the Lease
SHOWN = 10          # node names listed in a line


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
    p.add_argument("--from-cluster", action="store_true",
                   help="with --all, when the checkpoint is unreadable: keep a copy of it, rebuild the rollback from "
                        "the cluster's own state (migration labels, pods on Cilium, placement taints, the "
                        "CiliumNodeConfig) and roll everything back; cordons are left as they are")
    p.set_defaults(func=cmd_rollback)
    text = "migrate the plan's canary nodes, soak under probes, then keep or roll back by policy"
    p = sub.add_parser("canary", help=text, description=f"{text}. Exit 0: canary passed (kept or rehearsed); "
                                                        f"1: canary failed and was rolled back. {EXIT_HELP}.")
    _common(p)
    _mutating(p)
    skip_check_option(p)
    p.set_defaults(func=cmd_canary)
    text = "send a rolled-back or skipped node back for a fresh attempt, once the cause is fixed"
    p = sub.add_parser("retry", help=text, description=f"{text}; `migrator resume` then migrates it. The request is "
                                                       f"recorded in the checkpoint (who, when). {EXIT_HELP}.")
    _common(p)
    p.add_argument("--node", action="append", required=True, metavar="NAME", help="node to retry (repeatable)")
    p.add_argument("--reason", default="", help="what was fixed (recorded in the audit)")
    p.set_defaults(func=cmd_retry)


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
    if args.from_cluster and not args.all:
        print("error: --from-cluster rebuilds a rollback of every node; use it with --all", file=sys.stderr)
        return Exit.INVALID
    store = CheckpointStore(_connect(args), namespace=plan.state.configmap_namespace, name=plan.state.configmap_name)
    try:
        cp, rv = store.load()
    except CheckpointUnreadable as exc:
        if args.from_cluster:
            return _from_cluster(args, plan, store)
        store.port.close()
        print(f"error: {exc}. To roll back from the cluster's own state instead: `migrator rollback --all "
              "--from-cluster` (runbooks/rollback-all.md)", file=sys.stderr)
        return Exit.HALTED
    if args.from_cluster and cp is None:   # the journal was deleted: the cluster's state is all there is
        return _from_cluster(args, plan, store)
    try:
        if args.from_cluster:
            print(f"error: --from-cluster is for an unreadable checkpoint, and {store.where} is readable: use "
                  "`migrator rollback --all`, which knows exactly what the run did", file=sys.stderr)
            return Exit.INVALID
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
        if cp.handover is not None and cp.handover.state != "undone":
            print("error: rollback refused: the routing hand-over has begun, so Cilium announces the nodes' routes; "
                  "undo it first with `migrator handover --rollback --plan PLAN --yes` (runbooks/handover.md)",
                  file=sys.stderr)
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


def _from_cluster(args: argparse.Namespace, plan: MigrationPlan, store: CheckpointStore) -> int:
    """``rollback --all --from-cluster``: keep the unreadable checkpoint as a copy, write a rollback
    checkpoint rebuilt from observation (``engine.recover``) in its place (compare-and-swap
    against the copied version), then drive it like any ``rollback --all``."""
    port = store.port
    try:
        snapshot = port.read_configmap(store.namespace, store.name)
        obs = Observer(plan, port).observe(None, finalizing=True)
        if plan.finalize.remove_calico and not obs.calico_objects:
            print(f"error: rollback refused: none of the plan's Calico objects exist. If finalize ran, "
                  f"{NOT_AFTER_FINALIZE}", file=sys.stderr)
            return Exit.HALTED
        switched = switched_nodes(plan, obs)
        cordoned = cordoned_nodes(obs)
        tainted = [n.name for n in obs.nodes if any(t.key == STEER_TAINT for t in n.taints)]
        check = (f"; cordoned now, left cordoned (the cluster does not record whose cordon it is — uncordon by hand "
                 f"those the migrator cordoned): {_few(cordoned)}" if cordoned else "")
        if not switched and not tainted and obs.node_config is None:
            print(f"nothing to roll back: no node carries {MIGRATION_LABEL}=true, a pod on Cilium's pod CIDR or the "
                  f"placement taint, and no CiliumNodeConfig exists; {store.where} stays as it is" + check)
            return Exit.DONE
        print(f"from the cluster's state: {len(switched)} node(s) on Cilium ({_few(switched) or 'none'}), "
              f"{len(tainted)} with the placement taint" + check, file=sys.stderr)
        if not _confirm(args, "migrator rollback --all --from-cluster"):
            return Exit.INVALID
        now = datetime.now(UTC)
        by = who()
        kept = f"{store.name}-unreadable-{now:%Y%m%d%H%M%S}"
        if snapshot is not None:   # the run ConfigMap and its node shards, each under the kept name
            for part in [snapshot, *port.list_configmaps(store.namespace, store.shard_selector)]:
                port.create_configmap(store.namespace, kept + part.name[len(store.name):], dict(part.data),
                                      labels={"app.kubernetes.io/managed-by": "migrator",
                                              "app.kubernetes.io/component": "unreadable-checkpoint"})
        fresh = from_cluster(plan, obs, uuid.uuid4().hex[:12], now, by,
                             truncate_error(f"{args.reason} (rebuilt from the cluster's state)")[:120],
                             f"configmap {store.namespace}/{kept}" if snapshot is not None else "nothing (none existed)")
        store.save(fresh, Versions(snapshot.resource_version) if snapshot is not None else None)
    finally:
        port.close()
    print(f"rollback rebuilt from the cluster's state and recorded in {store.where}"
          + (f"; the unreadable checkpoint is kept as configmap {store.namespace}/{kept}" if snapshot else "")
          + "; waiting for the run lock", file=sys.stderr)
    wait = plan.state.lease_duration.total_seconds() + LOCK_MARGIN
    outcome = _runner(args, plan).run("rollback", lock_wait=wait)
    if cordoned and outcome.code == Exit.DONE:
        outcome.message += (f"; left cordoned as found (check whose cordon it is): {_few(cordoned)}")
    return _finish(outcome)


def _few(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


@guarded
def cmd_retry(args: argparse.Namespace) -> int:
    """Record ``retry_node`` for each ``--node`` (compare-and-swap); exit 2 naming the first that is
    refused, with nothing written."""
    plan = _setup(args)
    store, cp, rv = _load_state(args, plan)
    names = tuple(dict.fromkeys(args.node))
    try:
        if cp is None:
            print(f"error: no migration state in {store.where}; nothing to retry", file=sys.stderr)
            return Exit.INVALID
        if not same_run(cp, plan):
            print(f"error: retry refused: {' '.join(plan_changes(cp, plan).lines())}; use the plan that "
                  "started the run (tuning may differ)", file=sys.stderr)
            return Exit.INVALID
        present = {n.name for n in store.port.list_nodes()}
        for name in names:
            refusal = retry_refusal(cp, name) or (None if name in present else
                                                  f"{name} is not in the cluster (kubectl get nodes); retry it once "
                                                  "it has joined again")
            if refusal is not None:
                print(f"error: retry refused: {refusal}", file=sys.stderr)
                return Exit.INVALID
        by, now, reason = who(), datetime.now(UTC), truncate_error(args.reason)[:120]

        def change(current: Checkpoint) -> Checkpoint:
            for name in names:
                current = retry_node(current, name, by, now, reason)
            return current

        try:
            cp = store.update(change, cp, rv, attempts=5)
        except RetryRefused as exc:   # the checkpoint changed under us (a live run moved on)
            print(f"error: retry refused: {exc}", file=sys.stderr)
            return Exit.INVALID
    finally:
        store.port.close()
    print(f"retry recorded for {', '.join(names)} (PENDING again, by {by}); run `migrator resume` to migrate "
          f"{'it' if len(names) == 1 else 'them'} (run {cp.run_id} is {cp.run_phase.value})")
    return Exit.DONE


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
