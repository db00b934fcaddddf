"""The plan model: the example loads, malformed plans are refused naming the field, the schema is current."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from migrator.model.plan import (
    MigrationPlan,
    PlanError,
    load_plan,
    parse_duration,
    parse_plan,
    plan_hash,
    render_schema,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "plans" / "example.yaml"


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_plan_loads_with_documented_choices() -> None:
    plan = load_plan(EXAMPLE)
    assert plan.cilium.pod_cidr == "10.245.0.0/16"
    assert plan.drain.delete_emptydir_data and plan.drain.unmanaged_pods == "delete"
    assert plan.drain.timeout == timedelta(minutes=5)
    assert plan.state.configmap_name == "cni-migration-state"


def test_defaults_fill_a_minimal_plan() -> None:
    plan = parse_plan({"api_version": "migrator.io/v1", "kind": "MigrationPlan", "name": "m",
                       "cilium": {"pod_cidr": "10.245.0.0/16"}})
    assert plan.cilium.agent.selector == {"k8s-app": "cilium"}
    assert plan.cilium.node_config.name == "cilium-default"
    assert plan.concurrency.limit(10) == 1
    assert plan.drain.unmanaged_pods == "block" and plan.drain.on_pdb_blocked == "halt"


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", timedelta(seconds=30)), ("10m", timedelta(minutes=10)),
    ("1h30m", timedelta(hours=1, minutes=30)), ("0s", timedelta(0))])
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_percentage_concurrency() -> None:
    data = example_data()
    data["concurrency"] = {"max_unavailable": "20%"}
    plan = parse_plan(data)
    assert plan.concurrency.limit(100) == 20
    assert plan.concurrency.limit(3) == 1


def _set(data: dict, path: str, value: object) -> dict:
    data = copy.deepcopy(data)
    keys = path.split(".")
    target = data
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return data


class _Deleted:
    """Marks a field removed from the plan (a stable repr keeps test ids equal across workers)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()

MALFORMED = [
    ("api_version", "migrator.io/v2", "api_version"),
    ("kind", "Plan", "kind"),
    ("name", "Bad_Name", "name"),
    ("name", _DELETE, "name"),
    ("cilium.pod_cidr", "10.245.0.0/33", "cilium.pod_cidr"),
    ("cilium.pod_cidr", "10.245.0.1/16", "cilium.pod_cidr"),
    ("cilium.pod_cidr", _DELETE, "cilium.pod_cidr"),
    ("cilium.tunnel_port", 70000, "cilium.tunnel_port"),
    ("cilium.tunnel_port", 0, "cilium.tunnel_port"),
    ("cilium.tunnel_protocol", "ipip", "cilium.tunnel_protocol"),
    ("cilium.node_config.api_version", "cilium.io/v3", "cilium.node_config.api_version"),
    ("cilium.agent.selector", {}, "cilium.agent.selector"),
    ("cilium.agent.selector", {"bad key!": "x"}, "cilium.agent.selector"),
    ("concurrency.max_unavailable", 0, "concurrency.max_unavailable"),
    ("concurrency.max_unavailable", "150%", "concurrency.max_unavailable"),
    ("concurrency.max_unavailable", "lots", "concurrency.max_unavailable"),
    ("concurrency.per_zone", 0, "concurrency.per_zone"),
    ("drain.timeout", "ten minutes", "drain.timeout"),
    ("drain.timeout", 600, "drain.timeout"),
    ("drain.unmanaged_pods", "force", "drain.unmanaged_pods"),
    ("drain.on_pdb_blocked", "ignore", "drain.on_pdb_blocked"),
    ("drain.pdb_override", {"reason": "short"}, "drain.pdb_override.reason"),
    ("drain.pdb_override", {"reason": "maintenance approved by the CAB"}, "drain.pdb_override.approved_by"),
    ("drain.grace_period_seconds", -1, "drain.grace_period_seconds"),
    ("gates.window", {"start": "02:00", "end": "04:00", "timezone": "Mars/Olympus"}, "gates.window.timezone"),
    ("gates.window", {"start": 120, "end": "04:00"}, "gates.window.start"),
    ("gates.window", {"start": "02:00", "end": "02:00"}, "gates.window"),
    ("gates.window", {"start": "02:00", "end": "04:00", "days": ["funday"]}, "gates.window.days"),
    ("state.lease_duration", "1s", "state.lease_duration"),
    ("state.configmap_name", "", "state.configmap_name"),
    ("order.strategy", "random", "order.strategy"),
    ("order.strategy", "explicit", "explicit"),
    ("nodes.names", [], "nodes"),
    ("nodes.names", ["node-1", "node-1"], "nodes"),
    ("max_failures", -1, "max_failures"),
    ("drian", {}, "drian"),
    ("drain.timeuot", "5m", "drain.timeuot"),
    ("recycle.enabled", "perhaps", "recycle.enabled"),
    ("placement.strategy", "shuffle", "placement.strategy"),
    ("drain.pdb_override", {"reason": "maintenance approved by the CAB", "approved_by": "cab"},
     "drain.pdb_override needs placement.strategy"),
]


@pytest.mark.parametrize(("path", "value", "field"), MALFORMED,
                         ids=[f"{p}={v!r}"[:60] for p, v, _ in MALFORMED])
def test_malformed_plan_names_the_field(path: str, value: object, field: str) -> None:
    data = _set(example_data(), path, value)
    with pytest.raises(PlanError) as caught:
        parse_plan(data)
    message = str(caught.value)
    assert message.startswith("invalid plan:")
    assert field in message, message


def test_unknown_field_says_what_to_do() -> None:
    with pytest.raises(PlanError, match=r"drian: unknown field; remove it or check its spelling"):
        parse_plan(_set(example_data(), "drian", {}))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="not found"):
        load_plan(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    with pytest.raises(PlanError, match="mapping"):
        load_plan(scalar)


def test_plan_hash_ignores_formatting_but_not_meaning() -> None:
    data = example_data()
    same = parse_plan(json.loads(json.dumps(data)))
    assert plan_hash(same) == plan_hash(load_plan(EXAMPLE))
    other = parse_plan(_set(data, "drain.timeout", "6m"))
    assert plan_hash(other) != plan_hash(same)
    spelled = parse_plan(_set(data, "drain.timeout", "300s"))
    assert plan_hash(spelled) == plan_hash(same)


def test_models_are_frozen() -> None:
    plan = load_plan(EXAMPLE)
    with pytest.raises(ValidationError):
        plan.name = "other"  # type: ignore[misc]


def test_every_field_is_documented() -> None:
    def walk(model: type) -> None:
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"
            annotation = info.annotation
            for inner in getattr(annotation, "__args__", (annotation,)):
                if isinstance(inner, type) and hasattr(inner, "model_fields"):
                    walk(inner)
    walk(MigrationPlan)


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "plans" / "plan.schema.json").read_text()
    assert committed == render_schema(), "regenerate: python -m migrator.model.plan --schema > plans/plan.schema.json"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "plans").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_plan_is_valid(path):
    plan = load_plan(path)
    assert plan.name == path.stem
