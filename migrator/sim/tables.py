"""Server-side printing: the ``meta.k8s.io/v1`` Table kubectl asks for with ``as=Table``.

A real API server, not kubectl, decides the columns of ``kubectl get``. kube-apiserver builds
them from its printers (``pkg/printers/internalversion``), always in their wide form: kubectl
drops the ``priority: 1`` columns unless asked for ``-o wide``. Here each kind is one column spec,
a tuple of ``Column`` (name, type, priority, and how to read its cell from the object), so the
Table of every kind is built by the same code:

* the built-in kinds an operator looks at during a migration carry the real printers' columns
  and cell formats (``1/1``, ``<none>``, ``<unknown>``, ``kind/name``, ages as
  ``duration.HumanDuration`` writes them);
* a built-in kind without a printer gets the default convertor's NAME and CREATED AT;
* a custom resource gets NAME plus its CRD's ``additionalPrinterColumns`` (simple JSONPaths),
  or NAME and AGE when the CRD declares none, as apiextensions-apiserver does.

Each row carries the object as ``includeObject`` asks: ``PartialObjectMetadata`` by default
(kubectl reads the namespace and labels from it), ``Object`` or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from migrator.sim.registry import ApiResource

Obj = dict[str, Any]
Cell = Callable[[Obj, datetime], Any]


# ------------------------------------------------------------------ cell formats
def human_duration(seconds: float) -> str:
    """A duration as ``k8s.io/apimachinery/pkg/util/duration.HumanDuration`` writes it."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        return f"{minutes}m{secs % 60}s" if secs % 60 else f"{minutes}m"
    if minutes < 3 * 60:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _parse_time(ts: Any) -> datetime | None:
    if not isinstance(ts, str) or not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return None


def since(ts: Any, now: datetime) -> str:
    """Time elapsed since an RFC 3339 timestamp; ``<unknown>`` for none."""
    then = _parse_time(ts)
    if then is None:
        return "<unknown>"
    return human_duration((now - then).total_seconds())


