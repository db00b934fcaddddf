"""``migrator manifests``: only what is asked, named after the plan, a hardened pod, a deadline
from the plan, and every bad flag refused with one line and nothing printed.

The CLI runs in-process (``migrator.cli.main``); the objects are checked with the Kubernetes
1.32 schemas (``kubernetes_validate``)."""

from __future__ import annotations

import contextlib
import io
from datetime import timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from migrator.cli import main
from migrator.manifest_flags import cron_problem, image_problem
from migrator.manifests import Request, bounded, deadline, object_name
from migrator.model.plan import load_plan, parse_plan

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "plans" / "example.yaml"
CANARY = ROOT / "plans" / "canary.yaml"


def manifests(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["manifests", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def docs_of(*args: str) -> list[dict]:
    code, out, err = manifests(*args)
    assert code == 0, err
    return list(yaml.safe_load_all(out))


def plan_file(tmp_path: Path, changes: dict, source: Path = EXAMPLE, name: str = "plan.yaml") -> Path:
    data = yaml.safe_load(source.read_text())
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_job_alone_is_valid_hardened_and_carries_the_plan():
    docs = docs_of("--plan", str(EXAMPLE), "--job", "--nodes", "6", "--namespace", "kube-system",
                   "--image", "example.org/migrator:1", "--skip-check", "calico.autodetection")
    assert [d["kind"] for d in docs] == ["ClusterRole", "ServiceAccount", "ClusterRoleBinding", "ConfigMap", "Job"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)
    by_kind = {d["kind"]: d for d in docs}
    assert by_kind["ConfigMap"]["data"]["plan.yaml"] == EXAMPLE.read_text()
    assert by_kind["ConfigMap"]["metadata"]["name"] == "migrator-example-plan"
    assert by_kind["ClusterRoleBinding"]["subjects"] == [{"kind": "ServiceAccount", "name": "migrator-example",
                                                          "namespace": "kube-system"}]
    job = by_kind["Job"]
    assert job["metadata"]["name"] == "migrator-example-run"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "example.org/migrator:1"
    assert container["args"][:3] == ["run", "--plan", "/etc/migrator/plan.yaml"]
    assert container["args"][-2:] == ["--skip-check", "calico.autodetection"]
    assert pod["serviceAccountName"] == "migrator-example"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardened = container["securityContext"]
    assert hardened["readOnlyRootFilesystem"] is True and hardened["allowPrivilegeEscalation"] is False
    assert hardened["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    # a read-only root: every path the tool writes (HOME, the working directory) is an emptyDir
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", "/work"} <= writable and container["workingDir"] == "/work"
    # metrics on the named port, kept up after the run so Prometheus sees how it ended
    args = container["args"]
    assert args[args.index("--metrics-port") + 1] == "9090" and int(args[args.index("--metrics-linger") + 1]) > 0
    assert container["ports"] == [{"name": "metrics", "containerPort": 9090, "protocol": "TCP"}]


def test_cronjob_alone_runs_the_canary_and_forbids_overlap():
    docs = docs_of("--plan", str(CANARY), "--cronjob", "--schedule", "30 2 * * mon-fri")
    assert [d["kind"] for d in docs] == ["ClusterRole", "ServiceAccount", "ClusterRoleBinding", "ConfigMap", "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32", strict=True)
    cron = docs[-1]
    assert cron["metadata"]["name"] == "migrator-canary-canary"
    assert cron["spec"]["schedule"] == "30 2 * * mon-fri" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    spec = cron["spec"]["jobTemplate"]["spec"]
    assert spec["backoffLimit"] == 0
    plan = load_plan(CANARY)
    assert spec["activeDeadlineSeconds"] == deadline(plan, 1, canary=True).total_seconds()
    assert spec["template"]["spec"]["containers"][0]["args"][0] == "canary"


def test_two_plans_share_only_the_cluster_role(tmp_path):
    other = plan_file(tmp_path, {"name": "other"})
    first = {(d["kind"], d["metadata"]["name"]) for d in docs_of("--plan", str(EXAMPLE), "--job", "--nodes", "3")}
    second = {(d["kind"], d["metadata"]["name"]) for d in docs_of("--plan", str(other), "--job", "--nodes", "3")}
    assert first & second == {("ClusterRole", "migrator")}


def test_names_are_dns_labels_bounded_stable_and_distinct():
    long_a = "a." + "x" * 200 + ".one"
    long_b = "a." + "x" * 200 + ".two"
    names = [bounded(long_a, 40), bounded(long_a, 40), bounded(long_b, 40)]
    assert names[0] == names[1] != names[2]
    assert all(len(n) <= 40 and n.replace("-", "").isalnum() and n == n.lower() for n in names)
    plan = parse_plan({**yaml.safe_load(EXAMPLE.read_text()), "name": long_a})
    for suffix in ("", "plan", "run", "canary"):
        name = object_name(plan, suffix)
        assert len(name) <= 52 and name.endswith(suffix) and not name.startswith("-")


def test_deadline_follows_the_plans_timeouts_and_node_count():
    plan = load_plan(EXAMPLE)
    # setup: probe fleet 5m + API outage 10m + 10m; per node: agent 5m + drain 5m + verify 3m + recycle 5m
    # + probes 2m + rollback 10m = 30m; 6 nodes one at a time = 6 waves + 1 for control-plane nodes
    assert deadline(plan, 6, canary=False) == timedelta(minutes=25 + 7 * 30)
    wider = parse_plan({**yaml.safe_load(EXAMPLE.read_text()), "concurrency": {"max_unavailable": 3}})
    assert deadline(wider, 6, canary=False) == timedelta(minutes=25 + 3 * 30)
    windowed = parse_plan({**yaml.safe_load(EXAMPLE.read_text()),
                           "gates": {"window": {"start": "01:00", "end": "03:00", "days": ["sat"]}}})
    # a node may wait a week less the 2h window (+1h for a clock change) for the window to open
    assert deadline(windowed, 6, canary=False) == timedelta(minutes=25 + 7 * 30) + 7 * timedelta(days=7, hours=-1)


def test_nodes_comes_from_the_plan_list_or_the_flag(tmp_path):
    listed = plan_file(tmp_path, {"nodes": {"names": ["node-1", "node-2"]}})
    job = docs_of("--plan", str(listed), "--job")[-1]
    assert job["spec"]["activeDeadlineSeconds"] == deadline(load_plan(listed), 2, canary=False).total_seconds()
    code, out, err = manifests("--plan", str(listed), "--job", "--nodes", "5")
    assert (code, out) == (2, "") and "--nodes 5: the plan lists its 2 nodes; drop --nodes" in err


BAD_FLAGS = [
    (["--plan", "{example}"], "choose what to print: --job"),
    (["--plan", "{example}", "--job"], "--nodes: the plan selects its nodes in the cluster"),
    (["--plan", "{example}", "--cronjob", "--nodes", "6"], "--cronjob: the plan has no canary section"),
    (["--plan", "{canary}", "--job", "--schedule", "0 3 * * *"], "--schedule: applies to the canary CronJob only"),
    (["--plan", "{canary}", "--cronjob", "--schedule", "0 3 * *"], "--schedule '0 3 * *': 4 fields; a schedule has 5"),
    (["--plan", "{canary}", "--cronjob", "--schedule", "61 * * * *"], "minute '61': values must be within 0-59"),
    (["--plan", "{canary}", "--job", "--namespace", "Kube_System"], "--namespace 'Kube_System': not an RFC 1123"),
    (["--plan", "{canary}", "--job", "--image", "Ghcr.io/Migrator:latest"], "--image 'Ghcr.io/Migrator:latest'"),
    (["--plan", "{canary}", "--job", "--nodes", "0"], "--nodes '0': not a whole number of at least 1"),
    (["--plan", "{canary}", "--job", "--fleet"], "--fleet: already carries the Job"),
    (["--plan", "{canary}", "--job", "--hub-namespace", "hub"], "--hub-namespace: applies to --fleet only"),
    (["--plan", "{canary}", "--fleet", "--max-failures", "-1"], "--max-failures '-1': write a number of clusters"),
    (["--plan", "{canary}", "--fleet", "--min-success-time", "1d"], "--min-success-time '1d': write a whole number"),
    (["--plan", "{canary}", "--fleet", "--fleet-group", "canary"], "--fleet-group: names must be distinct"),
    (["--plan", "{canary}", "--fleet", "--fleet-group=-x"], "--fleet-group '-x': not a decision group name"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=[m.split(":")[0] for _, m in BAD_FLAGS])
def test_a_bad_flag_is_one_line_exit_2_and_prints_nothing(args, message):
    code, out, err = manifests(*(a.format(example=EXAMPLE, canary=CANARY) for a in args))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err, err


def test_a_plan_whose_configmap_exceeds_1_mib_is_refused(tmp_path):
    # under the plan file's own 1 MiB limit, but its ConfigMap (the text escaped in JSON, plus
    # metadata) is not; the bulk is comment lines, which YAML skips quickly
    path = tmp_path / "big.yaml"
    path.write_text(EXAMPLE.read_text() + ("# " + "x" * 60 + "\n") * 16_500)
    assert 1_000_000 < path.stat().st_size <= 1024 * 1024
    code, out, err = manifests("--plan", str(path), "--job")
    assert (code, out) == (2, "") and len(err.strip().splitlines()) == 1
    assert "--plan: its ConfigMap would be" in err and "over the 1048576 a ConfigMap may hold" in err


@pytest.mark.parametrize("schedule", ["0 3 * * 1", "*/15 * * * *", "0 0-23/2 1,15 * *", "0 4 ? JAN-MAR sun",
                                      "5/10 * * * *", "@hourly", "@weekly", "0 3 * * 0-6", "59 23 31 12 6"])
def test_schedules_kubernetes_accepts(schedule):
    assert cron_problem(schedule) == ""


@pytest.mark.parametrize(("schedule", "why"), [
    ("", "empty"), ("* * * * * *", "6 fields"), ("60 * * * *", "minute"), ("* 24 * * *", "hour"),
    ("* * 0 * *", "day of month"), ("* * * 13 *", "month"), ("* * * * 7", "day of week"), ("*/0 * * * *", "step"),
    ("5-1 * * * *", "starts after it ends"), ("* * * foo *", "month"), ("@every 1h", "unknown macro"),
    ("TZ=UTC 0 3 * * *", "time zone"), ("1,,2 * * * *", "minute")])
def test_schedules_kubernetes_refuses(schedule, why):
    assert why in cron_problem(schedule)


@pytest.mark.parametrize(("image", "good"), [
    ("ghcr.io/migrator/migrator:0.1.0", True), ("migrator", True), ("localhost:5000/m/migrator:v1", True),
    ("ghcr.io/migrator/migrator@sha256:" + "a" * 64, True), ("ghcr.io/migrator/migrator:1@sha256:" + "b" * 64, True),
    ("ghcr.io/Migrator/migrator", False), ("ghcr.io/migrator/migrator:", False), ("migrator:-bad", False),
    ("ghcr.io/migrator/migrator@sha256:abc", False), ("has space", False), ("", False)])
def test_image_references(image, good):
    assert (image_problem(image) == "") is good


def test_request_defaults_need_a_choice():
    from migrator.manifests import ManifestError
    from migrator.manifests import manifests as build

    plan = load_plan(CANARY)
    with pytest.raises(ManifestError, match="choose what to print"):
        build(Request(plan=plan, plan_text=CANARY.read_text(), namespace="kube-system", image="migrator"))
