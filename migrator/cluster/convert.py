"""Raw Kubernetes dicts in, our facts and records out (and the few manifests we send).

The single place that knows the JSON shape of Nodes, Pods, PDBs, DaemonSets, Leases, Calico
and Cilium objects. Everything returned here is a frozen model or record, so raw dicts never
leave ``cluster/``. Conversions are pure functions: the cache calls them once per object
version, and tests call them on literal dicts.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from typing import Any

from migrator.cluster.facts import (  # noqa: F401 - re-exported for the cache and kube_reads
    node_config_facts,
    node_facts,
    parse_time,
    pdb_facts,
    pod_facts,
)
from migrator.cluster.port import (
    ConfigMapSnapshot,
    DaemonSetInfo,
    FelixInfo,
    IPPoolInfo,
    LeaseRecord,
    PodRequest,
    PolicyInfo,
    WorkloadInfo,
)

Raw = dict[str, Any]
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def sort_key(obj: Raw) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta.get("name") or "")


def format_micro_time(value: datetime | None) -> str | None:
    """A Kubernetes MicroTime string (``2026-01-01T00:00:00.000000Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod_matches(obj: Raw, *, namespace: str | None, labels: dict[str, str] | None) -> bool:
    meta = obj.get("metadata") or {}
    if namespace and meta.get("namespace") != namespace:
        return False
    have = meta.get("labels") or {}
    return all(have.get(k) == v for k, v in (labels or {}).items())


# -- records ------------------------------------------------------------------------------------

def daemonset_info(obj: Raw) -> DaemonSetInfo:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    template = spec.get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    env: dict[str, dict[str, str]] = {}
    pod_spec = template.get("spec") or {}
    for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
        env[container.get("name", "")] = {e["name"]: str(e.get("value", ""))
                                          for e in container.get("env") or [] if "name" in e}
    return DaemonSetInfo(
        namespace=meta.get("namespace") or "", name=meta.get("name") or "",
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        desired=int(status.get("desiredNumberScheduled") or 0),
        current=int(status.get("currentNumberScheduled") or 0),
        updated=int(status.get("updatedNumberScheduled") or 0),
        ready=int(status.get("numberReady") or 0),
        available=int(status.get("numberAvailable") or 0),
        restarted_at=annotations.get(RESTARTED_AT),
        selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
        env=env,
    )


def configmap_snapshot(obj: Raw) -> ConfigMapSnapshot:
    meta = obj.get("metadata") or {}
    return ConfigMapSnapshot(namespace=meta.get("namespace") or "", name=meta.get("name") or "",
                             data=dict(obj.get("data") or {}),
                             resource_version=str(meta.get("resourceVersion") or ""))


def lease_record(obj: Raw) -> LeaseRecord:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    return LeaseRecord(
        namespace=meta.get("namespace") or "", name=meta.get("name") or "",
        holder=spec.get("holderIdentity") or None,
        duration_seconds=int(duration) if duration is not None else None,
        acquire_time=parse_time(spec.get("acquireTime")),
        renew_time=parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def lease_manifest(record: LeaseRecord) -> Raw:
    meta: Raw = {"name": record.name, "namespace": record.namespace}
    if record.resource_version:
        meta["resourceVersion"] = record.resource_version
    spec: Raw = {"holderIdentity": record.holder, "leaseDurationSeconds": record.duration_seconds,
                 "acquireTime": format_micro_time(record.acquire_time),
                 "renewTime": format_micro_time(record.renew_time),
                 "leaseTransitions": record.transitions}
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {k: v for k, v in spec.items() if v is not None}}


def ippool_info(obj: Raw) -> IPPoolInfo:
    spec = obj.get("spec") or {}
    return IPPoolInfo(name=(obj.get("metadata") or {}).get("name") or "",
                      cidr=str(spec.get("cidr") or ""),
                      vxlan_mode=str(spec.get("vxlanMode") or "Never"),
                      ipip_mode=str(spec.get("ipipMode") or "Never"),
                      nat_outgoing=bool(spec.get("natOutgoing")),
                      disabled=bool(spec.get("disabled")))


def felix_info(obj: Raw) -> FelixInfo:
    spec = obj.get("spec") or {}
    port = spec.get("vxlanPort")
    return FelixInfo(name=(obj.get("metadata") or {}).get("name") or "",
                     vxlan_port=int(port) if port is not None else None,
                     vxlan_enabled=spec.get("vxlanEnabled"),
                     bpf_enabled=bool(spec.get("bpfEnabled")))


def policy_info(kind: str, obj: Raw) -> PolicyInfo:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    actions = {str(rule.get("action")) for key in ("ingress", "egress")
               for rule in spec.get(key) or [] if isinstance(rule, dict) and rule.get("action")}
    return PolicyInfo(kind=kind, name=meta.get("name") or "", namespace=meta.get("namespace"),
                      actions=frozenset(actions))


def workload_info(kind: str, obj: Raw) -> WorkloadInfo:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    replicas = spec.get("replicas")
    return WorkloadInfo(kind=kind, namespace=meta.get("namespace") or "",
                        name=meta.get("name") or "", replicas=1 if replicas is None else int(replicas))


# -- manifests we send ---------------------------------------------------------------------------

def delete_options(uid: str | None, grace_period_seconds: int | None) -> Raw:
    body: Raw = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if uid:
        body["preconditions"] = {"uid": uid}
    if grace_period_seconds is not None:
        body["gracePeriodSeconds"] = int(grace_period_seconds)
    return body


def pod_manifest(request: PodRequest) -> Raw:
    container: Raw = {"name": "main", "image": request.image, "imagePullPolicy": "IfNotPresent"}
    if request.command:
        container["command"] = list(request.command)
    if request.args:
        container["args"] = list(request.args)
    if request.privileged:
        container["securityContext"] = {"privileged": True}
    volumes, mounts = [], []
    for i, (host_path, mount_path) in enumerate(request.host_path_mounts):
        volumes.append({"name": f"host-{i}", "hostPath": {"path": host_path}})
        mounts.append({"name": f"host-{i}", "mountPath": mount_path})
    if mounts:
        container["volumeMounts"] = mounts
    spec: Raw = {"containers": [container], "restartPolicy": request.restart_policy,
                 "terminationGracePeriodSeconds": 1}
    if request.node_name:
        spec["nodeName"] = request.node_name
    if request.tolerate_all:
        spec["tolerations"] = [{"operator": "Exists"}]
    if request.host_network:
        spec["hostNetwork"] = True
    if volumes:
        spec["volumes"] = volumes
    metadata: Raw = {"name": request.name, "namespace": request.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "migrator", **request.labels}}
    if request.annotations:
        metadata["annotations"] = dict(request.annotations)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def node_event(node: str, *, reason: str, message: str, type: str, namespace: str,
               when: datetime, uid: str | None) -> Raw:
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved: Raw = {"apiVersion": "v1", "kind": "Node", "name": node}
    if uid:
        involved["uid"] = uid
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{node}.migrator.", "namespace": namespace},
        "involvedObject": involved, "reason": reason, "message": message, "type": type,
        "source": {"component": "migrator"}, "reportingComponent": "migrator",
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }
