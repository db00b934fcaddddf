"""Manifests of the simulated cluster, as dicts: the small vocabulary the builder speaks.

Constructors for the kinds the builder writes (namespace, ConfigMap, container,
Deployment, DaemonSet, Service, PDB), filled in as ``kubectl apply`` plus API defaulting
would leave them, and the ``shop`` application a migration has to carry across: a
multi-replica web tier and an API tier behind PDBs, a single-replica cache with an
emptyDir, a non-host-network DaemonSet, a bare pod, Services and both kinds of network
policy. Kept apart from ``builder`` so the builder reads as the list of what is there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from migrator.sim.config import SimConfig

Obj = dict[str, Any]
EnvValue = str | tuple[str, str]


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def configmap(ns: str, name: str, data: dict[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def container(name: str, image: str, *, command: list[str] | None = None, args: list[str] | None = None,
              ports: list[tuple[str, int, str]] | None = None, env: dict[str, EnvValue] | None = None,
              privileged: bool = False, readiness: tuple[str, int] | None = None,
              mounts: list[tuple[str, str]] | None = None) -> Obj:
    out: Obj = {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "resources": {},
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}
    if command:
        out["command"] = command
    if args:
        out["args"] = args
    if ports:
        out["ports"] = [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports]
    if env:
        out["env"] = [{"name": k, "value": v} if isinstance(v, str) else
                      {"name": k, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": v[1]}}}
                      for k, v in env.items()]
    if privileged:
        out["securityContext"] = {"privileged": True}
    if readiness:
        out["readinessProbe"] = {"httpGet": {"path": readiness[0], "port": readiness[1], "scheme": "HTTP"},
                                 "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                                 "failureThreshold": 3}
    if mounts:
        out["volumeMounts"] = [{"name": n, "mountPath": p} for n, p in mounts]
    return out


def _pod_spec(containers: list[Obj], *, init: list[Obj] | None, host_network: bool,
              tolerations: list[Obj] | None, critical: bool, service_account: str | None,
              volumes: list[Obj] | None = None) -> Obj:
    spec: Obj = {"containers": containers, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "schedulerName": "default-scheduler", "terminationGracePeriodSeconds": 30,
                 "securityContext": {}, "nodeSelector": {"kubernetes.io/os": "linux"}}
    if init:
        spec["initContainers"] = init
    if host_network:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if tolerations:
        spec["tolerations"] = tolerations
    if critical:
        spec["priorityClassName"] = "system-node-critical" if host_network else "system-cluster-critical"
    if service_account:
        spec["serviceAccountName"] = service_account
        spec["serviceAccount"] = service_account
    if volumes:
        spec["volumes"] = volumes
    return spec


def daemonset(ns: str, name: str, selector: dict[str, str], containers: list[Obj], *,
              init: list[Obj] | None = None, host_network: bool = False, tolerate_all: bool = False,
              critical: bool = False, service_account: str | None = None,
              labels: dict[str, str] | None = None) -> Obj:
    spec = _pod_spec(containers, init=init, host_network=host_network,
                     tolerations=[{"operator": "Exists"}] if tolerate_all else None,
                     critical=critical, service_account=service_account)
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": dict(selector)},
        "spec": {"selector": {"matchLabels": dict(selector)}, "revisionHistoryLimit": 10,
                 "updateStrategy": {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                 "template": {"metadata": {"labels": {**selector, **(labels or {})}}, "spec": spec}},
    }


def deployment(ns: str, name: str, selector: dict[str, str], replicas: int, containers: list[Obj], *,
               tolerations: list[Obj] | None = None, host_network: bool = False, critical: bool = False,
               service_account: str | None = None, max_unavailable: int | str = "25%", recreate: bool = False,
               volumes: list[Obj] | None = None) -> Obj:
    strategy: Obj = {"type": "Recreate"} if recreate else {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": "25%"}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": dict(selector)},
        "spec": {"replicas": replicas, "selector": {"matchLabels": dict(selector)}, "strategy": strategy,
                 "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                 "template": {"metadata": {"labels": dict(selector)},
                              "spec": _pod_spec(containers, init=None, host_network=host_network,
                                                tolerations=tolerations, critical=critical,
                                                service_account=service_account, volumes=volumes)}},
    }


def service(ns: str, name: str, selector: dict[str, str], cluster_ip: str,
            ports: list[tuple[str, int, str, int | str]], *, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or dict(selector)},
        "spec": {"type": "ClusterIP", "selector": dict(selector), "clusterIP": cluster_ip,
                 "clusterIPs": [cluster_ip], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                 "ports": [{"name": n, "port": p, "protocol": proto, "targetPort": t} for n, p, proto, t in ports]},
        "status": {"loadBalancer": {}},
    }


def pdb(ns: str, name: str, selector: dict[str, str], *, max_unavailable: int | str | None = None,
        min_available: int | str | None = None) -> Obj:
    spec: Obj = {"selector": {"matchLabels": dict(selector)}}
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    if min_available is not None:
        spec["minAvailable"] = min_available
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def web_replicas(nodes: int) -> int:
    return max(3, nodes)


def baseline_pods_per_worker(workers: int) -> float:
    """Pods the default cluster puts on an average worker (daemons + shop + system)."""
    daemons = 4  # kube-proxy, calico-node, cilium, log-agent
    spread = web_replicas(workers + 1) + 2 + 1 + 1 + 2 + 1 + 1  # web, api, cache, debug, coredns, ckc, operator
    return daemons + spread / max(1, workers)


def filler_replicas(config: SimConfig, *, workers: int, pods_per_node: int) -> int:
    return max(0, int(workers * (pods_per_node - baseline_pods_per_worker(workers))))


def shop(config: SimConfig, *, pdb_blocked: bool,
         service_ip: Callable[[int], str]) -> Iterator[tuple[str, Obj]]:
    ns = "shop"
    api_replicas = 2
    yield "apps/deployments", deployment(ns, "web", {"app": "web"}, web_replicas(config.nodes), [
        container("nginx", "docker.io/library/nginx:1.27", ports=[("http", 80, "TCP")], readiness=("/", 80))])
    yield "policy/poddisruptionbudgets", pdb(ns, "web", {"app": "web"}, max_unavailable=config.web_max_unavailable)
    yield "apps/deployments", deployment(ns, "api", {"app": "api"}, api_replicas, [
        container("agnhost", "registry.k8s.io/e2e-test-images/agnhost:2.52", args=["netexec", "--http-port=8080"],
                  ports=[("http", 8080, "TCP")], readiness=("/healthz", 8080))])
    yield "policy/poddisruptionbudgets", pdb(ns, "api", {"app": "api"},
                                             min_available=api_replicas if pdb_blocked else 1)
    yield "apps/deployments", deployment(ns, "cache", {"app": "cache"}, 1, [
        container("redis", "docker.io/library/redis:7.4", ports=[("redis", 6379, "TCP")],
                  mounts=[("data", "/data")])], volumes=[{"name": "data", "emptyDir": {}}])
    yield "apps/daemonsets", daemonset(ns, "log-agent", {"app": "log-agent"}, [
        container("fluent-bit", "docker.io/fluent/fluent-bit:3.2", ports=[("metrics", 2020, "TCP")])])
    yield "pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "debug-shell", "namespace": ns, "labels": {"app": "debug-shell"}},
        "spec": {"containers": [container("netshoot", "docker.io/nicolaka/netshoot:v0.13",
                                          command=["sleep", "infinity"])],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
                 "terminationGracePeriodSeconds": 30, "serviceAccountName": "default",
                 "serviceAccount": "default", "securityContext": {}},
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
    yield "services", service(ns, "web", {"app": "web"}, service_ip(1), [("http", 80, "TCP", "http")])
    yield "services", service(ns, "api", {"app": "api"}, service_ip(2), [("http", 8080, "TCP", 8080)])
    yield "networking.k8s.io/networkpolicies", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "api-allow-web", "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                              "ports": [{"protocol": "TCP", "port": 8080}]}]},
    }
    yield "crd.projectcalico.org/networkpolicies", {
        "apiVersion": "crd.projectcalico.org/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "default.web-allow-http", "namespace": ns},
        "spec": {"tier": "default", "order": 100, "selector": "app == 'web'", "types": ["Ingress"],
                 "ingress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}}]},
    }
