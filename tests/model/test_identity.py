"""Plan identity: every plan field classified; tuning changes adopted and audited, defining ones refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from pydantic import Field

from migrator.model import identity
from migrator.model.checkpoint import (
    SCHEMA_VERSION,
    Checkpoint,
    NodeRecord,
    configmap_size,
    from_configmap_data,
    to_configmap_data,
)
from migrator.model.identity import (
    DEFINING,
    TUNING,
    PlanMismatch,
    adopt_plan,
    identity_record,
    leaf_paths,
    plan_changes,
    plan_identity,
    same_run,
    unclassified,
)
from migrator.model.plan import DrainSection, MigrationPlan, parse_plan, plan_hash
from migrator.model.states import NodePhase, RunPhase
from tests.model.test_plan import EXAMPLE

T0 = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
WHO = "alice@laptop/4242"


def data(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = yaml.safe_load(EXAMPLE.read_text())
    for dotted, value in (changes or {}).items():
        *parents, leaf = dotted.split(".")
        node = plan
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return plan


def plan(changes: dict[str, Any] | None = None) -> MigrationPlan:
    return parse_plan(data(changes))


def run_of(p: MigrationPlan, nodes: int = 3) -> Checkpoint:
    return Checkpoint(plan_name=p.name, **identity_record(p), run_id="run-1", run_phase=RunPhase.MIGRATING,
                      started_at=T0, nodes=tuple(NodeRecord(name=f"node-{i}") for i in range(nodes)))


# ------------------------------------------------------------------ classification
def test_every_plan_field_is_classified_once() -> None:
    assert unclassified() == []
    assert len(leaf_paths()) == len(DEFINING) + len(TUNING)
    assert {"drain.timeout", "drain.pdb_override.reason", "finalize.remove_calico[].name"} <= set(TUNING)
    assert {"nodes.names", "cilium.pod_cidr", "state.configmap_name", "name"} <= set(DEFINING)


def test_a_new_plan_field_is_caught_until_classified(monkeypatch: pytest.MonkeyPatch) -> None:
    class Drain(DrainSection):
        surge: int = Field(default=0, description="A field nobody classified yet.")

    class Plan(MigrationPlan):
        drain: Drain = Field(default_factory=Drain)
        surprise: bool = Field(default=False)

    assert unclassified(Plan) == ["drain.surge: not classified (add it to DEFINING or TUNING)",
                                       "surprise: not classified (add it to DEFINING or TUNING)"]
    monkeypatch.setattr(identity, "TUNING", (*TUNING, "drain.surge", "surprise", "drain.gone"))
    assert identity.unclassified(Plan) == ["drain.gone: not a plan field"]


def test_a_field_in_both_tables_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "TUNING", (*TUNING, "nodes.names"))
    assert identity.unclassified() == ["nodes.names: both defining and tuning"]


@pytest.mark.parametrize("change", [{"drain.timeout": "20m"}, {"concurrency.max_unavailable": 3},
                                    {"probes.checks.deadline": "5m"}, {"placement.strategy": "drain"},
                                    {"api.outage_tolerance": "30m"},
                                    {"gates.window": {"start": "22:00", "end": "06:00"}}])
def test_tuning_leaves_the_identity_alone(change: dict[str, Any]) -> None:
    assert plan_identity(plan(change)) == plan_identity(plan())
    assert plan_hash(plan(change)) != plan_hash(plan())


@pytest.mark.parametrize("change", [{"nodes.exclude": ["node-3"]}, {"cilium.pod_cidr": "10.246.0.0/16"},
                                    {"cilium.tunnel_port": 8474}, {"order.canaries": ["node-2"]},
                                    {"state.configmap_name": "elsewhere"}, {"name": "other"},
                                    {"probes.namespace": "other-probes"}])
def test_defining_fields_change_the_identity(change: dict[str, Any]) -> None:
    assert plan_identity(plan(change)) != plan_identity(plan())


# ------------------------------------------------------------------ adopt_plan
def test_the_same_plan_is_adopted_without_a_write() -> None:
    cp = run_of(plan())
    assert adopt_plan(cp, plan(), WHO, LATER) is cp
    assert same_run(cp, plan())


def test_a_tuning_change_is_audited_with_old_new_who_and_when() -> None:
    cp = run_of(plan())
    override = {"reason": "shop owners accept a short outage", "approved_by": "bob", "after": "1m"}
    new = plan({"drain.timeout": "20m", "placement.strategy": "drain", "drain.pdb_override": override})
    adopted = adopt_plan(cp, new, WHO, LATER)
    when = "2026-11-22T11:00:00+00:00"
    assert adopted.audit == (
        f"drain.timeout: 5m → 20m (by {WHO} at {when})",
        f"drain.pdb_override.reason: unset → shop owners accept a short outage (by {WHO} at {when})",
        f"drain.pdb_override.approved_by: unset → bob (by {WHO} at {when})",
        f"drain.pdb_override.after: unset → 1m (by {WHO} at {when})",
        f"placement.strategy: in-place → drain (by {WHO} at {when})")
    assert adopted.plan_tuning["drain.timeout"] == "20m"
    assert adopted.plan_hash == cp.plan_hash and adopted.nodes == cp.nodes
    assert adopt_plan(adopted, new, WHO, LATER) is adopted           # adopted once, not again
    back = adopt_plan(adopted, plan(), "carol@desk/7", LATER)        # and back: audited again
    assert back.audit[-1] == f"placement.strategy: drain → in-place (by carol@desk/7 at {when})"
    assert back.plan_tuning == cp.plan_tuning


def test_the_outage_tolerance_may_change_on_resume_and_is_audited() -> None:
    cp = run_of(plan())
    adopted = adopt_plan(cp, plan({"api.outage_tolerance": "30m"}), WHO, LATER)
    assert adopted.audit == (f"api.outage_tolerance: 10m → 30m (by {WHO} at 2026-11-22T11:00:00+00:00)",)
    assert adopted.plan_hash == cp.plan_hash and adopted.plan_tuning["api.outage_tolerance"] == "30m"


def test_many_tuning_changes_are_summed_up_and_the_audit_stays_capped() -> None:
    cp = run_of(plan()).model_copy(update={"audit": tuple(f"note {i}" for i in range(15))})
    changes = {"drain.timeout": "20m", "drain.retry_interval": "9s", "recycle.timeout": "9m", "verify.timeout": "9m",
               "rollback.timeout": "9m", "finalize.timeout": "9m", "max_failures": 2, "rollback.halt_after": 3,
               "probes.checks.tries": 5, "probes.checks.peers": 3}
    adopted = adopt_plan(cp, plan(changes), WHO, LATER)
    assert len(adopted.audit) == 20
    assert adopted.audit[-1].startswith("and 3 more tuning field(s): ")
    assert sum(1 for note in adopted.audit if "(by alice@laptop/4242" in note) == 8
    assert all(adopted.plan_tuning[k] == v for k, v in changes.items())


def test_a_long_value_is_shortened_in_the_audit() -> None:
    cp = run_of(plan())
    adopted = adopt_plan(cp, plan({"verify.args": ["netexec", "--http-port=8080", "--" + "x" * 200]}), WHO, LATER)
    assert len(adopted.audit[-1]) < 240 and "…" in adopted.audit[-1]


@pytest.mark.parametrize(("change", "field"), [({"nodes.names": ["node-1", "node-2"]}, "nodes.names"),
                                               ({"nodes.exclude": ["node-3"]}, "nodes.exclude"),
                                               ({"cilium.agent.daemonset": "cilium-agent"}, "cilium.agent.daemonset"),
                                               ({"state.lease_name": "other-lock"}, "state.lease_name")])
def test_a_defining_change_is_refused_naming_the_field_and_digests(change: dict[str, Any], field: str) -> None:
    cp = run_of(plan())
    new = plan({**change, "drain.timeout": "20m"})
    with pytest.raises(PlanMismatch) as refused:
        adopt_plan(cp, new, WHO, LATER)
    text = str(refused.value)
    old_digest, new_digest = cp.plan_digests[field], identity_record(new)["plan_digests"][field]
    assert f"{field} (digest {old_digest} → {new_digest})" in text
    assert text.split("define the run: ", 1)[1].split(". Resume", 1)[0] == \
        f"{field} (digest {old_digest} → {new_digest})"                 # the tuning change is no reason
    assert "plan that started the run" in text and "abort" in text
    assert not same_run(cp, new)
    assert [d[0] for d in plan_changes(cp, new).defining] == [field]


def test_a_defining_field_unknown_to_the_runs_version_is_recorded_not_refused() -> None:
    cp = run_of(plan())
    digests = dict(cp.plan_digests)
    del digests["probes.host_port"]
    older = cp.model_copy(update={"plan_digests": digests, "plan_hash": "0" * 16})
    adopted = adopt_plan(older, plan(), WHO, LATER)
    assert adopted.plan_digests == cp.plan_digests and adopted.plan_hash == cp.plan_hash
    assert adopted.audit[-1].startswith("defining field(s) recorded: probes.host_port")


# ------------------------------------------------------------------ checkpoints of the previous version
def legacy(p: MigrationPlan) -> dict[str, str]:
    """A checkpoint as schema 1 wrote it: the whole plan's hash, no digests, no tuning."""
    cp = run_of(p).model_copy(update={"plan_hash": plan_hash(p), "plan_digests": {}, "plan_tuning": {}})
    encoded = to_configmap_data(cp)
    run = json.loads(encoded["run.json"])
    run["schema_version"] = 1
    assert "plan_digests" not in run and "plan_tuning" not in run
    return {**encoded, "run.json": json.dumps(run, separators=(",", ":"), sort_keys=True)}


