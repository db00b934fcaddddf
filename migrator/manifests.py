"""``migrator manifests``: what it takes to run the tool inside the cluster, and nothing more.

Only what is asked is printed: ``--job`` a one-shot run, ``--cronjob`` a scheduled canary,
``--fleet`` the run rolled across clusters (``migrator.fleet``). Each comes with what it needs:
the tool's least-privilege ClusterRole (``migrator.rbac``; one per cluster, named ``migrator``,
since its rules are the tool's and not a plan's), and per plan a ServiceAccount bound to it and
the plan in a ConfigMap. Objects are named after the plan (``migrator-<plan>``, DNS-1123 safe,
at most 52 characters — a CronJob's limit — with a digest of the full name when shortened), so
two plans never overwrite each other's ConfigMap or Job.

Both run preflight first (the run's PREFLIGHT phase) and halt on a blocking finding unless
``--skip-check ID`` was given, which is passed on. The tool resumes itself from its checkpoint, so
neither retries by itself (``backoffLimit: 0``): a failed Job is looked at, then resumed with
``migrator resume`` (a new Job with that command). The pod is hardened: non-root, read-only root
filesystem (scratch space in emptyDirs), no capabilities, no privilege escalation, the runtime's
default seccomp profile, resource requests and a memory limit.

``activeDeadlineSeconds`` is the plan's own worst case (``deadline``), so a hung run is stopped
(resumable) rather than holding its Lease for ever:

    setup    = probes.ready_timeout (probe fleet) + api.outage_tolerance + 10m (start, preflight)
    per node = cilium.agent.restart_timeout + drain.timeout + recycle.timeout + verify.timeout
               + probes.checks.deadline + rollback.timeout + gates.pause_between_nodes
    waves    = ceil(nodes / min(concurrency limit, per_zone)) + 1 (control-plane nodes go alone)
    deadline = setup + waves x (per node + the longest time gates.window stays closed) + canary.soak

(timeouts of disabled steps count zero). ``nodes`` is the plan's ``nodes.names`` less
``nodes.exclude``; a plan that selects nodes by selector or takes every node needs ``--nodes N``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from migrator.model.plan import MigrationPlan, WindowGate
from migrator.rbac import cluster_role_rules

PLAN_MOUNT = "/etc/migrator"
PLAN_FILE = f"{PLAN_MOUNT}/plan.yaml"
CLUSTER_ROLE = "migrator"
LABELS = {"app.kubernetes.io/name": "migrator", "app.kubernetes.io/managed-by": "migrator"}
PLAN_LABEL = "migrator.io/plan"
MAX_NAME = 52                      # a CronJob's name leaves 11 characters for its Jobs' suffix
MAX_CONFIGMAP_BYTES = 1024 * 1024  # what the API server lets a ConfigMap hold
SETUP_ALLOWANCE = timedelta(minutes=10)
UID = 65532
METRICS_PORT = 9090          # the pod's metrics port (named "metrics", for a PodMonitor or a scrape config)
METRICS_LINGER = 60          # seconds the metrics stay up after the run: at least one scrape interval
WEEK = timedelta(days=7)
_DAY_INDEX = {day: i for i, day in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}


class ManifestError(ValueError):
    """The manifests cannot be made as asked; the message names the flag and what to do."""


def default_image() -> str:
    try:
        version = importlib.metadata.version("migrator")
    except importlib.metadata.PackageNotFoundError:
        version = "latest"
    return f"ghcr.io/migrator/migrator:{version}"


def bounded(text: str, limit: int) -> str:
    """``text`` made a DNS-1123 label of at most ``limit`` characters; a shortened one ends in a
    digest of the whole, so it stays stable and distinct."""
    clean = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-") or "plan"
    if len(clean) <= limit:
        return clean
    digest = hashlib.sha256(text.encode()).hexdigest()[:6]
    return f"{clean[:limit - 7].rstrip('-')}-{digest}"


def object_name(plan: MigrationPlan, suffix: str = "") -> str:
    """``migrator-<plan>[-suffix]``, at most 52 characters."""
    tail = f"-{suffix}" if suffix else ""
    return f"migrator-{bounded(plan.name, MAX_NAME - len('migrator-') - len(tail))}{tail}"


# ---------------------------------------------------------------------------------- deadline
def node_count(plan: MigrationPlan, nodes: int | None) -> int:
    """How many nodes the run migrates: the plan's list, or ``--nodes``."""
    if plan.nodes.names is not None:
        listed = len([n for n in plan.nodes.names if n not in plan.nodes.exclude])
        if nodes is not None and nodes != listed:
            raise ManifestError(f"--nodes {nodes}: the plan lists its {listed} nodes; drop --nodes")
        return listed
    if nodes is None:
        raise ManifestError("--nodes: the plan selects its nodes in the cluster, so the Job's deadline needs their "
                            "number; pass --nodes N (for --fleet: the largest cluster's)")
    return nodes


