"""The column specs of the simulated server's Tables, cell by cell.

Expected cells come from kube-apiserver's printers (pkg/printers/internalversion/printers.go:
printPod, printNode, printEvent, printPodDisruptionBudget, printService, printEndpoints,
printControllerRevision), the default table convertor (NAME, CREATED AT), apiextensions'
table convertor for custom resources (NAME plus the additionalPrinterColumns, or NAME and AGE
when there are none) and ``duration.HumanDuration`` for every age.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from migrator.sim import tables
from migrator.sim.registry import ApiResource, build_registry

NOW = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
REGISTRY = build_registry()


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def res(group: str, version: str, plural: str) -> ApiResource:
    found = REGISTRY.get(group, version, plural)
    assert found is not None
    return found


def row(resource: ApiResource, obj: dict[str, Any]) -> dict[str, Any]:
    """The one row of ``obj``'s Table as {column name: cell}."""
    table = tables.table(resource, [obj], now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    return dict(zip(names, table["rows"][0]["cells"], strict=True))


def meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "default", "creationTimestamp": ago(hours=3), **extra}


@pytest.mark.parametrize(("seconds", "text"), [
    (-2, "<invalid>"), (-1, "0s"), (0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (599, "9m59s"), (600, "10m"), (179 * 60 + 59, "179m"), (3 * 3600, "3h"), (3 * 3600 + 300, "3h5m"),
    (8 * 3600 + 300, "8h"), (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"),
    (729 * 86400, "729d"), (800 * 86400, "2y70d"), (3 * 365 * 86400, "3y"), (9 * 365 * 86400, "9y"),
])
def test_ages_read_as_human_duration_writes_them(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_pod_columns_and_their_priorities_are_the_printers() -> None:
    table = tables.table(res("", "v1", "pods"), [], now=NOW)
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Status", "string", 0), ("Restarts", "string", 0),
        ("Age", "string", 0), ("IP", "string", 1), ("Node", "string", 1), ("Nominated Node", "string", 1),
        ("Readiness Gates", "string", 1)]
    assert table["columnDefinitions"][0]["format"] == "name"


def _pod(statuses: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": meta("web-1"),
            "spec": {"nodeName": "node-1", "containers": [{"name": c["name"]} for c in statuses]},
            "status": {"phase": "Running", "podIP": "10.0.0.7", "podIPs": [{"ip": "10.0.0.7"}],
                       "containerStatuses": statuses, **status}}


def test_a_running_pod_row() -> None:
    cells = row(res("", "v1", "pods"), _pod([{"name": "web", "ready": True, "restartCount": 0,
                                              "state": {"running": {}}}]))
    assert cells == {"Name": "web-1", "Ready": "1/1", "Status": "Running", "Restarts": "0", "Age": "3h",
                     "IP": "10.0.0.7", "Node": "node-1", "Nominated Node": "<none>", "Readiness Gates": "<none>"}


def test_restarts_say_when_the_last_container_restarted_and_waiting_reasons_win() -> None:
    pod = _pod([{"name": "web", "ready": False, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(minutes=15)}}},
                {"name": "side", "ready": True, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 0, "finishedAt": ago(hours=1)}}}])
    cells = row(res("", "v1", "pods"), pod)
    assert (cells["Ready"], cells["Status"], cells["Restarts"]) == ("1/2", "CrashLoopBackOff", "3 (15m ago)")


