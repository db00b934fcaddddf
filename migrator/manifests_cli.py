"""The flags of ``migrator manifests`` and their checks: wiring between argparse and
``migrator.manifests`` / ``migrator.fleet_rollout``.

Every flag is checked before anything is printed; a bad one is exit 2 with one line naming the
flag and what to pass (``migrator.manifest_flags`` holds the rules). Nothing is printed unless a
kind of workload was chosen: ``--job``, ``--cronjob`` (both may be given) or ``--fleet`` (alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from migrator.manifest_flags import (
    cron_problem,
    dns_label_problem,
    group_problem,
    image_problem,
    ocm_count_problem,
    ocm_duration_problem,
)
from migrator.model.plan import MigrationPlan

DEFAULT_SCHEDULE = "0 3 * * 1"
FLEET_FLAGS = ("hub_namespace", "fleet_group", "max_failures", "min_success_time")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", required=True, metavar="FILE", help="migration plan (YAML; see plans/)")
    what = p.add_argument_group("what to print (at least one)")
    what.add_argument("--job", action="store_true", help="a Job that runs the migration once, now")
    what.add_argument("--cronjob", action="store_true",
                      help="a CronJob that runs the plan's canary on --schedule (the plan needs a canary section)")
    what.add_argument("--fleet", action="store_true",
                      help="an Open Cluster Management Placement and ManifestWorkReplicaSet that roll the Job "
                           "across clusters, canary group first (for the hub; see deploy/fleet/README.md)")
    p.add_argument("--namespace", metavar="NS", help="namespace of the namespaced objects "
                                                     "(default: the plan's state namespace)")
    p.add_argument("--image", help="migrator image (default: ghcr.io/migrator/migrator:<version>)")
    p.add_argument("--schedule", help=f"cron schedule of the canary CronJob (default: {DEFAULT_SCHEDULE!r})")
    p.add_argument("--nodes", metavar="N", help="how many nodes the run migrates, for the Job's deadline, when the "
                                                "plan does not list them (--fleet: the largest cluster's)")
    fleet = p.add_argument_group("--fleet")
    fleet.add_argument("--hub-namespace", metavar="NS", help="hub namespace of the Placement and the "
                                                             "ManifestWorkReplicaSet (default: default)")
    fleet.add_argument("--fleet-group", action="append", metavar="NAME",
                       help="a rollout group after canary: clusters labelled migrator.io/rollout-group=NAME "
                            "(repeatable, in order)")
    fleet.add_argument("--max-failures", metavar="N|P%", help="failed clusters tolerated per group (default: 0)")
    fleet.add_argument("--min-success-time", metavar="DURATION",
                       help="soak after a group succeeds before the next starts, e.g. 90m (default: 1h)")


def _problem(args: argparse.Namespace) -> str:
    """The first bad flag, as the line to print, or ``""``."""
    if not (args.job or args.cronjob or args.fleet):
        return ("choose what to print: --job (a one-shot run), --cronjob (a scheduled canary) or --fleet "
                "(the run rolled across clusters)")
    if args.fleet and (args.job or args.cronjob):
        return "--fleet: already carries the Job to every cluster; drop --job/--cronjob or print them separately"
    if args.schedule is not None and not args.cronjob:
        return "--schedule: applies to the canary CronJob only; add --cronjob or drop --schedule"
    unused = [f"--{name.replace('_', '-')}" for name in FLEET_FLAGS if getattr(args, name) is not None]
    if unused and not args.fleet:
        return f"{unused[0]}: applies to --fleet only; add --fleet or drop {unused[0]}"
    checks: list[tuple[str, str | None, Any]] = [
        ("--namespace", args.namespace, dns_label_problem), ("--image", args.image, image_problem),
        ("--schedule", args.schedule, cron_problem), ("--hub-namespace", args.hub_namespace, dns_label_problem),
        ("--max-failures", args.max_failures, ocm_count_problem),
        ("--min-success-time", args.min_success_time, ocm_duration_problem),
        *(("--fleet-group", g, group_problem) for g in args.fleet_group or ())]
    for flag, value, check in checks:
        if value is not None and (problem := check(value)):
            return f"{flag} {value!r}: {problem}"
    if args.nodes is not None and not (args.nodes.isdigit() and int(args.nodes) >= 1):
        return f"--nodes {args.nodes!r}: not a whole number of at least 1; pass how many nodes the run migrates"
    groups = args.fleet_group or []
    if "canary" in groups or len(set(groups)) != len(groups):
        return "--fleet-group: names must be distinct and not 'canary' (the canary group always comes first)"
    return ""


def run(args: argparse.Namespace, plan: MigrationPlan, skips: tuple[str, ...]) -> int:
    """Print what was asked: exit 0, or 2 with one line on stderr and nothing printed."""
    from migrator.fleet_rollout import Fleet, fleet_manifests
    from migrator.manifests import ManifestError, Request, default_image, dump, manifests

    problem = _problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    req = Request(plan=plan, plan_text=Path(args.plan).read_text(encoding="utf-8"),
                  namespace=args.namespace or plan.state.configmap_namespace, image=args.image or default_image(),
                  job=args.job, cronjob=args.cronjob, schedule=args.schedule or DEFAULT_SCHEDULE,
                  nodes=int(args.nodes) if args.nodes is not None else None, skip_checks=skips)
    try:
        if args.fleet:
            fleet = Fleet(hub_namespace=args.hub_namespace or "default", groups=tuple(args.fleet_group or ()),
                          max_failures=args.max_failures or "0", min_success_time=args.min_success_time or "1h")
            docs = fleet_manifests(req, fleet)
        else:
            docs = manifests(req)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dump(docs), end="")
    return 0
