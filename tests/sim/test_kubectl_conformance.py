"""kubectl's everyday read commands against the simulated cluster, compared with what
kube-apiserver and kubectl 1.32 print: the columns of ``kubectl get`` for every kind the
runbooks list, their cell formats, ``rollout history|undo|restart|status`` of a DaemonSet, and
``kubectl diff`` with its exit codes.

Expected outputs are written from the Kubernetes source and documentation, never from the
simulator's answers: the columns are those of kube-apiserver's printers
(pkg/printers/internalversion/printers.go; kubectl shows the ``priority: 1`` ones only with
``-o wide`` and adds NAMESPACE for ``-A`` and one column per ``-L`` label); a custom resource
whose CRD declares no ``additionalPrinterColumns`` prints NAME and AGE, a built-in kind without a
printer NAME and CREATED AT. ``kubectl rollout`` for DaemonSets reads their ControllerRevisions
(kubectl polymorphichelpers history.go and rollback.go: ``REVISION  CHANGE-CAUSE``, ``with
revision #N``, ``rolled back``, ``skipped rollback (current template already matches revision
N)``, ``no last revision to roll back to``, ``unable to find specified revision N in history``).
``kubectl diff`` exits 0 without differences, 1 with some, above 1 on an error (``kubectl diff
--help``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from migrator.cluster.convert import node_event
from tests.conftest import run_kubectl

pytestmark = pytest.mark.kubectl


def parse(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A kubectl table: its header names and its rows, cut at the header's column starts (kubectl
    aligns every cell on its column with at least three spaces between columns)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:^|(?<=\s\s))\S", header)]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    names = [header[a:b].strip() for a, b in bounds]
    rows = [{name: line[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)} for line in lines[1:]]
    return names, rows


def ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def stamp(**ago: float) -> str:
    return (datetime.now(UTC) - timedelta(**ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_get_events_prints_last_seen_type_reason_object_and_message(sim, kubectl) -> None:
    # the Event the migrator records for a node, and one a kubelet records in the events.k8s.io style
    recorded = node_event("node-1", reason="NodeCordoned", message="  cordoned for the migration\n", type="Normal",
                          namespace="default", when=datetime.now(UTC) - timedelta(seconds=90), uid=None)
    sim.store.create("events", recorded)
    sim.store.create("events", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": "cilium-x.1", "namespace": "kube-system"},
        "involvedObject": {"kind": "Pod", "name": "cilium-x", "namespace": "kube-system",
                           "fieldPath": "spec.containers{cilium-agent}"},
        "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
        "reportingComponent": "kubelet", "reportingInstance": "node-2", "eventTime": stamp(minutes=12),
        "series": {"count": 4, "lastObservedTime": stamp(minutes=3)}})

    header, rows = parse(ok(kubectl("get", "events", "-A")))
    assert header == ["NAMESPACE", "LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    by_reason = {r["REASON"]: r for r in rows}
    assert re.fullmatch(r"9\ds", by_reason["NodeCordoned"].pop("LAST SEEN"))
    assert by_reason["NodeCordoned"] == {"NAMESPACE": "default", "TYPE": "Normal", "REASON": "NodeCordoned",
                                         "OBJECT": "node/node-1", "MESSAGE": "cordoned for the migration"}
    assert re.fullmatch(r"3m(\ds)?", by_reason["BackOff"]["LAST SEEN"])
    assert (by_reason["BackOff"]["TYPE"], by_reason["BackOff"]["OBJECT"]) == ("Warning", "pod/cilium-x")

    header, rows = parse(ok(kubectl("get", "events", "-n", "kube-system", "-o", "wide")))
    assert header == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN",
                      "COUNT", "NAME"]
    backoff = next(r for r in rows if r["REASON"] == "BackOff")
    assert (backoff["SUBOBJECT"], backoff["SOURCE"], backoff["FIRST SEEN"], backoff["COUNT"], backoff["NAME"]) == (
        "spec.containers{cilium-agent}", "kubelet, node-2", "12m", "4", "cilium-x.1")


def test_get_pods_wide_prints_readiness_restarts_ip_and_node(sim, kubectl) -> None:
    header, rows = parse(ok(kubectl("get", "pods", "-A")))
    assert header == ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert all(re.fullmatch(r"\d+/\d+", r["READY"]) and re.fullmatch(r"\d+(s|m\d*s?)", r["AGE"]) for r in rows)

    nodes = {n["metadata"]["name"]: n for n in sim.store.list("nodes")}
    header, rows = parse(ok(kubectl("-n", "kube-system", "get", "pods", "-o", "wide", "-l", "k8s-app=cilium")))
    assert header == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    assert sorted(r["NODE"] for r in rows) == sorted(nodes)
    for r in rows:   # the agent runs with hostNetwork: its IP is its node's InternalIP
        internal = next(a["address"] for a in nodes[r["NODE"]]["status"]["addresses"] if a["type"] == "InternalIP")
        assert (r["READY"], r["STATUS"], r["RESTARTS"], r["IP"], r["NOMINATED NODE"], r["READINESS GATES"]) == (
            "1/1", "Running", "0", internal, "<none>", "<none>")

    # the runbooks' per-node view: a field selector, every namespace, wide
    _, rows = parse(ok(kubectl("get", "pods", "-A", "-o", "wide", "--field-selector", "spec.nodeName=node-1")))
    assert rows and {r["NODE"] for r in rows} == {"node-1"}


def test_get_nodes_prints_status_roles_version_and_wide_node_info(sim, kubectl) -> None:
    ok(kubectl("cordon", "node-2"))
    ok(kubectl("label", "node", "node-1", "io.cilium.migration/cilium-default=true"))
    header, rows = parse(ok(kubectl("get", "nodes", "-L", "io.cilium.migration/cilium-default")))
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "CILIUM-DEFAULT"]
    by_name = {r["NAME"]: r for r in rows}
    assert (by_name["cp-1"]["ROLES"], by_name["node-1"]["ROLES"]) == ("control-plane", "<none>")
    assert (by_name["node-1"]["STATUS"], by_name["node-2"]["STATUS"]) == ("Ready", "Ready,SchedulingDisabled")
    assert (by_name["node-1"]["CILIUM-DEFAULT"], by_name["node-3"]["CILIUM-DEFAULT"]) == ("true", "")
    assert all(re.fullmatch(r"v\d+\.\d+\.\d+", r["VERSION"]) for r in rows)

    header, rows = parse(ok(kubectl("get", "node", "node-1", "-o", "wide")))
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE",
                      "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    node = sim.store.get("nodes", None, "node-1")
    info = node["status"]["nodeInfo"]
    internal = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert [rows[0][k] for k in header[5:]] == [internal, "<none>", info["osImage"], info["kernelVersion"],
                                                 info["containerRuntimeVersion"]]


def test_get_daemonsets_prints_the_rollout_counts_and_node_selector(sim, kubectl) -> None:
    header, rows = parse(ok(kubectl("-n", "kube-system", "get", "ds")))
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE SELECTOR", "AGE"]
    cilium = next(r for r in rows if r["NAME"] == "cilium")
    selector = sim.store.get("apps/daemonsets", "kube-system", "cilium")["spec"]["template"]["spec"].get(
        "nodeSelector") or {}
    want = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"
    assert [cilium[k] for k in header[1:7]] == ["6", "6", "6", "6", "6", want]


def test_every_kind_the_runbooks_list_prints_its_printer_columns(sim, kubectl) -> None:
    sim.store.create("coordination.k8s.io/leases", {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                                    "metadata": {"name": "cni-migration-lock",
                                                                 "namespace": "kube-system"},
                                                    "spec": {"holderIdentity": "migrator-7f9c"}})
    sim.store.create("cilium.io/ciliumnodeconfigs", {"apiVersion": "cilium.io/v2", "kind": "CiliumNodeConfig",
                                                     "metadata": {"name": "cilium-default", "namespace": "kube-system"},
                                                     "spec": {"nodeSelector": {}, "defaults": {}}})
    expected = {
        ("get", "pdb", "-A"): ["NAMESPACE", "NAME", "MIN AVAILABLE", "MAX UNAVAILABLE", "ALLOWED DISRUPTIONS", "AGE"],
        ("-n", "kube-system", "get", "cm"): ["NAME", "DATA", "AGE"],
        ("-n", "kube-system", "get", "lease"): ["NAME", "HOLDER", "AGE"],
        ("-n", "kube-system", "get", "ciliumnodeconfigs"): ["NAME", "AGE"],
        ("get", "ippools.crd.projectcalico.org"): ["NAME", "AGE"],
        ("-n", "kube-system", "get", "controllerrevisions"): ["NAME", "CONTROLLER", "REVISION", "AGE"],
        ("get", "namespaces"): ["NAME", "STATUS", "AGE"],
        ("get", "svc", "-A"): ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"],
        ("get", "endpoints", "-n", "default"): ["NAME", "ENDPOINTS", "AGE"],
        ("get", "deploy", "-n", "kube-system"): ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        ("get", "rs", "-n", "kube-system"): ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        ("get", "crd"): ["NAME", "CREATED AT"],
    }
    seen: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for args, columns in expected.items():
        header, rows = parse(ok(kubectl(*args)))
        assert header == columns, args
        assert rows, args
        seen[args] = rows
    lease = seen[("-n", "kube-system", "get", "lease")]
    assert [(r["NAME"], r["HOLDER"]) for r in lease] == [("cni-migration-lock", "migrator-7f9c")]
    cilium_config = sim.store.get("configmaps", "kube-system", "cilium-config")
    assert next(r for r in seen[("-n", "kube-system", "get", "cm")] if r["NAME"] == "cilium-config")["DATA"] == \
        str(len(cilium_config["data"]))
    namespaces = {r["NAME"]: r["STATUS"] for r in seen[("get", "namespaces")]}
    assert namespaces["kube-system"] == "Active"
    kubernetes = next(r for r in seen[("get", "svc", "-A")] if r["NAME"] == "kubernetes")
    assert (kubernetes["TYPE"], kubernetes["EXTERNAL-IP"], kubernetes["PORT(S)"]) == ("ClusterIP", "<none>", "443/TCP")
    assert next(r for r in seen[("get", "crd")] if r["NAME"] == "ippools.crd.projectcalico.org")["CREATED AT"] == \
        sim.store.get("apiextensions.k8s.io/customresourcedefinitions", None,
                      "ippools.crd.projectcalico.org")["metadata"]["creationTimestamp"]
    revisions = seen[("-n", "kube-system", "get", "controllerrevisions")]
    assert {r["CONTROLLER"] for r in revisions} >= {"daemonset.apps/cilium", "daemonset.apps/calico-node"}


def history(kubectl) -> list[str]:
    """The revisions ``kubectl rollout history ds/cilium`` lists."""
    out = ok(kubectl("-n", "kube-system", "rollout", "history", "ds/cilium"))
    title, _, table = out.partition("\n")
    assert title.strip() == "daemonset.apps/cilium"
    header, rows = parse(table)
    assert header == ["REVISION", "CHANGE-CAUSE"]
    assert {r["CHANGE-CAUSE"] for r in rows} == {"<none>"}
    return [r["REVISION"] for r in rows]


def agent_hashes(kubectl) -> set[str]:
    _, rows = parse(ok(kubectl("-n", "kube-system", "get", "pods", "-l", "k8s-app=cilium",
                               "-L", "controller-revision-hash")))
    return {r["CONTROLLER-REVISION-HASH"] for r in rows}


def revisions(kubectl) -> dict[str, str]:
    """revision number -> ControllerRevision name, for the cilium DaemonSet."""
    _, rows = parse(ok(kubectl("-n", "kube-system", "get", "controllerrevisions", "-l", "k8s-app=cilium")))
    assert {r["CONTROLLER"] for r in rows} == {"daemonset.apps/cilium"}
    return {r["REVISION"]: r["NAME"] for r in rows}


def rolled_out(kubectl) -> None:
    assert "successfully rolled out" in ok(kubectl("-n", "kube-system", "rollout", "status", "ds/cilium",
                                                   "--timeout=60s"))


def test_rollout_history_restart_undo_of_the_cilium_daemonset(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(nodes=3)
    config = sim.write_kubeconfig(tmp_path / "kubeconfig")

    def kubectl(*args: str) -> Any:
        return run_kubectl(config, *args)

    assert history(kubectl) == ["1"]
    first = revisions(kubectl)["1"]
    assert agent_hashes(kubectl) == {first.removeprefix("cilium-")}
    nothing = kubectl("-n", "kube-system", "rollout", "undo", "ds/cilium")
    assert nothing.returncode == 1 and "no last revision to roll back to" in nothing.stderr

    assert ok(kubectl("-n", "kube-system", "rollout", "restart", "ds/cilium")).strip() == \
        "daemonset.apps/cilium restarted"
    rolled_out(kubectl)
    assert history(kubectl) == ["1", "2"]
    second = revisions(kubectl)["2"]
    assert agent_hashes(kubectl) == {second.removeprefix("cilium-")}
    shown = ok(kubectl("-n", "kube-system", "rollout", "history", "ds/cilium", "--revision=2"))
    assert shown.splitlines()[0] == "daemonset.apps/cilium with revision #2"
    assert "Pod Template:" in shown and "kubectl.kubernetes.io/restartedAt" in shown
    assert "kubectl.kubernetes.io/restartedAt" not in ok(kubectl("-n", "kube-system", "rollout", "history",
                                                                 "ds/cilium", "--revision=1"))

    assert ok(kubectl("-n", "kube-system", "rollout", "undo", "ds/cilium")).strip() == \
        "daemonset.apps/cilium rolled back"
    rolled_out(kubectl)
    assert history(kubectl) == ["2", "3"]   # the first template came back as revision 3
    assert revisions(kubectl) == {"2": second, "3": first}
    assert agent_hashes(kubectl) == {first.removeprefix("cilium-")}
    annotations = ok(kubectl("-n", "kube-system", "get", "ds", "cilium",
                             "-o", "jsonpath={.spec.template.metadata.annotations}"))
    assert "restartedAt" not in annotations

    skipped = ok(kubectl("-n", "kube-system", "rollout", "undo", "ds/cilium", "--to-revision=3"))
    assert skipped.strip() == "daemonset.apps/cilium skipped rollback (current template already matches revision 3)"
    missing = kubectl("-n", "kube-system", "rollout", "undo", "ds/cilium", "--to-revision=9")
    assert missing.returncode == 1 and "unable to find specified revision 9 in history" in missing.stderr


def test_diff_of_an_unchanged_object_is_empty_and_a_change_exits_one(sim, kubectl, tmp_path: Path) -> None:
    for kind, name in (("cm", "cilium-config"), ("ds", "cilium"), ("deploy", "coredns")):
        live = tmp_path / f"{kind}.yaml"
        live.write_text(ok(kubectl("-n", "kube-system", "get", kind, name, "-o", "yaml")))
        for mode in ((), ("--server-side",)):
            same = kubectl("diff", *mode, "-f", str(live))
            assert (same.returncode, same.stdout) == (0, ""), (kind, mode, same.stdout + same.stderr)
    live = tmp_path / "cm.yaml"
    changed = re.sub(r"(?m)^  tunnel-port: .*$", '  tunnel-port: "9999"', live.read_text())
    assert changed != live.read_text()
    live.write_text(changed)
    diff = kubectl("diff", "-f", str(live))
    assert diff.returncode == 1, diff.stderr
    assert re.search(r'(?m)^\+  tunnel-port: "9999"$', diff.stdout)
    assert re.search(r"(?m)^-  tunnel-port: ", diff.stdout)

    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: no-such-namespace}\n")
    failed = kubectl("diff", "-f", str(elsewhere))
    assert failed.returncode > 1 and 'namespaces "no-such-namespace" not found' in failed.stderr
