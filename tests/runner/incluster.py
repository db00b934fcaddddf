"""The tool run as a pod runs it: in-cluster configuration, as the ServiceAccount `migrator manifests`
creates, bound to the ClusterRole it prints, against a simulated cluster that enforces RBAC.

``install`` applies the manifests' ServiceAccount, ClusterRole and ClusterRoleBinding (as the
admin) and takes a token for the ServiceAccount through TokenRequest; ``run`` starts the CLI with
``KUBERNETES_SERVICE_HOST``/``PORT`` set, no kubeconfig, and the token and CA where the
``kubernetes`` client's in-cluster loader reads them (its paths are module constants with no
override, so the child process points them at the test's files before the CLI starts).

``every_flow`` runs every flow of the tool (preflight, plan, run with an automatic rollback,
status, pause, on-call rollback of a node and of everything, a canary, then run + finalize on a
second cluster, the routing hand-over on routed ones, and ``policy.mode: continuous`` run + finalize
and run + rollback on Calico's policy scenario) and records, per command, its exit code, its stderr and the requests it made
(from the sim's request log). ``until`` stops after a given command; ``drop`` removes one rule of
the ClusterRole first; ``timeout`` bounds each command.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from migrator.cluster.kube import USER_AGENT
from migrator.manifests import CLUSTER_ROLE
from tests.conftest import fast_config
from tests.runner.helpers import WORKDIR, fast_plan
from tests.runner.test_policy_e2e import NO_NAT_POOL
from tests.runner.test_rollback import break_cross_overlay

RBAC = "rbac.authorization.k8s.io"
GROUPED = ("apps", "policy", "batch")
STALLED = -9   # the exit code recorded for a command killed at its timeout
_LAUNCH = ("import runpy, sys\n"
           "import kubernetes.config.incluster_config as c\n"
           "c.SERVICE_TOKEN_FILENAME, c.SERVICE_CERT_FILENAME = sys.argv.pop(1), sys.argv.pop(1)\n"
           "runpy.run_module('migrator', run_name='__main__', alter_sys=True)\n")


@dataclass
class Pod:
    """Where one ServiceAccount's mounted token and CA live, and who it is."""

    namespace: str
    account: str
    dir: Path

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def _client(sim) -> kubernetes.client.ApiClient:
    cfg = kubernetes.client.Configuration()
    cfg.host, cfg.api_key, cfg.api_key_prefix = sim.url, {"authorization": sim.token}, {"authorization": "Bearer"}
    ca = Path(WORKDIR) / f"ca-{id(sim)}.crt"
    ca.write_bytes(sim.server.ca_pem)
    cfg.ssl_ca_cert = str(ca)
    return kubernetes.client.ApiClient(cfg)