def age(ts: str | None, now: datetime | None = None) -> str:
    return since(ts, now or datetime.now(UTC))


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def format_labels(labels: dict[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when empty."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "<none>"


def format_selector(selector: Obj | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` for none, ``<all>`` for an empty one."""
    if selector is None:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op, values = expr.get("operator"), ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{expr['key']} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({values})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts) or "<all>"


def _containers(template_spec: Obj | None) -> tuple[str, str]:
    containers = (template_spec or {}).get("containers") or []
    return ",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers)


# ------------------------------------------------------------------ columns
@dataclass(frozen=True)
class Column:
    """One column of a kind's Table: its definition and how to read its cell."""

    name: str
    cell: Cell
    type: str = "string"
    priority: int = 0
    format: str = ""
    description: str = ""

    def definition(self) -> Obj:
        return {"name": self.name, "type": self.type, "format": self.format,
                "description": self.description or self.name, "priority": self.priority}


NAME = Column("Name", lambda o, now: o["metadata"]["name"], format="name",
              description="Name must be unique within a namespace.")
AGE = Column("Age", lambda o, now: since(o["metadata"].get("creationTimestamp"), now),
             description="CreationTimestamp is a timestamp representing the server time when this object was created.")


def field(name: str, *path: str, type: str = "string", default: Any = "", priority: int = 0) -> Column:
    """A column that prints one field, ``default`` when it is absent."""
    def cell(o: Obj, now: datetime) -> Any:
        value = _get(o, *path)
        return default if value is None else value
    return Column(name, cell, type, priority)


def workload_wide(template: tuple[str, ...]) -> tuple[Column, ...]:
    """The Containers, Images and Selector columns of the workload printers (-o wide)."""
    return (Column("Containers", lambda o, now: _containers(_get(o, *template, "spec"))[0], priority=1),
            Column("Images", lambda o, now: _containers(_get(o, *template, "spec"))[1], priority=1),
            Column("Selector", lambda o, now: format_selector(_get(o, "spec", "selector")), priority=1))


# ------------------------------------------------------------------ pods
def _pod_summary(pod: Obj, now: datetime) -> tuple[str, str, str]:
    """(READY, STATUS, RESTARTS) as ``printPod`` derives them from the container statuses."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    restarts, ready, has_running = 0, 0, False
    last_restart: datetime | None = None
    for cs in reversed(status.get("containerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        finished = _parse_time(_get(cs, "lastState", "terminated", "finishedAt"))
        if finished is not None and (last_restart is None or finished > last_restart):
            last_restart = finished
        state = cs.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
        elif terminated is not None:
            reason = f"Signal:{terminated['signal']}" if terminated.get("signal") else \
                f"ExitCode:{terminated.get('exitCode', 0)}"
        elif cs.get("ready") and "running" in state:
            has_running = True
            ready += 1
    if reason == "Completed" and has_running:
        pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        reason = "Running" if pod_ready else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        if status.get("reason") == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    text = str(restarts)
    if restarts and last_restart is not None:
        text = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    return f"{ready}/{len(spec.get('containers') or [])}", reason, text


def _readiness_gates(pod: Obj, now: datetime) -> str:
    gates = _get(pod, "spec", "readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {c.get("type"): c.get("status") for c in _get(pod, "status", "conditions") or []}
    return f"{sum(conditions.get(g.get('conditionType')) == 'True' for g in gates)}/{len(gates)}"


def _pod_ip(pod: Obj, now: datetime) -> str:
    ips = _get(pod, "status", "podIPs") or []
    return (ips[0].get("ip") if ips else _get(pod, "status", "podIP")) or "<none>"


# ------------------------------------------------------------------ nodes
def _node_status(node: Obj, now: datetime) -> str:
    ready = next((c for c in _get(node, "status", "conditions") or [] if c.get("type") == "Ready"), None)
    status = ["Unknown"] if ready is None else ["Ready" if ready.get("status") == "True" else "NotReady"]
    if _get(node, "spec", "unschedulable"):
        status.append("SchedulingDisabled")
    return ",".join(status)


def _node_roles(node: Obj, now: datetime) -> str:
    roles = set()
    for key, value in (node["metadata"].get("labels") or {}).items():
        if key.startswith("node-role.kubernetes.io/") and key != "node-role.kubernetes.io/":
            roles.add(key.removeprefix("node-role.kubernetes.io/"))
        elif key == "kubernetes.io/role" and value:
            roles.add(value)
    return ",".join(sorted(roles)) or "<none>"


def _node_address(kind: str) -> Cell:
    return lambda o, now: next((a.get("address") for a in _get(o, "status", "addresses") or []
                                if a.get("type") == kind), "<none>")


def _node_info(key: str) -> Cell:
    return lambda o, now: _get(o, "status", "nodeInfo", key) or "<unknown>"


# ------------------------------------------------------------------ events
def _event_times(ev: Obj, now: datetime) -> tuple[str, str]:
    """(LAST SEEN, FIRST SEEN): the series, then lastTimestamp, then eventTime."""
    first = ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp")
    first_text = since(first, now) if first else since(ev.get("eventTime"), now)
    last = ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp")
    last_text = since(last, now) if last else first_text
    if ev.get("series"):
        last_text = since(ev["series"].get("lastObservedTime"), now)
    return last_text, first_text


def _event_object(ev: Obj, now: datetime) -> str:
    ref = ev.get("involvedObject") or ev.get("regarding") or {}
    kind = str(ref.get("kind", "")).lower()
    return f"{kind}/{ref['name']}" if ref.get("name") else kind


def _event_source(ev: Obj, now: datetime) -> str:
    source = ev.get("source") or ev.get("deprecatedSource") or {}
    # core/v1 spells the reporting controller ``reportingComponent``, events.k8s.io/v1 ``reportingController``
    component = source.get("component") or ev.get("reportingComponent") or ev.get("reportingController") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    return f"{component}, {host}" if host else component


def _event_count(ev: Obj, now: datetime) -> int:
    if ev.get("series"):
        return int(ev["series"].get("count") or 0)
    return int(ev.get("count") or ev.get("deprecatedCount") or 0) or 1


# ------------------------------------------------------------------ other kinds
def _intstr_or_na(*path: str) -> Cell:
    return lambda o, now: "N/A" if _get(o, *path) is None else str(_get(o, *path))


def _endpoints(obj: Obj, now: datetime) -> str:
    """``formatEndpoints``: up to three ``ip:port``, then ``+ N more...``."""
    shown: list[str] = []
    count = 0
    for subset in obj.get("subsets") or []:
        addresses = [a.get("ip", "") for a in subset.get("addresses") or []]
        ports = subset.get("ports") or [None]
        for port in ports:
            count += len(addresses)
            for ip in addresses:
                if len(shown) < 3:
                    shown.append(ip if port is None else
                                 (f"[{ip}]:{port['port']}" if ":" in ip else f"{ip}:{port['port']}"))
    if not obj.get("subsets"):
        return "<none>"
    return f"{','.join(shown)} + {count - 3} more..." if count > 3 else ",".join(shown)


def _service_external_ip(svc: Obj, now: datetime) -> str:
    spec = svc.get("spec") or {}
    external = spec.get("externalIPs") or []
    kind = spec.get("type") or "ClusterIP"
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = sorted({i.get("ip") or i.get("hostname") for i in _get(svc, "status", "loadBalancer", "ingress")
                          or [] if i.get("ip") or i.get("hostname")})
        return ",".join(ingress + external) or "<pending>"
    if kind == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<unknown>"


def _service_ports(svc: Obj, now: datetime) -> str:
    ports = [f"{p['port']}:{p['nodePort']}/{p.get('protocol', 'TCP')}" if p.get("nodePort")
             else f"{p['port']}/{p.get('protocol', 'TCP')}" for p in _get(svc, "spec", "ports") or []]
    return ",".join(ports) or "<none>"


def _controller_of(obj: Obj, now: datetime) -> str:
    ref = next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
    if ref is None:
        return "<none>"
    group = ref.get("apiVersion", "").rpartition("/")[0]
    return f"{ref['kind'].lower()}{'.' + group if group else ''}/{ref['name']}"


def _job_status(job: Obj, now: datetime) -> str:
    conditions = {c.get("type"): c.get("status") for c in _get(job, "status", "conditions") or []}
    if conditions.get("Complete") == "True":
        return "Complete"
    if conditions.get("Failed") == "True":
        return "Failed"
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if conditions.get("Suspended") == "True":
        return "Suspended"
    if conditions.get("FailureTarget") == "True":
        return "FailureTarget"
    return "Running"


def _job_completions(job: Obj, now: datetime) -> str:
    succeeded = _get(job, "status", "succeeded") or 0
    if _get(job, "spec", "completions") is not None:
        return f"{succeeded}/{job['spec']['completions']}"
    parallelism = _get(job, "spec", "parallelism") or 0
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_duration(job: Obj, now: datetime) -> str:
    start = _parse_time(_get(job, "status", "startTime"))
    if start is None:
        return ""
    end = _parse_time(_get(job, "status", "completionTime")) or now
    return human_duration((end - start).total_seconds())


def _subjects(kind: str) -> Cell:
    def cell(binding: Obj, now: datetime) -> str:
        names = []
        for s in binding.get("subjects") or []:
            if s.get("kind") == kind:
                names.append(f"{s.get('namespace', '')}/{s['name']}" if kind == "ServiceAccount" else s["name"])
        return ", ".join(names)
    return cell


_BINDING = (NAME, Column("Role", lambda o, now: f"{_get(o, 'roleRef', 'kind')}/{_get(o, 'roleRef', 'name')}"), AGE,
            Column("Users", _subjects("User"), priority=1), Column("Groups", _subjects("Group"), priority=1),
            Column("ServiceAccounts", _subjects("ServiceAccount"), priority=1))

_EVENT = (Column("Last Seen", lambda o, now: _event_times(o, now)[0]), field("Type", "type"),
          field("Reason", "reason"), Column("Object", _event_object),
          field("Subobject", "involvedObject", "fieldPath", priority=1), Column("Source", _event_source, priority=1),
          Column("Message", lambda o, now: str(o.get("message") or o.get("note") or "").strip()),
          Column("First Seen", lambda o, now: _event_times(o, now)[1], priority=1),
          Column("Count", _event_count, priority=1), Column("Name", NAME.cell, priority=1, format="name"))

#: (group, kind) -> the columns kube-apiserver's printer gives that kind.
PRINTERS: dict[tuple[str, str], tuple[Column, ...]] = {
    ("", "Pod"): (NAME, Column("Ready", lambda o, now: _pod_summary(o, now)[0]),
                  Column("Status", lambda o, now: _pod_summary(o, now)[1]),
                  Column("Restarts", lambda o, now: _pod_summary(o, now)[2]), AGE,
                  Column("IP", _pod_ip, priority=1), field("Node", "spec", "nodeName", default="<none>", priority=1),
                  field("Nominated Node", "status", "nominatedNodeName", default="<none>", priority=1),
                  Column("Readiness Gates", _readiness_gates, priority=1)),
    ("", "Node"): (NAME, Column("Status", _node_status), Column("Roles", _node_roles), AGE,
                   field("Version", "status", "nodeInfo", "kubeletVersion"),
                   Column("Internal-IP", _node_address("InternalIP"), priority=1),
                   Column("External-IP", _node_address("ExternalIP"), priority=1),
                   Column("OS-Image", _node_info("osImage"), priority=1),
                   Column("Kernel-Version", _node_info("kernelVersion"), priority=1),
                   Column("Container-Runtime", _node_info("containerRuntimeVersion"), priority=1)),
    ("", "Event"): _EVENT,
    ("events.k8s.io", "Event"): _EVENT,
    ("", "Namespace"): (NAME, field("Status", "status", "phase"), AGE),
    ("", "ConfigMap"): (NAME, Column("Data", lambda o, now: len(o.get("data") or {}) + len(o.get("binaryData") or {})),
                        AGE),
    ("", "Secret"): (NAME, field("Type", "type"), Column("Data", lambda o, now: len(o.get("data") or {})), AGE),
    ("", "ServiceAccount"): (NAME, Column("Secrets", lambda o, now: len(o.get("secrets") or [])), AGE),
    ("", "Service"): (NAME, field("Type", "spec", "type"),
                      Column("Cluster-IP", lambda o, now: (_get(o, "spec", "clusterIPs") or ["<none>"])[0]),
                      Column("External-IP", _service_external_ip), Column("Port(s)", _service_ports), AGE,
                      Column("Selector", lambda o, now: format_labels(_get(o, "spec", "selector")), priority=1)),
    ("", "Endpoints"): (NAME, Column("Endpoints", _endpoints), AGE),
    ("apps", "DaemonSet"): (NAME, *(field(n, "status", f, type="integer", default=0) for n, f in (
        ("Desired", "desiredNumberScheduled"), ("Current", "currentNumberScheduled"), ("Ready", "numberReady"),
        ("Up-to-date", "updatedNumberScheduled"), ("Available", "numberAvailable"))),
        Column("Node Selector", lambda o, now: format_labels(_get(o, "spec", "template", "spec", "nodeSelector"))),
        AGE, *workload_wide(("spec", "template"))),
    ("apps", "Deployment"): (NAME, Column("Ready", lambda o, now: f"{_get(o, 'status', 'readyReplicas') or 0}/"
                                                                  f"{_get(o, 'spec', 'replicas') or 0}"),
                             field("Up-to-date", "status", "updatedReplicas", default=0),
                             field("Available", "status", "availableReplicas", default=0), AGE,
                             *workload_wide(("spec", "template"))),
    ("apps", "ReplicaSet"): (NAME, field("Desired", "spec", "replicas", type="integer", default=0),
                             field("Current", "status", "replicas", type="integer", default=0),
                             field("Ready", "status", "readyReplicas", type="integer", default=0), AGE,
                             *workload_wide(("spec", "template"))),
    ("apps", "ControllerRevision"): (NAME, Column("Controller", _controller_of),
                                     field("Revision", "revision", default=0), AGE),
    ("batch", "Job"): (NAME, Column("Status", _job_status), Column("Completions", _job_completions),
                       Column("Duration", _job_duration), AGE, *workload_wide(("spec", "template"))),
    ("batch", "CronJob"): (NAME, field("Schedule", "spec", "schedule"),
                           field("Timezone", "spec", "timeZone", default="<none>"),
                           field("Suspend", "spec", "suspend", type="boolean", default=False),
                           Column("Active", lambda o, now: len(_get(o, "status", "active") or []), "integer"),
                           Column("Last Schedule", lambda o, now: since(_get(o, "status", "lastScheduleTime"), now)
                                  if _get(o, "status", "lastScheduleTime") else "<none>"), AGE,
                           Column("Containers", lambda o, now: _containers(
                               _get(o, "spec", "jobTemplate", "spec", "template", "spec"))[0], priority=1),
                           Column("Images", lambda o, now: _containers(
                               _get(o, "spec", "jobTemplate", "spec", "template", "spec"))[1], priority=1),
                           Column("Selector", lambda o, now: format_selector(
                               _get(o, "spec", "jobTemplate", "spec", "selector")), priority=1)),
    ("policy", "PodDisruptionBudget"): (NAME, Column("Min Available", _intstr_or_na("spec", "minAvailable")),
                                        Column("Max Unavailable", _intstr_or_na("spec", "maxUnavailable")),
                                        field("Allowed Disruptions", "status", "disruptionsAllowed", type="integer",
                                              default=0), AGE),
    ("coordination.k8s.io", "Lease"): (NAME, field("Holder", "spec", "holderIdentity"), AGE),
    ("networking.k8s.io", "NetworkPolicy"): (NAME, Column("Pod-Selector", lambda o, now: format_selector(
        _get(o, "spec", "podSelector") or {})), AGE),
    ("rbac.authorization.k8s.io", "RoleBinding"): _BINDING,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _BINDING,
}

#: The default table convertor's columns, for a built-in kind without a printer.
DEFAULT = (NAME, Column("Created At", lambda o, now: o["metadata"].get("creationTimestamp"), type="date",
                        description=AGE.description))


# ------------------------------------------------------------------ custom resources
def _json_path_cell(path: str, kind: str) -> Cell:
    """A cell read with an additionalPrinterColumn's simple JSONPath (``.a.b``, ``.a[0].b``)."""
    steps: list[str | int] = []
    for part in path.strip().lstrip(".").split("."):
        name, _, rest = part.partition("[")
        if name:
            steps.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            steps.append(int(index) if index.lstrip("-").isdigit() else index.strip("'\""))
            rest = rest.lstrip("[")

    def cell(o: Obj, now: datetime) -> Any:
        value: Any = o
        for step in steps:
            if isinstance(step, int) and isinstance(value, list) and -len(value) <= step < len(value):
                value = value[step]
            elif isinstance(step, str) and isinstance(value, dict) and step in value:
                value = value[step]
            else:
                return None
        if kind == "date":
            return since(value, now) if _parse_time(value) else "<invalid>"
        if kind == "string":
            return value if isinstance(value, str) else _json_text(value)
        if kind == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value)
        if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if kind == "boolean" and isinstance(value, bool):
            return value
        return None
    return cell


def _json_text(value: Any) -> str:
    import json
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else \
        str(value).lower() if isinstance(value, bool) else str(value)


def custom_columns(printer_columns: tuple[Obj, ...]) -> tuple[Column, ...]:
    """NAME plus a CRD version's ``additionalPrinterColumns`` (AGE when it has none)."""
    if not printer_columns:
        return (NAME, Column("Age", _json_path_cell(".metadata.creationTimestamp", "date"), "date",
                             description=AGE.description))
    return (NAME, *(Column(c["name"], _json_path_cell(c["jsonPath"], c.get("type", "string")), c.get("type", "string"),
                           int(c.get("priority") or 0), c.get("format", ""),
                           c.get("description") or
                           f"Custom resource definition column (in JSONPath format): {c['jsonPath']}")
                    for c in printer_columns))


def columns_for(res: ApiResource) -> tuple[Column, ...]:
    if res.is_custom:
        return custom_columns(res.printer_columns)
    return PRINTERS.get((res.group, res.kind), DEFAULT)


# ------------------------------------------------------------------ the Table
INCLUDE_OBJECT = ("None", "Object", "PartialObjectMetadata")


def wants_table(accept: str) -> bool:
    first = accept.split(",")[0] if accept else ""
    return "as=Table" in first


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def _row(columns: tuple[Column, ...], obj: Obj, include: str, now: datetime) -> Obj:
    row: Obj = {"cells": [c.cell(obj, now) for c in columns], "object": _row_object(obj, include)}
    if obj.get("kind") == "Pod" and _get(obj, "status", "phase") in ("Succeeded", "Failed"):
        phase = obj["status"]["phase"]
        row["conditions"] = [{"type": "Completed", "status": "True", "reason": phase,
                              "message": "The pod has completed successfully." if phase == "Succeeded"
                              else "The pod failed."}]
    return row


def table(res: ApiResource, objects: list[Obj], *, include: str = "PartialObjectMetadata",
          resource_version: str = "", cont: str = "", now: datetime | None = None) -> Obj:
    """The Table of ``objects`` (all of ``res``'s kind), every column included."""
    columns = columns_for(res)
    moment = now or datetime.now(UTC)
    meta: Obj = {"resourceVersion": resource_version}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": [c.definition() for c in columns],
            "rows": [_row(columns, o, include, moment) for o in objects]}
