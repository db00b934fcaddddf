"""``migrator manifests``: what it takes to run the tool inside the cluster.

A ServiceAccount bound to the least-privilege ClusterRole of ``migrator.rbac``, the plan in a
ConfigMap, a Job for a one-shot run and a CronJob for scheduled canaries. Both run preflight
first (the run's PREFLIGHT phase) and halt on a blocking finding unless ``--skip-check ID``
was given to ``manifests``, which passes it on. The tool resumes
itself from its checkpoint, so neither retries by itself (``backoffLimit: 0``): a failed Job
is looked at, then resumed with ``migrator resume`` (a new Job with that command).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import yaml

from migrator.rbac import cluster_role_rules

NAME = "cni-migrator"
PLAN_MOUNT = "/etc/migrator"
LABELS = {"app.kubernetes.io/name": "migrator", "app.kubernetes.io/managed-by": "migrator"}


def default_image() -> str:
    try:
        version = importlib.metadata.version("migrator")
    except importlib.metadata.PackageNotFoundError:
        version = "latest"
    return f"ghcr.io/migrator/migrator:{version}"


def _meta(name: str, namespace: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": dict(LABELS), **extra}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _pod_spec(image: str, args: list[str]) -> dict[str, Any]:
    return {
        "serviceAccountName": NAME,
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{
            "name": "migrator", "image": image, "args": args,
            "env": [{"name": "HOME", "value": "/tmp"}],
            "volumeMounts": [{"name": "plan", "mountPath": PLAN_MOUNT, "readOnly": True},
                             {"name": "work", "mountPath": "/work"}],
            "workingDir": "/work",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
        }],
        "volumes": [{"name": "plan", "configMap": {"name": f"{NAME}-plan"}},
                    {"name": "work", "emptyDir": {}}],
    }


def manifests(plan_text: str, *, namespace: str, image: str, schedule: str,
              skip_checks: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The objects, in the order to apply them."""
    plan_file = f"{PLAN_MOUNT}/plan.yaml"
    skips = [arg for check in skip_checks for arg in ("--skip-check", check)]
    run = ["run", "--plan", plan_file, "--yes", "--log-format", "json", "--output-dir", "/work", *skips]
    canary = ["canary", "--plan", plan_file, "--yes", "--log-format", "json", "--output-dir", "/work", *skips]
    note = {"migrator.io/retry": "a failed run is resumed, not retried: start a Job with "
                                 "`migrator resume --plan /etc/migrator/plan.yaml --yes`"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, namespace)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": _meta(NAME),
         "rules": cluster_role_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": _meta(NAME),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{NAME}-plan", namespace),
         "data": {"plan.yaml": plan_text}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": _meta(f"{NAME}-run", namespace, annotations=note),
         "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 604800,
                  "template": {"metadata": {"labels": dict(LABELS)}, "spec": _pod_spec(image, run)}}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": _meta(f"{NAME}-canary", namespace),
         "spec": {"schedule": schedule, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3,
                  "failedJobsHistoryLimit": 3,
                  "jobTemplate": {"spec": {"backoffLimit": 0, "template": {
                      "metadata": {"labels": dict(LABELS)}, "spec": _pod_spec(image, canary)}}}}},
    ]


def render(plan_path: Path, *, namespace: str, image: str, schedule: str, skip_checks: tuple[str, ...] = ()) -> str:
    """A multi-document YAML stream."""
    docs = manifests(plan_path.read_text(encoding="utf-8"), namespace=namespace, image=image, schedule=schedule,
                     skip_checks=skip_checks)
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
