"""The migration commands: preflight, plan, run, status, resume, pause, abort, finalize, handover, manifests
(rollback and canary live in ``rollback_commands``).

Wiring only: parse flags, load the plan (exit 2 on any problem, before touching the cluster),
connect, call preflight / the forecast / the runner, render, and return the documented exit
code — 0 done, 1 halted or blocking findings, 2 invalid input, 3 locked by another run.
"""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from migrator import log as logsetup
from migrator import manifests_cli
from migrator.cluster.errors import ClusterError
from migrator.cluster.guard import GuardedPort
from migrator.cluster.kube import KubeCluster
from migrator.cluster.store import CheckpointStore, Versions
from migrator.engine.decide import pod_scope, request
from migrator.engine.forecast import forecast
from migrator.engine.handover import handover_forecast
from migrator.engine.preflight_gate import blocking
from migrator.engine.routing import detect as detect_routing
from migrator.metrics import Metrics
from migrator.model.checkpoint import Checkpoint
from migrator.model.identity import plan_changes, same_run
from migrator.model.plan import MigrationPlan, PlanError, load_plan
from migrator.model.states import RunPhase
from migrator.observe import Observer
from migrator.preflight import CHECK_IDS, has_blocking, run_preflight, unknown_checks
from migrator.progress import Progress
from migrator.runner import Exit, Runner
from migrator.status import LockView, render_status
from migrator.target import Target, explain, read_target

EXIT_HELP = "exit codes: 0 done, 1 halted or blocking findings, 2 invalid input, 3 locked by another run"


class UsageError(Exception):
    """A flag that cannot work (a port out of range, an output directory that cannot be written): exit 2."""


N = TypeVar("N", int, float)


def _ranged(text: str, parse: Callable[[str], N], low: N, high: N, noun: str, out_of_range: str) -> N:
    """An argparse value of ``parse`` within ``low``..``high``, refused in one line naming what to pass."""
    try:
        value = parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}; pass {low:g}-{high:g}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is out of range; pass {out_of_range}")
    return value


def port_number(text: str) -> int:
    """``--metrics-port``: a TCP port, 1 to 65535."""
    return _ranged(text, int, 1, 65535, "a port number", "a port from 1 to 65535")


def linger_seconds(text: str) -> float:
    """``--metrics-linger``: seconds, 0 to 3600."""
    return _ranged(text, float, 0.0, 3600.0, "a number of seconds", "0 to 3600 seconds")


def _common(p: argparse.ArgumentParser, *, plan: bool = True) -> None:
    if plan:
        p.add_argument("--plan", required=True, metavar="FILE", help="migration plan (YAML; see plans/)")
    p.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, "
                                                        "or the in-cluster service account)")
    p.add_argument("--context", metavar="NAME", help="kubeconfig context")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto",
                   help="log format on stderr (auto: console on a terminal, JSON lines otherwise)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")


def _mutating(p: argparse.ArgumentParser) -> None:
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--metrics-port", type=port_number, metavar="PORT",
                   help="serve Prometheus metrics on this port (1-65535)")
    p.add_argument("--metrics-linger", type=linger_seconds, default=0.0, metavar="SECONDS",
                   help="after the run stops, keep serving metrics this long so a scrape sees how it ended "
                        "(at least the scrape interval, in a Job's pod; default 0)")
    p.add_argument("--output-dir", type=Path, default=Path.cwd(), metavar="DIR",
                   help="where files such as the final Helm values are written (default: current directory)")
    p.add_argument("--force-takeover", action="store_true",
                   help="take the run lock even if its holder looks alive (audited; use when that run is hung)")


def skip_check_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-check", action="append", default=[], metavar="ID",
                   help="run past the blocking findings of this preflight check (repeatable; recorded and "
                        "audited in the checkpoint)")


