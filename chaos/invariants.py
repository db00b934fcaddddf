"""The one invariant checker every chaos scenario shares: is the cluster migrated, and was
nothing done twice?

``Baseline`` is taken before the first invocation (which agent pod runs on which node);
``check`` then returns every violation found, as short sentences (empty when all hold):

- every node labelled ``io.cilium.migration/cilium-default=true``, schedulable, and free of any
  taint the tool adds (``migrator.io/*``);
- every running pod that is not hostNetwork has an address from Cilium's pool, and no such pod
  is stuck (not Running, or being deleted);
- each node's cilium agent restarted exactly once: its original pod deleted (or evicted) once,
  successfully, and no later agent pod restarted again;
- no pod evicted twice (successful evictions, by namespace and name);
- the checkpoint says done (run phase ``NODES_DONE``, every node ``DONE``).

Restarts and evictions are read from the simulator's request log, counting answers the server
executed (2xx) from the tool's User-Agent: a faulted request was never executed, and a request
that failed because its object was already gone changed nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from dataclasses import dataclass

from chaos.harness import TOOL_AGENT
from migrator.model.shards import from_configmaps
from migrator.sim.cluster import SimCluster

LABEL = "io.cilium.migration/cilium-default"
TAINT_PREFIX = "migrator.io/"
STATE = ("kube-system", "cni-migration-state")   # plans/example.yaml's state ConfigMap
AGENT_NAMESPACE = "kube-system"
AGENT_LABELS = {"k8s-app": "cilium"}
AGENT_POD = re.compile(r"cilium-[a-z0-9]+")          # DaemonSet cilium's pods: <name>-<suffix>


@dataclass(frozen=True)
class Baseline:
    """What the cluster looked like before the migration."""

    agents: dict[str, str]   # cilium agent pod name -> its node


def _agents(sim: SimCluster) -> dict[str, str]:
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "")
            for p in sim.store.list("pods", AGENT_NAMESPACE)
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in AGENT_LABELS.items())}


def baseline(sim: SimCluster) -> Baseline:
    return Baseline(agents=_agents(sim))


def check(sim: SimCluster, base: Baseline, *, settle: float = 30.0) -> list[str]:
    """Every violated invariant, after letting the cluster settle for up to ``settle`` seconds."""
    sim.settle(timeout=settle)
    problems: list[str] = []
    problems += _nodes(sim)
    problems += _pods(sim)
    problems += _agent_restarts(sim, base)
    problems += _evictions(sim)
    problems += _checkpoint(sim)
    return problems


def _nodes(sim: SimCluster) -> list[str]:
    out = []
    for node in sim.store.list("nodes"):
        name = node["metadata"]["name"]
        if (node["metadata"].get("labels") or {}).get(LABEL) != "true":
            out.append(f"node {name} not labelled {LABEL}=true")
        if node["spec"].get("unschedulable"):
            out.append(f"node {name} left cordoned")
        taints = [t["key"] for t in node["spec"].get("taints") or [] if t.get("key", "").startswith(TAINT_PREFIX)]
        if taints:
            out.append(f"node {name} keeps taint {', '.join(taints)}")
    return out


def _pods(sim: SimCluster) -> list[str]:
    pool = ipaddress.ip_network(sim.config.cilium_pool)
    out = []
    for pod in sim.store.list("pods"):
        status = pod.get("status") or {}
        if pod["spec"].get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        ip = status.get("podIP") or ""
        if status.get("phase") != "Running" or pod["metadata"].get("deletionTimestamp"):
            out.append(f"pod {name} is {status.get('phase')}{' (deleting)' if pod['metadata'].get('deletionTimestamp') else ''}")
        elif not ip or ipaddress.ip_address(ip) not in pool:
            out.append(f"pod {name} on {ip or 'no address'}, not Cilium's {pool}")
    return out[:10] + ([f"... and {len(out) - 10} more pods"] if len(out) > 10 else [])


def _executed(sim: SimCluster) -> list:
    return [e for e in sim.requests.entries if e.user_agent.startswith(TOOL_AGENT) and 200 <= e.code < 300]


def _agent_restarts(sim: SimCluster, base: Baseline) -> list[str]:
    restarted = Counter(e.name for e in _executed(sim)
                        if e.namespace == AGENT_NAMESPACE and (e.verb, e.resource) in
                        (("delete", "pods"), ("create", "pods/eviction")))
    out = []
    for pod, node in sorted(base.agents.items(), key=lambda kv: kv[1]):
        if restarted[pod] != 1:
            out.append(f"node {node}: agent {pod} restarted {restarted[pod]} times")
    again = sorted(name for name in restarted if name not in base.agents and AGENT_POD.fullmatch(name))
    out += [f"agent {name} (a restarted one) restarted again" for name in again]
    return out


def _evictions(sim: SimCluster) -> list[str]:
    evicted = Counter((e.namespace, e.name) for e in _executed(sim)
                      if e.verb == "create" and e.resource == "pods/eviction")
    return [f"pod {ns}/{name} evicted {n} times" for (ns, name), n in sorted(evicted.items()) if n > 1]


def _checkpoint(sim: SimCluster) -> list[str]:
    try:
        cp = from_configmaps(sim.store.list("configmaps", STATE[0]), STATE[1])
    except ValueError as exc:
        return [f"checkpoint unreadable: {exc}"]
    if cp is None:
        return ["no checkpoint"]
    out = []
    if cp.run_phase.value != "NODES_DONE":
        out.append(f"checkpoint run phase {cp.run_phase.value}")
    pending = [f"{r.name} {r.phase.value}" for r in cp.nodes if r.phase.value != "DONE"]
    if pending:
        out.append(f"checkpoint nodes not done: {', '.join(pending[:6])}")
    return out