def test_a_deleted_running_pod_is_terminating_and_a_finished_one_keeps_its_reason() -> None:
    running = _pod([{"name": "web", "ready": True, "state": {"running": {}}}])
    running["metadata"]["deletionTimestamp"] = ago(seconds=5)
    assert row(res("", "v1", "pods"), running)["Status"] == "Terminating"
    done = _pod([{"name": "job", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
                phase="Succeeded")
    done["metadata"]["deletionTimestamp"] = ago(seconds=5)
    table = tables.table(res("", "v1", "pods"), [done], now=NOW)
    assert table["rows"][0]["cells"][1:3] == ["0/1", "Completed"]
    assert table["rows"][0]["conditions"][0]["type"] == "Completed"
    unassigned = {"kind": "Pod", "metadata": meta("p"), "spec": {"containers": [{"name": "c"}],
                                                                 "readinessGates": [{"conditionType": "x"}]},
                  "status": {"phase": "Pending", "conditions": [{"type": "x", "status": "True"}]}}
    cells = row(res("", "v1", "pods"), unassigned)
    assert (cells["Status"], cells["IP"], cells["Node"], cells["Readiness Gates"]) == ("Pending", "<none>",
                                                                                       "<none>", "1/1")


def test_node_rows() -> None:
    node = {"kind": "Node", "metadata": {"name": "cp-1", "creationTimestamp": ago(days=3, hours=4),
                                         "labels": {"node-role.kubernetes.io/control-plane": "",
                                                    "kubernetes.io/role": "master"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "Ready", "status": "False"}],
                       "addresses": [{"type": "Hostname", "address": "cp-1"},
                                     {"type": "InternalIP", "address": "172.18.0.10"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Ubuntu", "kernelVersion": "6.8",
                                    "containerRuntimeVersion": ""}}}
    assert row(res("", "v1", "nodes"), node) == {
        "Name": "cp-1", "Status": "NotReady,SchedulingDisabled", "Roles": "control-plane,master", "Age": "3d4h",
        "Version": "v1.32.4", "Internal-IP": "172.18.0.10", "External-IP": "<none>", "OS-Image": "Ubuntu",
        "Kernel-Version": "6.8", "Container-Runtime": "<unknown>"}
    bare = {"kind": "Node", "metadata": {"name": "n"}, "status": {}}
    cells = row(res("", "v1", "nodes"), bare)
    assert (cells["Status"], cells["Roles"], cells["Age"]) == ("Unknown", "<none>", "<unknown>")


def test_event_rows_name_the_object_and_fall_back_through_the_timestamps() -> None:
    columns = [(c["name"], c["priority"]) for c in tables.table(res("", "v1", "events"), [])["columnDefinitions"]]
    assert columns == [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1),
                       ("Source", 1), ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    event = {"kind": "Event", "metadata": meta("node-1.17a"), "involvedObject": {"kind": "Node", "name": "node-1"},
             "reason": "Cordoned", "message": "  cordoned by migrator \n", "type": "Normal",
             "source": {"component": "migrator"}, "firstTimestamp": ago(hours=1), "lastTimestamp": ago(seconds=90),
             "count": 4}
    assert row(res("", "v1", "events"), event) == {
        "Last Seen": "90s", "Type": "Normal", "Reason": "Cordoned", "Object": "node/node-1", "Subobject": "",
        "Source": "migrator", "Message": "cordoned by migrator", "First Seen": "60m", "Count": 4,
        "Name": "node-1.17a"}
    new_api = {"kind": "Event", "metadata": meta("x"), "involvedObject": {"kind": "Pod"}, "type": "Warning",
               "reportingComponent": "kubelet", "reportingInstance": "node-2", "eventTime": ago(minutes=5),
               "series": {"count": 7, "lastObservedTime": ago(seconds=30)}}
    cells = row(res("", "v1", "events"), new_api)
    assert (cells["Last Seen"], cells["First Seen"], cells["Object"], cells["Source"], cells["Count"]) == (
        "30s", "5m", "pod", "kubelet, node-2", 7)
    assert row(res("", "v1", "events"), {"kind": "Event", "metadata": meta("y"), "involvedObject": {}})[
        "Last Seen"] == "<unknown>"


def test_workload_and_budget_rows() -> None:
    ds = {"kind": "DaemonSet", "metadata": meta("cilium"),
          "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                   "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                         "containers": [{"name": "agent", "image": "cilium:1"},
                                                        {"name": "sidecar", "image": "busybox"}]}}},
          "status": {"desiredNumberScheduled": 6, "currentNumberScheduled": 6, "numberReady": 5,
                     "updatedNumberScheduled": 4, "numberAvailable": 5}}
    assert list(row(res("apps", "v1", "daemonsets"), ds).values()) == [
        "cilium", 6, 6, 5, 4, 5, "kubernetes.io/os=linux", "3h", "agent,sidecar", "cilium:1,busybox", "k8s-app=cilium"]
    deploy = {"kind": "Deployment", "metadata": meta("web"),
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"},
                                                   "matchExpressions": [{"key": "tier", "operator": "In",
                                                                         "values": ["a", "b"]}]},
                       "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
              "status": {"readyReplicas": 2, "updatedReplicas": 3}}
    assert list(row(res("apps", "v1", "deployments"), deploy).values()) == [
        "web", "2/3", 3, 0, "3h", "nginx", "nginx:1.27", "app=web,tier in (a,b)"]
    pdb = {"kind": "PodDisruptionBudget", "metadata": meta("web"), "spec": {"maxUnavailable": "50%"},
           "status": {"disruptionsAllowed": 1}}
    assert list(row(res("policy", "v1", "poddisruptionbudgets"), pdb).values()) == ["web", "N/A", "50%", 1, "3h"]
    cm = {"kind": "ConfigMap", "metadata": meta("c"), "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}}
    assert list(row(res("", "v1", "configmaps"), cm).values()) == ["c", 3, "3h"]
    lease = {"kind": "Lease", "metadata": meta("cni-migration-lock"), "spec": {}}
    assert list(row(res("coordination.k8s.io", "v1", "leases"), lease).values()) == ["cni-migration-lock", "", "3h"]


def test_service_and_endpoints_rows() -> None:
    svc = {"kind": "Service", "metadata": meta("web"),
           "spec": {"type": "NodePort", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
                    "selector": {"app": "web"},
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}
    assert list(row(res("", "v1", "services"), svc).values()) == [
        "web", "NodePort", "10.96.0.9", "<none>", "80:30080/TCP,53/UDP", "3h", "app=web"]
    lb = {"kind": "Service", "metadata": meta("lb"), "spec": {"type": "LoadBalancer", "ports": []}}
    assert list(row(res("", "v1", "services"), lb).values())[2:5] == ["<none>", "<pending>", "<none>"]
    ep = {"kind": "Endpoints", "metadata": meta("dns"),
          "subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                       "ports": [{"name": "dns", "port": 53}, {"name": "metrics", "port": 9153}]}]}
    assert row(res("", "v1", "endpoints"), ep)["Endpoints"] == "10.0.0.1:53,10.0.0.2:53,10.0.0.1:9153 + 1 more..."
    assert row(res("", "v1", "endpoints"), {"kind": "Endpoints", "metadata": meta("e")})["Endpoints"] == "<none>"


def test_controller_revisions_name_their_controller_by_group_kind() -> None:
    rev = {"kind": "ControllerRevision", "revision": 3,
           "metadata": meta("cilium-abc", ownerReferences=[{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                                            "name": "cilium", "uid": "u", "controller": True}])}
    assert list(row(res("apps", "v1", "controllerrevisions"), rev).values()) == [
        "cilium-abc", "daemonset.apps/cilium", 3, "3h"]
    orphan = {"kind": "ControllerRevision", "revision": 1, "metadata": meta("x")}
    assert row(res("apps", "v1", "controllerrevisions"), orphan)["Controller"] == "<none>"


def test_a_kind_without_a_printer_gets_the_default_convertor() -> None:
    role = {"kind": "ClusterRole", "metadata": {"name": "view", "creationTimestamp": "2026-12-07T01:02:03Z"}}
    table = tables.table(res("rbac.authorization.k8s.io", "v1", "clusterroles"), [role], now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [("Name", "string"), ("Created At", "date")]
    assert table["rows"][0]["cells"] == ["view", "2026-12-07T01:02:03Z"]


def test_custom_resources_print_their_crd_columns() -> None:
    cep = {"kind": "CiliumEndpoint", "metadata": meta("web-1"),
           "status": {"id": 1234, "identity": {"id": 5678}, "state": "ready",
                      "policy": {"ingress": {"state": "<status disabled>"}, "egress": {"state": "<status disabled>"}},
                      "networking": {"addressing": [{"ipv4": "10.0.1.5"}]}}}
    cells = row(res("cilium.io", "v2", "ciliumendpoints"), cep)
    assert cells == {"Name": "web-1", "Endpoint ID": 1234, "Identity ID": 5678,
                     "Ingress Enforcement": "<status disabled>", "Egress Enforcement": "<status disabled>",
                     "Visibility Policy": None, "Endpoint State": "ready", "IPv4": "10.0.1.5", "IPv6": None}
    cnc = {"kind": "CiliumNodeConfig", "metadata": meta("cni-migration"), "spec": {}}
    table = tables.table(res("cilium.io", "v2", "ciliumnodeconfigs"), [cnc], now=NOW)
    assert [(c["name"], c["type"]) for c in table["columnDefinitions"]] == [("Name", "string"), ("Age", "date")]
    assert table["rows"][0]["cells"] == ["cni-migration", "3h"]


def test_rows_carry_the_object_include_object_asks_for() -> None:
    cm = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": meta("c", labels={"a": "b"}), "data": {"k": "v"}}
    pods = res("", "v1", "configmaps")
    default = tables.table(pods, [cm], now=NOW)["rows"][0]["object"]
    assert default == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": cm["metadata"]}
    assert tables.table(pods, [cm], include="Object", now=NOW)["rows"][0]["object"] == cm
    assert tables.table(pods, [cm], include="None", now=NOW)["rows"][0]["object"] is None