def longest_closed(window: WindowGate) -> timedelta:
    """The longest stretch in a week during which the window stays closed (+1h for a DST change)."""
    start = timedelta(hours=window.start.hour, minutes=window.start.minute)
    end = timedelta(hours=window.end.hour, minutes=window.end.minute)
    length = (end - start) % timedelta(days=1)
    opens = sorted(_DAY_INDEX[d] * timedelta(days=1) + start for d in set(window.days))
    gaps = [((opens[(i + 1) % len(opens)] - at) % WEEK) or WEEK for i, at in enumerate(opens)]
    return max(gaps) - length + timedelta(hours=1)


def deadline(plan: MigrationPlan, nodes: int, *, canary: bool) -> timedelta:
    """The longest a run (or canary) of ``plan`` over ``nodes`` nodes may take (module docstring)."""
    probes = plan.probes.enabled
    setup = (plan.probes.ready_timeout if probes else timedelta(0)) + plan.api.outage_tolerance + SETUP_ALLOWANCE
    per_node = (plan.cilium.agent.restart_timeout + plan.drain.timeout + plan.verify.timeout
                + (plan.recycle.timeout if plan.recycle.enabled else timedelta(0))
                + (plan.probes.checks.deadline if probes else timedelta(0))
                + plan.rollback.timeout + plan.gates.pause_between_nodes)
    if plan.gates.window is not None:
        per_node += longest_closed(plan.gates.window)
    width = plan.concurrency.limit(nodes)
    if plan.concurrency.per_zone is not None:
        width = min(width, plan.concurrency.per_zone)
    waves = math.ceil(nodes / width) + 1
    soak = plan.canary.soak if canary and plan.canary is not None else timedelta(0)
    return setup + waves * per_node + soak


# ---------------------------------------------------------------------------------- objects
@dataclass(frozen=True)
class Request:
    """What ``migrator manifests`` was asked for, its flags checked (``migrator.commands``)."""

    plan: MigrationPlan
    plan_text: str
    namespace: str
    image: str
    job: bool = False
    cronjob: bool = False
    schedule: str = "0 3 * * 1"
    nodes: int | None = None
    skip_checks: tuple[str, ...] = ()


def _meta(req: Request, name: str, namespaced: bool = True, **extra: Any) -> dict[str, Any]:
    labels = {**LABELS, PLAN_LABEL: bounded(req.plan.name, 63)}
    meta: dict[str, Any] = {"name": name, "labels": labels, **extra}
    if namespaced:
        meta["namespace"] = req.namespace
    return meta


def pod_spec(req: Request, args: list[str]) -> dict[str, Any]:
    """The hardened pod that runs ``migrator ARGS`` with the plan mounted."""
    return {
        "serviceAccountName": object_name(req.plan),
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "migrator", "image": req.image, "args": args,
            "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
            "env": [{"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True},
                             {"name": "work", "mountPath": "/work"},
                             {"name": "tmp", "mountPath": "/tmp"}],
            "workingDir": "/work",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "privileged": False,
                                "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": [{"name": "plan", "configMap": {"name": object_name(req.plan, "plan")}},
                    {"name": "work", "emptyDir": {"sizeLimit": "64Mi"}},
                    {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }


def _args(req: Request, command: str) -> list[str]:
    """The run's command line: metrics served on ``METRICS_PORT`` and kept up ``METRICS_LINGER``
    seconds after the run ends, so that Prometheus scrapes how it ended before the pod is gone."""
    skips = [arg for check in req.skip_checks for arg in ("--skip-check", check)]
    return [command, "--plan", PLAN_FILE, "--yes", "--log-format", "json", "--output-dir", "/work",
            "--metrics-port", str(METRICS_PORT), "--metrics-linger", str(METRICS_LINGER), *skips]


def cluster_role() -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": CLUSTER_ROLE, "labels": dict(LABELS)}, "rules": cluster_role_rules()}


def plan_objects(req: Request) -> list[dict[str, Any]]:
    """The plan's ServiceAccount, its binding to the tool's ClusterRole, the plan's ConfigMap."""
    sa = object_name(req.plan)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(req, object_name(req.plan, "plan")),
                 "data": {"plan.yaml": req.plan_text}}
    size = len(json.dumps(configmap, separators=(",", ":")).encode())
    if size > MAX_CONFIGMAP_BYTES:
        raise ManifestError(f"--plan: its ConfigMap would be {size} bytes, over the {MAX_CONFIGMAP_BYTES} a "
                            "ConfigMap may hold; select nodes with nodes.selector rather than listing them")
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(req, sa)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(req, sa, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": req.namespace}]},
        configmap,
    ]


def _job_spec(req: Request, command: str, seconds: int) -> dict[str, Any]:
    labels = {**LABELS, PLAN_LABEL: bounded(req.plan.name, 63)}
    return {"backoffLimit": 0, "activeDeadlineSeconds": seconds, "ttlSecondsAfterFinished": 604800,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec(req, _args(req, command))}}


def job(req: Request) -> dict[str, Any]:
    seconds = int(deadline(req.plan, node_count(req.plan, req.nodes), canary=False).total_seconds())
    note = {"migrator.io/retry": "a failed run is resumed, not retried: start a Job with "
                                 f"`migrator resume --plan {PLAN_FILE} --yes`"}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(req, object_name(req.plan, "run"),
                                                                       annotations=note),
            "spec": _job_spec(req, "run", seconds)}