def manifests(plan: Path) -> list[dict[str, Any]]:
    """What ``migrator manifests --job`` prints for ``plan`` (a 6-node cluster)."""
    listed = ((yaml.safe_load(plan.read_text()) or {}).get("nodes") or {}).get("names")
    nodes = [] if listed else ["--nodes", "6"]
    out = subprocess.run([sys.executable, "-m", "migrator", "manifests", "--plan", str(plan), "--job", *nodes],
                         capture_output=True, text=True, timeout=60, cwd=WORKDIR, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def install(sim, plan: Path, where: Path, drop: int | None = None) -> Pod:
    """Apply the plan's ServiceAccount, the ClusterRole (less rule ``drop``) and the binding; mount a
    token for the ServiceAccount into ``where``."""
    client = _client(sim)
    pod: Pod | None = None
    try:
        for doc in manifests(plan):
            if doc["kind"] not in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
                continue
            if doc["kind"] == "ClusterRole" and drop is not None:
                doc = copy.deepcopy(doc)
                del doc["rules"][drop]
            if doc["kind"] == "ClusterRole" and sim.store.try_get(f"{RBAC}/clusterroles", None, CLUSTER_ROLE):
                continue   # one per cluster, shared by every plan
            kubernetes.utils.create_from_dict(client, doc)
            if doc["kind"] == "ServiceAccount":
                pod = Pod(doc["metadata"]["namespace"], doc["metadata"]["name"], where)
        assert pod is not None, "migrator manifests printed no ServiceAccount"
        answer = kubernetes.client.CoreV1Api(client).create_namespaced_service_account_token(
            pod.account, pod.namespace, {"spec": {}})
    finally:
        client.close()
    where.mkdir(parents=True, exist_ok=True)
    (where / "token").write_text(answer.status.token)
    (where / "ca.crt").write_bytes(sim.server.ca_pem)
    return pod


def run(sim, pod: Pod, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``migrator ARGS`` inside the cluster, as ``pod``'s ServiceAccount."""
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env.update(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=sim.url.rsplit(":", 1)[1])
    return subprocess.run([sys.executable, "-c", _LAUNCH, str(pod.dir / "token"), str(pod.dir / "ca.crt"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=WORKDIR, env=env)


# ---------------------------------------------------------------------------------- flows
@dataclass
class Step:
    cluster: int
    plan: str
    args: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.cluster}:{' '.join(self.args)}"


STEPS = (
    Step(0, "plan", ("preflight",)), Step(0, "plan", ("plan",)), Step(0, "plan", ("run", "--yes")),
    Step(0, "plan", ("status",)), Step(0, "plan", ("pause",)), Step(0, "plan", ("rollback", "--node", "node-2", "--yes")),
    Step(0, "plan", ("rollback", "--all", "--yes")), Step(0, "canary", ("canary", "--yes")),
    Step(1, "plain", ("run", "--yes")), Step(1, "plain", ("finalize", "--yes")),
    # a routed cluster (Calico BGP, MetalLB): the routing hand-over and its rollback
    Step(2, "routed", ("run", "--yes")), Step(2, "routed", ("handover", "--yes")),
    Step(2, "routed", ("handover", "--rollback", "--yes")),
    # BIRD peering the ToR: the hand-over narrows a Calico BGPPeer
    Step(3, "routed", ("run", "--yes")), Step(3, "routed", ("handover", "--yes")),
    # policy.mode continuous: the translation and shims applied, then kept (finalize) or removed (rollback)
    Step(4, "continuous", ("run", "--yes")), Step(4, "continuous", ("finalize", "--yes")),
    Step(5, "continuous-one", ("run", "--yes")), Step(5, "continuous-one", ("rollback", "--all", "--yes")),
)
#: The scenario of each cluster the steps use (default: the plain simulated cluster).
SCENARIOS = {2: "calico-bgp", 3: "calico-bgp-tor", 4: "calico-policies", 5: "calico-policies"}


@dataclass
class Outcome:
    step: str
    code: int
    stderr: str
    used: list[tuple[str, str, str, int]] = field(default_factory=list)   # group, resource, verb, HTTP code


def _used(entries, user: str) -> list[tuple[str, str, str, int]]:
    out = []
    for entry in entries:
        if entry.user != user or not entry.user_agent.startswith(USER_AGENT.split("/")[0] + "/") or not entry.resource:
            continue
        head, _, rest = entry.resource.partition("/")
        group, resource = (head, rest) if head in GROUPED or "." in head else ("", entry.resource)
        out.append((group, resource, entry.verb, entry.code))
    return out


def _stale_fleet(sim) -> None:
    """A probe namespace and Service left by an older release (so the fleet is patched, not created)."""
    client = _client(sim)
    core = kubernetes.client.CoreV1Api(client)
    core.create_namespace({"metadata": {"name": "cni-migration-probes"}})
    core.create_namespaced_service("cni-migration-probes", {
        "metadata": {"name": "migrator-probe"},
        "spec": {"selector": {"app.kubernetes.io/name": "migrator-probe"}, "ports": [{"port": 9090}]}})
    client.close()


def _policy_cluster(sim) -> None:
    """The IPPool finalize needs for Cilium's pool (no NAT across it)."""
    client = _client(sim)
    kubernetes.client.CustomObjectsApi(client).create_cluster_custom_object("crd.projectcalico.org", "v1", "ippools",
                                                                            NO_NAT_POOL)
    client.close()


def every_flow(tmp_path: Path, *, drop: int | None = None, until: int | None = None,
               timeout: float = 180) -> list[Outcome | None]:
    """Run ``STEPS`` (through index ``until``) in-cluster, the ClusterRole less rule ``drop``; a
    command still running after ``timeout`` seconds is killed and recorded as ``STALLED``. With
    ``until``, only the steps on that step's cluster run (each cluster is its own simulated
    cluster: the others' steps cannot change what it needs); the others are None."""
    from migrator.sim.cluster import SimCluster

    plans = {"plan": fast_plan(tmp_path, {"rollback.halt_after": None, "probes.checks.deadline": "8s"}),
             "canary": fast_plan(tmp_path, {"name": "canary", "nodes.names": ["node-3"], "order.strategy": "explicit",
                                            "state.configmap_name": "canary", "state.lease_name": "canary",
                                            "canary": {"soak": "3s", "on_success": "rollback"}}, name="canary.yaml"),
             "plain": fast_plan(tmp_path, name="plain.yaml"),
             "continuous": fast_plan(tmp_path, {"name": "continuous", "policy.mode": "continuous"},
                                     name="continuous.yaml"),
             # one node: the others keep room for the pods its rollback moves
             "continuous-one": fast_plan(tmp_path, {"name": "continuous-one", "policy.mode": "continuous",
                                                    "order.strategy": "explicit", "nodes.names": ["node-1"]},
                                         name="continuous-one.yaml")}
    sims: dict[int, SimCluster] = {}

    def cluster(index: int) -> SimCluster:
        """Cluster ``index``, started at its first step: 0 with a stale probe fleet and node-1's
        overlay broken (gates fail there), a routed one with the plan for its hand-over."""
        if index not in sims:
            scenario = SCENARIOS.get(index, "default")
            sim = sims[index] = SimCluster(config=fast_config(6 if scenario == "default" else 3), seed=7,
                                           scenario=scenario).start()
            if index == 0:
                _stale_fleet(sim)
                break_cross_overlay(sim, "node-1")
            if scenario == "calico-policies":
                _policy_cluster(sim)
            elif scenario != "default":
                plans["routed"] = fast_plan(tmp_path, {
                    "name": "routed", "cilium.pod_cidr": sim.config.cilium_pool, "routing.handover": True,
                    "routing.announceable_cidrs": [c for c in sim.config.fabric_announceable if c.startswith("10.")],
                    "routing.handover_timeout": "60s"}, name="routed.yaml")
        return sims[index]

    outcomes: list[Outcome | None] = []
    only = STEPS[until].cluster if until is not None else None
    try:
        pods: dict[tuple[int, str], Pod] = {}
        for i, step in enumerate(STEPS[: None if until is None else until + 1]):
            if only is not None and step.cluster != only:
                outcomes.append(None)
                continue
            sim = cluster(step.cluster)
            key = (step.cluster, step.plan)
            if key not in pods:
                pods[key] = install(sim, plans[step.plan], tmp_path / f"pod-{i}", drop)
            before = len(sim.requests.entries)
            try:
                result = run(sim, pods[key], step.args[0], "--plan", str(plans[step.plan]), *step.args[1:],
                             timeout=timeout)
                code, stderr = result.returncode, result.stderr
            except subprocess.TimeoutExpired as exc:   # killed: it did not finish in time
                raw = exc.stderr or ""
                code, stderr = STALLED, raw.decode(errors="replace") if isinstance(raw, bytes) else raw
            outcomes.append(Outcome(step.name, code, stderr,
                                    _used(sim.requests.entries[before:], pods[key].user)))
    finally:
        for sim in sims.values():
            sim.stop()
    return outcomes
