"""``SimCluster``: one call from nothing to a converged cluster behind a real HTTP API.

The façade every migrator test, ``migrator sim serve`` and ``migrator demo`` use. It
wires the pieces in the only order that loses no event: the store, the world (which
subscribes to the store), the API registry, the controllers and the node runtime, then
starts the worker, builds the cluster and opens the API server. ``start()`` returns once
the cluster has converged: every node Ready, every pod Running and Ready (or finished),
every DaemonSet and Deployment rolled out. Only then does a scenario inject its fault,
so a faulted cluster is always a healthy cluster that broke, never one that never came
up.

Usable as a context manager; ``stop()`` is idempotent.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog

from migrator.sim.builder import ClusterShape, build_cluster
from migrator.sim.config import SimConfig
from migrator.sim.controllers import Controllers, install_controllers
from migrator.sim.controllers.matching import node_is_ready, pod_is_ready
from migrator.sim.scenarios import Scenario, get_scenario
from migrator.sim.store import Store
from migrator.sim.world import World

Obj = dict[str, Any]
log = structlog.get_logger("migrator.sim.cluster")

RBAC_GROUP = "rbac.authorization.k8s.io"


class SimCluster:
    """A simulated Kubernetes cluster: store, controllers, node runtime and API server."""

    def __init__(self, *, config: SimConfig | None = None, seed: int = 0, scenario: str = "default",
                 time_scale: float = 1.0, port: int = 0, host: str = "127.0.0.1", token: str | None = None,
                 pods_per_node: int = 0, converge_timeout: float = 120.0) -> None:
        self.scenario: Scenario = get_scenario(scenario)
        self.config: SimConfig = self.scenario.apply_config(config or SimConfig())
        self.seed = seed
        self.time_scale = time_scale
        self.host = host
        self.port = port
        self.token = token or secrets.token_hex(16)
        self.pods_per_node = pods_per_node
        self.converge_timeout = converge_timeout
        self.scenario_details: dict[str, str] = {}
        self.store: Store = Store()
        self.world: World = World(self.store, seed=seed, time_scale=time_scale)
        self.controllers: Controllers | None = None
        self.fleet: Any = None
        self.server: Any = None
        self.faults: Any = None
        self.boot_seconds: float | None = None
        self._started = False
        self._user_tokens: dict[str, str] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> SimCluster:
        """Build the cluster, serve it over HTTP and wait until it has converged."""
        from migrator.sim.apiserver import ApiServer
        from migrator.sim.faults import ApiFaults
        from migrator.sim.fleet import NodeFleet
        from migrator.sim.registry import install_api, load_crds, serve_versions

        began = time.monotonic()
        install_api(self.store, service_cidr=self.config.service_cidr,
                    crds=serve_versions(load_crds(), self.scenario.served_versions))
        self.controllers = install_controllers(self.world, self.config)
        self.fleet = NodeFleet(self.world, self.config)
        self.world.start()
        self._started = True
        shape = dataclasses.replace(self.scenario.shape, pods_per_node=self.pods_per_node)
        build_cluster(self.store, self.config, scenario=self.scenario.name, seed=self.seed, shape=shape)
        self.faults = ApiFaults(self.seed)
        self.server = ApiServer(self.store, host=self.host, port=self.port, token=self.token,
                                proxy=self.fleet.proxy, faults=self.faults, version=self.config.kubernetes_version,
                                service_cidr=self.config.service_cidr, introspect=self.introspect)
        self.server.start()
        if not self.settle(timeout=self.converge_timeout, strict=True):
            self.stop()
            raise TimeoutError(f"simulated cluster did not converge within {self.converge_timeout}s: "
                               f"{self.convergence_report()}")
        self.boot_seconds = time.monotonic() - began
        if self.scenario.inject is not None:
            self.scenario_details = self.scenario.inject(self, random.Random(self.seed))
            self.world.settle(timeout=10.0)
        log.info("sim.cluster.started", url=self.url, nodes=self.config.nodes, scenario=self.scenario.name,
                 seconds=round(self.boot_seconds, 3), **self.scenario_details)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._started:
            self.world.stop()
            self._started = False

    def __enter__(self) -> SimCluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ access
    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the simulated cluster is not serving; call start() first")
        return str(self.server.url)

    @property
    def requests(self) -> Any:
        return self.server.requests

    def write_kubeconfig(self, path: str | Path, *, context: str = "sim", user: str | None = None,
                         service_account: str | None = None) -> Path:
        """A kubeconfig for this cluster: the admin's (``system:masters``) by default. ``user`` gives
        it its own token, so that the request log (``RequestEntry.user``) tells its requests from
        everyone else's; that user is bound to cluster-admin by a ClusterRoleBinding
        ``sim-user-<name>``. ``service_account`` (``NAMESPACE/NAME``) writes one acting as that
        ServiceAccount, with only the rights RBAC gives it; its token works while it exists."""
        from migrator.sim.kubeconfig import write_kubeconfig

        token, user_name = self.token, f"{context}-admin"
        if user is not None:
            if user not in self._user_tokens:
                self._user_tokens[user] = self.server.add_user(user)
                self._bind_admin(user)
            token = self._user_tokens[user]
        if service_account is not None:
            namespace, _, name = service_account.partition("/")
            if not namespace or not name or "/" in name:
                raise ValueError(f"service account {service_account!r} must be NAMESPACE/NAME")
            token = self.server.authn.service_account_token(namespace, name)
            user_name = f"system:serviceaccount:{namespace}:{name}"
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_kubeconfig(path, self.url, token, context=context, ca_pem=self.server.ca_pem, user=user_name)
        return path

    def _bind_admin(self, user: str) -> None:
        name = f"sim-user-{user}"
        if self.store.try_get(f"{RBAC_GROUP}/clusterrolebindings", None, name) is None:
            self.store.create(f"{RBAC_GROUP}/clusterrolebindings", {
                "apiVersion": f"{RBAC_GROUP}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": user}]})

    # ------------------------------------------------------------------ convergence
    def settle(self, timeout: float = 30.0, *, strict: bool = False) -> bool:
        """Wait until the world is idle and the cluster has converged; False on timeout.

        Converged means every pod is Running and Ready or finished, nothing is being
        deleted, and (``strict``, as at start-up) every node is Ready and every DaemonSet
        and Deployment rolled out. Unless strict, what cannot converge is left out: pods
        the scheduler found no room for, pods crash-looping, NotReady nodes and their pods.
        """
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.world.settle(timeout=left)
            if not self.convergence_report(strict=strict):
                return True
            time.sleep(0.01)

    def converged(self) -> bool:
        return not self.convergence_report(strict=True)

    def convergence_report(self, *, strict: bool = True, limit: int = 5) -> list[str]:
        """What keeps the cluster from having converged (empty when it has)."""
        problems: list[str] = []
        skip = {self.scenario_details["node"]} if "node" in self.scenario_details else set()
        for node in self.store.list("nodes"):
            if node["metadata"]["name"] not in skip and not node_is_ready(node):
                if strict:
                    problems.append(f"node {node['metadata']['name']} not Ready")
                else:
                    skip.add(node["metadata"]["name"])
        for pod in self.store.list("pods"):
            if pod["spec"].get("nodeName") in skip or (not strict and _stuck(pod)):
                continue
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded" or (phase == "Failed" and not pod["metadata"].get("deletionTimestamp")):
                continue
            if pod["metadata"].get("deletionTimestamp") or phase != "Running" or not pod_is_ready(pod):
                problems.append(f"pod {pod['metadata']['namespace']}/{pod['metadata']['name']} {phase}")
                if len(problems) >= limit:
                    return problems
        if not strict:
            return problems
        for ds in self.store.list("apps/daemonsets"):
            st, want = ds.get("status") or {}, ds["metadata"].get("generation", 1)
            if st.get("observedGeneration") != want or \
                    st.get("updatedNumberScheduled") != st.get("desiredNumberScheduled") or \
                    st.get("numberReady") != st.get("desiredNumberScheduled"):
                problems.append(f"daemonset {ds['metadata']['name']} rolling")
        for deploy in self.store.list("apps/deployments"):
            st = deploy.get("status") or {}
            replicas = deploy["spec"].get("replicas", 1)
            if st.get("observedGeneration") != deploy["metadata"].get("generation", 1) or \
                    st.get("updatedReplicas", 0) != replicas or st.get("availableReplicas", 0) != replicas:
                problems.append(f"deployment {deploy['metadata']['name']} not available")
        return problems[:limit]

    # ------------------------------------------------------------------ inspection
    def introspect(self) -> dict[str, Any]:
        """A snapshot for humans and tests: per-node CNI files and pods, API traffic (requests and
        their body bytes by verb and resource), reachability. The API server serves it at
        ``/sim/introspect``; ``/sim/requests`` filters the traffic (``RequestFilter``)."""
        pods_by_node: Counter[str] = Counter(p["spec"].get("nodeName") or "" for p in self.store.list("pods"))
        nodes = {}
        for node in self.store.list("nodes"):
            name = node["metadata"]["name"]
            nodes[name] = {"ready": node_is_ready(node), "pods": pods_by_node.get(name, 0),
                           "cni_files": list(self.fleet.cni_files(name)) if self.fleet else [],
                           "migration_label": (node["metadata"].get("labels") or {}).get(
                               "io.cilium.migration/cilium-default")}
        counts: dict[str, int] = {}
        body_bytes: dict[str, dict[str, int]] = {}
        if self.server is not None:
            for row in self.requests.summary()["byVerbResource"]:
                key = f"{row['verb']} {row['resource']}"
                counts[key] = row["requests"]
                body_bytes[key] = {"request": row["requestBytes"], "response": row["responseBytes"]}
        return {"scenario": self.scenario.name, "details": dict(self.scenario_details), "nodes": nodes,
                "requests": counts, "body_bytes": body_bytes, "reachability": self._reachability_summary(),
                "world_errors": len(self.world.errors)}

    def _reachability_summary(self) -> dict[str, Any]:
        if self.fleet is None:
            return {}
        rows = [r for r in self.fleet.reachability_matrix() if isinstance(r, dict)]
        broken = [r for r in rows if not r.get("ok")]
        return {"pairs": len(rows), "reachable": len(rows) - len(broken), "unreachable": len(broken),
                "failures": [{k: r.get(k) for k in ("src", "dst", "reason")} for r in broken[:5]]}


def _stuck(pod: Obj) -> bool:
    """A pod that will not progress on its own: unschedulable or crash-looping."""
    status = pod.get("status") or {}
    for c in status.get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable":
            return True
    return any(((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"
               for cs in status.get("containerStatuses") or [])


__all__ = ["ClusterShape", "SimCluster"]