def skipped(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The ``--skip-check`` IDs, or None (after saying so) when one names no check."""
    ids = tuple(dict.fromkeys(getattr(args, "skip_check", None) or ()))
    problem = _unknown_skips(ids)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return None
    return ids


def _unknown_skips(ids: tuple[str, ...]) -> str:
    unknown = unknown_checks(ids)
    return (f"--skip-check {', '.join(unknown)}: no such preflight check; known checks: {', '.join(CHECK_IDS)}"
            if unknown else "")


def who() -> str:
    """``user@host/pid`` of the person (or Job) asking."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}/{os.getpid()}"


def register(sub: Any) -> None:
    """Add the migration subcommands to the CLI."""
    specs = [
        ("preflight", "check the cluster against the plan before anything changes", cmd_preflight, False),
        ("plan", "dry-run forecast: waves, pods to evict, PDB blockers, duration (writes nothing)", cmd_plan, False),
        ("run", "start (or continue) the migration", cmd_run, True),
        ("resume", "continue a halted, paused or interrupted run", cmd_resume, True),
        ("finalize", "point of no return: final Cilium config, remove Calico (every node must be DONE)",
         cmd_finalize, True),
        ("handover", "hand routing and LoadBalancer IPs to Cilium's BGP control plane and LB IPAM, node by node "
                     "and Service by Service (routing.handover; after every node is DONE, before finalize)",
         cmd_handover, True),
    ]
    for name, text, fn, mutating in specs:
        p = sub.add_parser(name, help=text, description=f"{text}. {EXIT_HELP}.")
        _common(p)
        if mutating:
            _mutating(p)
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="same as `migrator plan`")
        if name in ("plan", "run", "resume"):
            skip_check_option(p)
        if name == "handover":
            p.add_argument("--rollback", action="store_true",
                           help="undo the hand-over's steps, newest first: MetalLB and Calico announce as before")
        p.set_defaults(func=fn)
    p = sub.add_parser("manifests", help="print what runs the tool in the cluster: a one-shot Job, a canary CronJob "
                                         "or a fleet rollout, with its least-privilege RBAC and the plan as a "
                                         "ConfigMap", description=f"{EXIT_HELP}.")
    manifests_cli.add_arguments(p)
    skip_check_option(p)
    p.set_defaults(func=cmd_manifests)
    p = sub.add_parser("status", help="show the run's state from its checkpoint")
    _common(p)
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=cmd_status)
    for name, text in (("pause", "ask the running migration to pause at the next step boundary"),
                       ("abort", "ask the running migration to stop starting nodes and end")):
        p = sub.add_parser(name, help=text)
        _common(p)
        p.set_defaults(func=cmd_request, request=name)
    from migrator.rollback_commands import register as register_rollback
    register_rollback(sub)


# ------------------------------------------------------------------ helpers
def _setup(args: argparse.Namespace) -> MigrationPlan:
    """Load the plan, check the ``--skip-check`` IDs, then read the kubeconfig far enough to name
    the server, context and user (each refused in one line, exit 2, before anything is sent)."""
    logsetup.configure(fmt=args.log_format, level=args.log_level)
    plan = load_plan(args.plan)
    problem = _unknown_skips(tuple(getattr(args, "skip_check", None) or ()))
    if problem:  # flags before the kubeconfig: both are input, the flags are the cheaper to fix
        raise UsageError(problem)
    args.target = read_target(args.kubeconfig, args.context)
    return plan


def _connect(args: argparse.Namespace, metrics: Metrics | None = None) -> GuardedPort:
    """The one port every command uses: HTTP, wrapped once for retries and lease fencing."""
    on_retry = (lambda _exc: metrics.retries.inc()) if metrics is not None else None
    return GuardedPort(KubeCluster.from_kubeconfig(args.kubeconfig, args.context), on_retry=on_retry)


def guarded(fn: Any) -> Any:
    """Map the errors every command shares to messages and exit codes."""
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except PlanError as exc:
            print(f"error: {plan_message(args.plan, exc)}", file=sys.stderr)
            return Exit.INVALID
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return Exit.INVALID
        except ClusterError as exc:
            text, code = explain(exc, getattr(args, "target", None))
            print(f"error: {text}", file=sys.stderr)
            return Exit(code)
    wrapper.__name__ = fn.__name__
    return wrapper


def plan_message(path: str, exc: PlanError) -> str:
    """The plan's error on one line, naming the file once."""
    text = " ".join(str(exc).split())
    return text if text.startswith("plan file ") else f"plan {path}: {text.removeprefix('invalid plan: ')}"


