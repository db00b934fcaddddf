"""``migrator manifests --fleet``: the one-shot run rolled across many clusters, group by group.

Printed for the hub of an Open Cluster Management fleet: a Placement and a ManifestWorkReplicaSet
(``work.open-cluster-management.io/v1alpha1``) in the hub namespace ``--hub-namespace`` (bound to
a ManagedClusterSet). The replica set carries what ``--job`` prints (ClusterRole, the plan's
ServiceAccount, binding and ConfigMap, the Job) to every selected cluster, and rolls it out with
the ``ProgressivePerGroup`` strategy:

* Clusters take part when labelled ``migrator.io/rollout-group``. The Placement's decision groups
  are ``canary`` (clusters labelled ``migrator.io/rollout-group=canary``), then each
  ``--fleet-group NAME`` in the order given (``migrator.io/rollout-group=NAME``); clusters with any
  other value follow in one last group.
* ``canary`` is a mandatory decision group: it goes first and tolerates no failure.
* A cluster succeeds when its Job completes: the Job's manifest gets condition rules (CEL) —
  ``Progressing`` while the Job has no ``Complete`` condition, ``Degraded`` once it has a true
  ``Failed`` one — and OCM counts a cluster whose ManifestWork is no longer Progressing as
  succeeded, and one Progressing and Degraded as failed. ``WellKnownConditions`` adds
  ``Complete`` (the agent stops updating a completed Job) and the feedback rules return the
  Job's status (``succeeded``, ``failed``) to the hub.
* ``maxFailures`` (``--max-failures``, default 0) per group, ``minSuccessTime``
  (``--min-success-time``, default 1h: the soak before the next group starts), and
  ``progressDeadline``: the Job's own deadline (``migrator.manifests.deadline``) plus 10 minutes
  for scheduling, after which a cluster counts as failed.
* Resources are orphaned when the replica set is deleted (``propagationPolicy: Orphan``), so
  deleting the rollout never kills a migration in flight; and the Job is created, never updated
  (``CreateOnly``: a Job's pod template cannot change) and has no TTL (the ManifestWork owns it;
  a Job deleted after its TTL would be created again by the work agent, starting a new run).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from migrator.manifests import (
    LABELS,
    PLAN_LABEL,
    Request,
    bounded,
    deadline,
    manifests,
    node_count,
    object_name,
)

GROUP_LABEL = "migrator.io/rollout-group"
CANARY_GROUP = "canary"
PROGRESS_ALLOWANCE_SECONDS = 600
_HAS_CONDITIONS = "has(object.status) && has(object.status.conditions)"
NOT_COMPLETE = f"!({_HAS_CONDITIONS} && object.status.conditions.exists(c, c.type == 'Complete' && " \
               "c.status == 'True'))"
FAILED = f"{_HAS_CONDITIONS} && object.status.conditions.exists(c, c.type == 'Failed' && c.status == 'True')"


@dataclass(frozen=True)
class Fleet:
    """The rollout's settings (``--hub-namespace``, ``--fleet-group``, ``--max-failures``,
    ``--min-success-time``), checked by the command."""

    hub_namespace: str = "default"
    groups: tuple[str, ...] = ()
    max_failures: str = "0"
    min_success_time: str = "1h"


def _count(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def placement(req: Request, fleet: Fleet) -> dict[str, Any]:
    groups = [{"groupName": name, "groupClusterSelector": {"labelSelector": {"matchLabels": {GROUP_LABEL: name}}}}
              for name in (CANARY_GROUP, *fleet.groups)]
    return {"apiVersion": "cluster.open-cluster-management.io/v1beta1", "kind": "Placement",
            "metadata": {"name": object_name(req.plan), "namespace": fleet.hub_namespace,
                         "labels": {**LABELS, PLAN_LABEL: bounded(req.plan.name, 63)}},
            "spec": {"predicates": [{"requiredClusterSelector": {"labelSelector": {
                         "matchExpressions": [{"key": GROUP_LABEL, "operator": "Exists"}]}}}],
                     "decisionStrategy": {"groupStrategy": {"decisionGroups": groups}}}}


def replica_set(req: Request, fleet: Fleet) -> dict[str, Any]:
    workload = manifests(replace(req, job=True, cronjob=False))
    the_job = workload[-1]
    # the ManifestWork owns the Job's life: a TTL would delete it and the work agent create it again
    del the_job["spec"]["ttlSecondsAfterFinished"]
    seconds = int(deadline(req.plan, node_count(req.plan, req.nodes), canary=False).total_seconds())
    job_config = {
        "resourceIdentifier": {"group": "batch", "resource": "jobs", "name": the_job["metadata"]["name"],
                               "namespace": req.namespace},
        "updateStrategy": {"type": "CreateOnly"},
        "feedbackRules": [{"type": "WellKnownStatus"},
                          {"type": "JSONPaths", "jsonPaths": [{"name": "succeeded", "path": ".status.succeeded"},
                                                              {"name": "failed", "path": ".status.failed"}]}],
        "conditionRules": [
            {"type": "WellKnownConditions", "condition": "Complete"},
            {"type": "CEL", "condition": "Progressing", "celExpressions": [NOT_COMPLETE],
             "message": "the migration Job has not completed"},
            {"type": "CEL", "condition": "Degraded", "celExpressions": [FAILED],
             "message": "the migration Job failed; see `migrator status` on the cluster, then resume"},
        ]}
    strategy = {"mandatoryDecisionGroups": [{"groupName": CANARY_GROUP}],
                "maxFailures": _count(fleet.max_failures), "minSuccessTime": fleet.min_success_time,
                "progressDeadline": f"{seconds + PROGRESS_ALLOWANCE_SECONDS}s"}
    return {"apiVersion": "work.open-cluster-management.io/v1alpha1", "kind": "ManifestWorkReplicaSet",
            "metadata": {"name": object_name(req.plan), "namespace": fleet.hub_namespace,
                         "labels": {**LABELS, PLAN_LABEL: bounded(req.plan.name, 63)}},
            "spec": {"cascadeDeletionPolicy": "Background",
                     "placementRefs": [{"name": object_name(req.plan), "rolloutStrategy": {
                         "type": "ProgressivePerGroup", "progressivePerGroup": strategy}}],
                     "manifestWorkTemplate": {"deleteOption": {"propagationPolicy": "Orphan"},
                                              "manifestConfigs": [job_config],
                                              "workload": {"manifests": workload}}}}


def fleet_manifests(req: Request, fleet: Fleet) -> list[dict[str, Any]]:
    """The Placement, then the ManifestWorkReplicaSet that refers to it."""
    return [placement(req, fleet), replica_set(req, fleet)]
