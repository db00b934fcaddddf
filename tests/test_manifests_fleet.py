"""``migrator manifests --fleet``: a Placement and a ManifestWorkReplicaSet valid under Open Cluster
Management's own CRD schemas (vendored in ``deploy/fleet/crds/``), rolling the Job out canary
group first, group by group, each cluster judged by its Job's completion."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from migrator.cli import main
from migrator.manifests import deadline
from migrator.model.plan import load_plan

ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "deploy" / "fleet" / "crds"
EXAMPLE = ROOT / "plans" / "example.yaml"


def strict(schema: Any) -> Any:
    """The CRD's structural schema as JSON Schema, refusing unknown fields (as the API server prunes
    them, a misspelt field would otherwise vanish silently) except where it preserves them."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@functools.cache
def crd_schema(kind: str) -> tuple[str, dict]:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            version = crd["spec"]["versions"][0]
            return f"{crd['spec']['group']}/{version['name']}", strict(version["schema"]["openAPIV3Schema"])
    raise AssertionError(f"no CRD for {kind} in {CRDS}")


def fleet(*args: str) -> list[dict]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["manifests", "--plan", str(EXAMPLE), "--fleet", "--nodes", "20", *args])
    assert code == 0, err.getvalue()
    return list(yaml.safe_load_all(out.getvalue()))


def validate(doc: dict) -> None:
    api_version, schema = crd_schema(doc["kind"])
    assert doc["apiVersion"] == api_version
    jsonschema.Draft7Validator(schema).validate(doc)


def test_fleet_objects_validate_against_the_ocm_crds():
    docs = fleet("--hub-namespace", "fleet", "--fleet-group", "wave-1", "--fleet-group", "wave-2",
                 "--max-failures", "10%", "--min-success-time", "2h")
    assert [d["kind"] for d in docs] == ["Placement", "ManifestWorkReplicaSet"]
    for doc in docs:
        validate(doc)
    placement, mwrs = docs
    assert placement["metadata"]["namespace"] == mwrs["metadata"]["namespace"] == "fleet"
    groups = placement["spec"]["decisionStrategy"]["groupStrategy"]["decisionGroups"]
    assert [g["groupName"] for g in groups] == ["canary", "wave-1", "wave-2"]
    assert groups[0]["groupClusterSelector"]["labelSelector"]["matchLabels"] == {"migrator.io/rollout-group": "canary"}
    (ref,) = mwrs["spec"]["placementRefs"]
    assert ref["name"] == placement["metadata"]["name"]
    strategy = ref["rolloutStrategy"]
    assert strategy["type"] == "ProgressivePerGroup"
    per_group = strategy["progressivePerGroup"]
    assert per_group["mandatoryDecisionGroups"] == [{"groupName": "canary"}]
    assert per_group["maxFailures"] == "10%" and per_group["minSuccessTime"] == "2h"
    job_seconds = deadline(load_plan(EXAMPLE), 20, canary=False).total_seconds()
    assert per_group["progressDeadline"] == f"{int(job_seconds) + 600}s"


def test_the_workload_is_the_job_and_its_completion_is_the_success_condition():
    mwrs = fleet("--max-failures", "1")[1]
    assert mwrs["spec"]["placementRefs"][0]["rolloutStrategy"]["progressivePerGroup"]["maxFailures"] == 1
    template = mwrs["spec"]["manifestWorkTemplate"]
    manifests = template["workload"]["manifests"]
    assert [m["kind"] for m in manifests] == ["ClusterRole", "ServiceAccount", "ClusterRoleBinding", "ConfigMap", "Job"]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, "1.32", strict=True)
    job = manifests[-1]
    assert job["kind"] == "Job" and "ttlSecondsAfterFinished" not in job["spec"]
    (config,) = template["manifestConfigs"]
    assert config["resourceIdentifier"] == {"group": "batch", "resource": "jobs", "name": job["metadata"]["name"],
                                            "namespace": job["metadata"]["namespace"]}
    rules = {r["condition"]: r for r in config["conditionRules"]}
    assert rules["Complete"]["type"] == "WellKnownConditions"
    assert "'Complete'" in rules["Progressing"]["celExpressions"][0]
    assert "'Failed'" in rules["Degraded"]["celExpressions"][0]
    for rule in config["conditionRules"]:   # the CRD's x-kubernetes-validations rule, which JSON Schema cannot say
        assert rule["type"] != "CEL" or rule["condition"] != ""
    assert template["deleteOption"] == {"propagationPolicy": "Orphan"}


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "placementRefs", 0, "rolloutStrategy", "type"), "Canary"),
    (("spec", "placementRefs", 0, "rolloutStrategy", "progressivePerGroup", "progressDeadline"), "1d"),
    (("spec", "placementRefs", 0, "rolloutStrategy", "progressivePerGroup", "maxFailure"), 1),
    (("spec", "manifestWorkTemplate", "manifestConfigs", 0, "conditionRules", 0, "type"), "Known"),
])
def test_the_schema_check_refuses_what_ocm_would(path, value):
    mwrs = copy.deepcopy(fleet()[1])
    node: Any = mwrs
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(mwrs)


def test_vendored_crds_are_as_their_sources_say():
    sources = (CRDS / "SOURCES.md").read_text()
    assert "Apache License 2.0" in sources and "open-cluster-management-io/api" in sources
    import hashlib

    for path in CRDS.glob("*.yaml"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"| {path.name} |" in sources and digest in sources, path.name