def cronjob(req: Request) -> dict[str, Any]:
    if req.plan.canary is None:
        raise ManifestError("--cronjob: the plan has no canary section, so every scheduled run would fail; add one "
                            "(see plans/canary.yaml) or use --job")
    seconds = int(deadline(req.plan, node_count(req.plan, req.nodes), canary=True).total_seconds())
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(req, object_name(req.plan, "canary")),
            "spec": {"schedule": req.schedule, "concurrencyPolicy": "Forbid", "startingDeadlineSeconds": 3600,
                     "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": _job_spec(req, "canary", seconds)}}}


def manifests(req: Request) -> list[dict[str, Any]]:
    """The objects asked for, in the order to apply them. Raises ``ManifestError``."""
    if not (req.job or req.cronjob):
        raise ManifestError("choose what to print: --job (a one-shot run), --cronjob (a scheduled canary) "
                            "or --fleet (the run rolled across clusters)")
    common = [cluster_role(), *plan_objects(req)]
    return [*common, *([job(req)] if req.job else []), *([cronjob(req)] if req.cronjob else [])]


def dump(docs: list[dict[str, Any]]) -> str:
    """A multi-document YAML stream."""
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


# ---------------------------------------------------------------------------------- deploy/
ROOT = Path(__file__).resolve().parents[1]
#: The kustomize overlays of ``deploy/``: overlay → (plan, what it runs, --nodes). The base holds the ClusterRole.
OVERLAYS = {"run": ("plans/example.yaml", "job", 6), "canary": ("plans/canary.yaml", "cronjob", None)}
HEADER = "# Generated by `python -m migrator.manifests` from `migrator manifests`; do not edit.\n"


def deploy_files(root: Path = ROOT) -> dict[str, str]:
    """``deploy/`` as ``migrator manifests`` makes it: path (relative to ``deploy/``) → text."""
    from migrator.model.plan import load_plan

    files = {"base/clusterrole.yaml": HEADER + dump([cluster_role()]),
             "base/kustomization.yaml": HEADER + yaml.safe_dump(
                 {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                  "resources": ["clusterrole.yaml"]}, sort_keys=False)}
    for overlay, (plan_path, kind, nodes) in OVERLAYS.items():
        plan = load_plan(root / plan_path)
        req = Request(plan=plan, plan_text=(root / plan_path).read_text(encoding="utf-8"),
                      namespace=plan.state.configmap_namespace, image=default_image(), job=kind == "job",
                      cronjob=kind == "cronjob", nodes=nodes)
        docs = [d for d in manifests(req) if d["kind"] != "ClusterRole"]
        files[f"overlays/{overlay}/{overlay}.yaml"] = HEADER + dump(docs)
        files[f"overlays/{overlay}/kustomization.yaml"] = HEADER + yaml.safe_dump(
            {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
             "resources": ["../../base", f"{overlay}.yaml"]}, sort_keys=False)
    return files


def main() -> int:
    """Write ``deploy/`` afresh (``python -m migrator.manifests``)."""
    for relative, text in deploy_files().items():
        path = ROOT / "deploy" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote deploy/{relative}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