def check_output_paths(args: argparse.Namespace, plan: MigrationPlan) -> None:
    """Every file the run may write (finalize's Helm values, under ``--output-dir``) can be written:
    checked at start, so a bad directory is exit 2 before any cluster write, not a failure at finalize."""
    target = Path(args.output_dir) / plan.finalize.helm_values_path
    if target.is_dir():
        raise UsageError(f"--output-dir {args.output_dir}: finalize.helm_values_path {target} is a directory; "
                         "point finalize.helm_values_path or --output-dir at a file location")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"--output-dir {args.output_dir}: {ancestor} is not a directory, so {target} cannot be "
                         "written; pass a writable --output-dir")
    if not os.access(ancestor, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise UsageError(f"--output-dir {args.output_dir}: {target} cannot be written (no write permission on "
                         f"{target if target.exists() else ancestor}); pass a writable --output-dir")


def _confirm(args: argparse.Namespace, what: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        print(f"error: {what} changes the cluster; pass --yes to confirm (no terminal to ask on)", file=sys.stderr)
        return False
    answer = input(f"{what} will change the cluster. Continue? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


# ------------------------------------------------------------------ commands
@guarded
def cmd_preflight(args: argparse.Namespace) -> int:
    plan = _setup(args)
    port = _connect(args)
    try:
        findings = run_preflight(plan, port)
    finally:
        port.close()
    print(render_findings(findings))
    return Exit.HALTED if has_blocking(findings) else Exit.DONE


def render_findings(findings: Any, skipped: tuple[str, ...] = ()) -> str:
    """The findings table; a blocking finding of a skipped check shows as ``skipped``."""
    if not findings:
        return "preflight: no findings"
    order = {"blocking": 0, "skipped": 0, "warning": 1, "info": 2}

    def severity(f: Any) -> str:
        return "skipped" if str(f.severity) == "blocking" and f.check in skipped else str(f.severity)

    rows = sorted(findings, key=lambda f: (order.get(severity(f), 3), f.check))
    width = max(len(f.check) for f in rows)
    lines = [f"{'SEVERITY':9} {'CHECK':{width}}  FINDING"]
    for f in rows:
        lines.append(f"{severity(f):9} {f.check:{width}}  {f.message}")
        if f.fix_command:
            lines.append(f"{'':9} {'':{width}}  fix: {f.fix_command}")
    blocked = sum(1 for f in rows if severity(f) == "blocking")
    passed = sum(1 for f in rows if severity(f) == "skipped")
    lines.append(f"\n{blocked} blocking, " + (f"{passed} skipped (--skip-check), " if passed else "")
                 + f"{len(rows) - blocked - passed} other finding(s)")
    return "\n".join(lines)


@guarded
def cmd_plan(args: argparse.Namespace) -> int:
    plan = _setup(args)
    skips = skipped(args)
    if skips is None:
        return Exit.INVALID
    port = _connect(args)
    try:
        observer = Observer(plan, port)
        obs = observer.observe(None, preflight=True)
        if obs.policy is not None and not has_blocking([f for f in obs.findings or () if f.check.startswith("policy.")]):
            gaps = observer.policy_gaps(forecast(plan, obs).waves)
            obs = obs.model_copy(update={"policy": obs.policy.model_copy(update={"gaps": gaps})})
        inventory = port.read_routing_inventory()
        routing = detect_routing(inventory)
    finally:
        port.close()
    findings = obs.findings or ()
    print(render_findings(findings, skips) + "\n")
    fc = forecast(plan, obs, routing)
    if plan.routing.handover:
        fc = dataclasses.replace(fc, handover=handover_forecast(inventory, routing, [n.name for n in fc.nodes]))
    print(fc.render())
    return Exit.HALTED if fc.blocked or blocking(findings, skips) else Exit.DONE


def _runner(args: argparse.Namespace, plan: MigrationPlan) -> Runner:
    metrics = Metrics()
    if args.metrics_linger and not args.metrics_port:
        raise UsageError("--metrics-linger keeps serving metrics after the run: pass --metrics-port too")
    if args.metrics_port:
        try:
            metrics.serve(args.metrics_port, linger=args.metrics_linger)
        except OSError as exc:
            raise UsageError(f"--metrics-port {args.metrics_port}: cannot serve metrics there ({exc.strerror}); "
                             "pass a free port") from exc
    runner = Runner(plan, _connect(args, metrics), metrics=metrics, output_dir=args.output_dir,
                    progress=Progress.for_stream(sys.stderr), force_takeover=args.force_takeover,
                    operator=who(), skip_checks=tuple(getattr(args, "skip_check", None) or ()))
    runner.install_signal_handlers()
    return runner


def _finish(outcome: Any, runner: Runner | None = None) -> int:
    findings = runner.observer.findings if runner is not None and runner.observer is not None else None
    cp = outcome.checkpoint
    if findings and cp is not None and blocking(findings, [s.check for s in cp.skipped_checks]):
        print(render_findings(findings, tuple(s.check for s in cp.skipped_checks)) + "\n")  # the run halted on them
    stream = sys.stdout if outcome.code == Exit.DONE else sys.stderr
    print(outcome.message, file=stream)
    if outcome.checkpoint is not None and outcome.code != Exit.LOCKED:
        print(render_status(outcome.checkpoint, "summary"), file=stream)
    return int(outcome.code)


@guarded
def cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.force_takeover:
            print("error: --dry-run takes no lock and writes nothing; drop --force-takeover", file=sys.stderr)
            return Exit.INVALID
        return cmd_plan(args)
    plan = _setup(args)
    if skipped(args) is None:
        return Exit.INVALID
    check_output_paths(args, plan)
    if not _confirm(args, "migrator run"):
        return Exit.INVALID
    runner = _runner(args, plan)
    return _finish(runner.run(), runner)


@guarded
def cmd_resume(args: argparse.Namespace) -> int:
    plan = _setup(args)
    if skipped(args) is None:
        return Exit.INVALID
    check_output_paths(args, plan)
    if not _confirm(args, "migrator resume"):
        return Exit.INVALID
    runner = _runner(args, plan)
    return _finish(runner.run("resume"), runner)


@guarded
def cmd_finalize(args: argparse.Namespace) -> int:
    plan = _setup(args)
    if not args.yes:
        print("error: finalize is the point of no return (it removes Calico); pass --yes", file=sys.stderr)
        return Exit.INVALID
    check_output_paths(args, plan)
    return _finish(_runner(args, plan).run("finalize"))


@guarded
def cmd_handover(args: argparse.Namespace) -> int:
    plan = _setup(args)
    what = "migrator handover --rollback" if args.rollback else "migrator handover"
    if not _confirm(args, what):
        return Exit.INVALID
    runner = _runner(args, plan)
    return _finish(runner.run("handover-rollback" if args.rollback else "handover"), runner)


def _load_state(args: argparse.Namespace,
                plan: MigrationPlan) -> tuple[CheckpointStore, Checkpoint | None, Versions | None]:
    store = CheckpointStore(_connect(args), namespace=plan.state.configmap_namespace,
                            name=plan.state.configmap_name)
    cp, rv = store.load()
    return store, cp, rv


def cmd_manifests(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        print(f"error: {plan_message(args.plan, exc)}", file=sys.stderr)
        return Exit.INVALID
    skips = skipped(args)
    if skips is None:
        return Exit.INVALID
    return manifests_cli.run(args, plan, skips)


def no_run(store: CheckpointStore, args: argparse.Namespace, what: str) -> int:
    """No checkpoint where the plan says: exit 2, naming where it was looked for."""
    target: Target | None = getattr(args, "target", None)
    on = f" on {target.describe()}" if target is not None else ""
    print(f"error: no migration state in {store.where}{on}: {what}; start a run with `migrator run`, or check "
          "--context and the plan's state section", file=sys.stderr)
    return Exit.INVALID


def _lock_view(store: CheckpointStore, plan: MigrationPlan) -> LockView:
    st = plan.state
    record = store.port.read_lease(st.lease_namespace, st.lease_name)
    return LockView.of(record, where=f"lease {st.lease_namespace}/{st.lease_name}",
                       default_seconds=int(st.lease_duration.total_seconds()))


@guarded
def cmd_status(args: argparse.Namespace) -> int:
    plan = _setup(args)
    store, cp, _ = _load_state(args, plan)
    try:
        if cp is None:
            return no_run(store, args, "no run has started")
        lock = _lock_view(store, plan)
    finally:
        store.port.close()
    print(render_status(cp, args.output, lock=lock, plan=plan))
    if args.output == "table":
        differs = plan_changes(cp, plan).lines()
        if differs:
            print(f"\nthis plan ({args.plan}) differs from the run's:\n" + "\n".join(f"  {d}" for d in differs))
    return Exit.DONE


@guarded
def cmd_request(args: argparse.Namespace) -> int:
    plan = _setup(args)
    store, cp, rv = _load_state(args, plan)
    try:
        if cp is None:
            return no_run(store, args, f"nothing to {args.request}")
        if cp.run_phase.terminal or cp.run_phase in (RunPhase.NODES_DONE, RunPhase.FINALIZING):
            print(f"nothing to {args.request}: run {cp.run_id} is {cp.run_phase.value} (see `migrator status`)")
            return Exit.DONE
        if not same_run(cp, plan):
            print(f"error: {args.request} refused: {' '.join(plan_changes(cp, plan).lines())}; use the plan that "
                  "started the run (tuning may differ)", file=sys.stderr)
            return Exit.INVALID
        lock = _lock_view(store, plan)
        cp = store.update(lambda current: request(current, args.request), cp, rv, attempts=5)
    finally:
        store.port.close()
    in_flight = ", ".join(sorted(pod_scope(cp))) or "none"
    if lock.live:
        print(f"{args.request} requested: recorded in {store.where}; the running migration ({lock.holder}, "
              f"{lock.where} renewed {lock.age_text} ago) honours it at its next step boundary "
              f"(in flight: {in_flight})")
    elif args.request == "pause":
        print(f"pause recorded in {store.where}, but no process is running this migration ({lock.summary()}). "
              f"The run stays stopped at {cp.run_phase.value} (in flight: {in_flight}); a `migrator run` of this "
              "plan (or its Job's next attempt) pauses at its first step boundary, and `migrator resume` clears "
              "the pause and continues")
    else:
        print(f"abort recorded in {store.where}, but no process is running this migration ({lock.summary()}). "
              f"The next `migrator run` or `migrator resume` starts no new node, finishes the ones in flight "
              f"({in_flight}) and ends the run as aborted")
    return Exit.DONE