def test_a_schema_1_checkpoint_loads_and_is_upgraded_with_its_original_plan() -> None:
    old = from_configmap_data(legacy(plan()))
    assert old.schema_version == 1
    upgraded = adopt_plan(old, plan(), WHO, LATER)
    assert upgraded.schema_version == SCHEMA_VERSION
    assert (upgraded.plan_hash, upgraded.plan_digests, upgraded.plan_tuning) == \
           tuple(identity_record(plan()).values())
    assert upgraded.audit[-1].startswith(f"checkpoint upgraded to schema {SCHEMA_VERSION}")
    assert from_configmap_data(to_configmap_data(upgraded)) == upgraded
    later = adopt_plan(upgraded, plan({"drain.timeout": "20m"}), WHO, LATER)  # tuning may change from now on
    assert later.audit[-1].startswith("drain.timeout: 5m → 20m")


def test_a_schema_1_checkpoint_refuses_any_other_plan_saying_why() -> None:
    old = from_configmap_data(legacy(plan()))
    with pytest.raises(PlanMismatch, match="older migrator.*whole plan.*original plan file, unchanged"):
        adopt_plan(old, plan({"drain.timeout": "20m"}), WHO, LATER)
    assert not same_run(old, plan({"drain.timeout": "20m"})) and same_run(old, plan())
    assert plan_changes(old, plan({"drain.timeout": "20m"})).legacy


def test_status_lines_say_what_differs() -> None:
    cp = run_of(plan())
    lines = plan_changes(cp, plan({"drain.timeout": "20m", "nodes.exclude": ["node-3"]})).lines()
    assert lines[0].startswith("nodes.exclude: differs (digest ") and "refuses" in lines[0]
    assert lines[1] == "drain.timeout: 5m → 20m; tuning: adopted on `resume --plan`"


def test_the_checkpoint_stays_small_at_5000_nodes() -> None:
    names = [f"ip-10-0-{i // 250}-{i % 250}.eu-west-1.compute.internal" for i in range(5000)]
    big = plan({"nodes.names": names, "order.canaries": names[:3]})
    cp = run_of(big).model_copy(update={"nodes": tuple(NodeRecord(name=n, phase=NodePhase.DONE) for n in names)})
    record = json.loads(to_configmap_data(cp)["run.json"])
    identity_bytes = len(json.dumps({k: record[k] for k in ("plan_hash", "plan_digests", "plan_tuning")}))
    assert identity_bytes < 4096            # digests, not the 5,000 names
    assert configmap_size(to_configmap_data(cp)) < 256 * 1024
