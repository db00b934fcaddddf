"""The policy probe, pure: its pods, its truth table, the baseline and the gate's policy checks.

The shape of Kubernetes' network-policy e2e tests: pods ``a``, ``b``, ``c`` (label ``pod=<name>``
plus the labels the plan gives them) in three namespaces, each serving TCP and UDP on every port
of ``probes.policy.ports`` (agnhost ``netexec``, one container per port: ``--http-port=P
--udp-port=P``). Each pod is a one-node DaemonSet pinned to a node of the run (required node
affinity on ``metadata.name``), spread over the run's nodes in order, so the pods stay on their
node, are recycled onto Cilium with it, and the table sees every mix of the two plugins.

The truth table is every probe pod → every other probe pod × port × protocol (loopback left out,
as the e2e tests do), each flow dialled through pods/proxy ``/dial`` from the source pod. Before
the first node starts, the run records the table as observed (``PolicyBaseline``, one character
per flow in a fixed order, so it stays small). Every forward gate then dials the table again,
each flow expecting its baseline verdict (``ProbeCheck.expect``; the check is named by the
flow's index, so a node's record stays small, and shown by the flow); a flow the current gap
report explains (``Explained``; by default none) is not judged. A changed verdict fails the check,
naming the flow, both verdicts and the probe pods, and a check still failing at the gate's
deadline fails the gate, which rolls the node back when ``rollback.automatic``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from migrator.engine.actions import DeleteObject, ProbeCheck
from migrator.model.checkpoint import PolicyBaseline
from migrator.model.observation import ClusterObservation, PodFacts
from migrator.model.plan import MigrationPlan, PolicyProbeSection

NAME = "migrator-policy-probe"
NAME_LABEL = "app.kubernetes.io/name"
POD_LABEL = "pod"
MANAGED = {"app.kubernetes.io/managed-by": "migrator"}
PROTOCOLS = ("TCP", "UDP")
ALLOWED, DENIED, UNSEEN = "1", "0", "?"
#: A gate's policy check is named by the flow's index (short: a node's record keeps the names of
#: the checks that passed); ``Gate.names`` shows the flow.
GATE_PREFIX = "policy@"


@dataclass(frozen=True)
class Flow:
    """One flow of the truth table between two probe pods, as observed now."""

    src: PodFacts
    dst: PodFacts
    port: int
    protocol: str              # TCP | UDP


#: Whether the current policy gap report explains a change of ``flow``'s verdict from the baseline.
Explained = Callable[[Flow], bool]


def nothing_explained(flow: Flow) -> bool:
    """The default: no gap report, every change is unexplained."""
    return False


# ------------------------------------------------------------------------------ the table
def probe_ids(section: PolicyProbeSection) -> list[tuple[str, str]]:
    """(namespace, probe name) of every probe pod, namespaces in the plan's order, names sorted."""
    return [(ns, name) for ns in section.namespaces for name in sorted(section.pods)]


def flow_keys(section: PolicyProbeSection) -> list[tuple[tuple[str, str], tuple[str, str], int, str]]:
    """Every flow of the table in its fixed order: (source id, destination id, port, protocol)."""
    ids = probe_ids(section)
    return [(s, d, port, proto) for s in ids for d in ids if s != d
            for port in section.ports for proto in PROTOCOLS]


def flow_name(src: tuple[str, str], dst: tuple[str, str], port: int, proto: str) -> str:
    return f"policy {src[0]}/{src[1]}->{dst[0]}/{dst[1]} {port}/{proto}"


def spec_digest(section: PolicyProbeSection) -> str:
    """What a baseline was taken with: it is judged only against the same probe."""
    text = repr((section.namespaces, sorted(section.pods.items()), section.ports))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def new_baseline(section: PolicyProbeSection) -> PolicyBaseline:
    return PolicyBaseline(spec=spec_digest(section), table=UNSEEN * len(flow_keys(section)))


# ------------------------------------------------------------------------------ the pods
def placement(section: PolicyProbeSection, order: tuple[str, ...]) -> dict[tuple[str, str], str]:
    """The node each probe pod is pinned to: the run's nodes in turn."""
    return {pid: order[i % len(order)] for i, pid in enumerate(probe_ids(section))} if order else {}


def manifests(plan: MigrationPlan, order: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    """The namespaces (when the tool creates them) and one pinned DaemonSet per probe pod."""
    section = plan.probes.policy
    if section is None:
        return ()
    out: list[dict[str, Any]] = []
    if section.create_namespaces:
        out += [{"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": ns, "labels": {NAME_LABEL: NAME, **MANAGED}}} for ns in section.namespaces]
    for (ns, name), node in placement(section, order).items():
        labels = {**section.pods[name], POD_LABEL: name, NAME_LABEL: NAME, **MANAGED}
        containers = [{
            "name": f"netexec-{port}", "image": plan.probes.image,
            "args": ["netexec", f"--http-port={port}", f"--udp-port={port}"],
            "ports": [{"name": f"tcp-{port}", "containerPort": port, "protocol": "TCP"},
                      {"name": f"udp-{port}", "containerPort": port, "protocol": "UDP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "5m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
        } for port in section.ports]
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
        out.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                    "metadata": {"name": f"{NAME}-{name}", "namespace": ns, "labels": labels},
                    "spec": {"selector": {"matchLabels": {NAME_LABEL: NAME, POD_LABEL: name}},
                             "template": {"metadata": {"labels": labels}, "spec": {
                                 "tolerations": [{"operator": "Exists"}], "terminationGracePeriodSeconds": 1,
                                 "affinity": affinity, "containers": containers}}}})
    return tuple(out)


def removal(plan: MigrationPlan) -> tuple[DeleteObject, ...]:
    """Deleting the policy probe: the namespaces the tool created, else each probe DaemonSet."""
    section = plan.probes.policy
    if section is None:
        return ()
    if section.create_namespaces:
        return tuple(DeleteObject(group="", version="v1", plural="namespaces", name=ns) for ns in section.namespaces)
    return tuple(DeleteObject(group="apps", version="v1", plural="daemonsets", namespace=ns, name=f"{NAME}-{name}")
                 for ns, name in probe_ids(section))


def probe_pods(obs: ClusterObservation, section: PolicyProbeSection) -> dict[tuple[str, str], PodFacts]:
    """The usable probe pod of every probe id (Running, Ready, with an address, not deleting)."""
    found: dict[tuple[str, str], PodFacts] = {}
    wanted = set(probe_ids(section))
    for pod in obs.policy_probe_pods:
        pid = (pod.namespace, pod.labels.get(POD_LABEL, ""))
        if pid in wanted and pid not in found and pod.phase == "Running" and pod.ready \
                and not pod.deleting and pod.ip:
            found[pid] = pod
    return found


def missing(obs: ClusterObservation, section: PolicyProbeSection) -> list[str]:
    """The probe ids without a usable pod, as ``namespace/name``."""
    pods = probe_pods(obs, section)
    return [f"{ns}/{name}" for ns, name in probe_ids(section) if (ns, name) not in pods]


def _check(section: PolicyProbeSection, name: str, src: PodFacts, dst: PodFacts, port: int, proto: str,
           expect: Literal["allow", "deny", "observe"]) -> ProbeCheck:
    return ProbeCheck(name=name, namespace=src.namespace, pod=src.name, pod_port=section.ports[0],
                      host=dst.ip or "", port=port, tries=section.tries,
                      protocol="udp" if proto == "UDP" else "http", expect=expect, target=dst.name)


# ------------------------------------------------------------------------------ the baseline
def observe_checks(obs: ClusterObservation, section: PolicyProbeSection,
                   table: str, against: str | None = None) -> tuple[ProbeCheck, ...] | str:
    """Checks that record a verdict (named ``policy#<index>``) for every flow ``table`` has not
    seen, or — given ``against`` — every flow whose verdict in ``table`` is not the one there;
    or why they cannot be dialled now."""
    lost = missing(obs, section)
    if lost:
        return f"waiting for the policy probe pods: {', '.join(lost[:3])}" + (" …" if len(lost) > 3 else "")
    pods = probe_pods(obs, section)
    return tuple(_check(section, f"policy#{i}", pods[s], pods[d], port, proto, "observe")
                 for i, (s, d, port, proto) in enumerate(flow_keys(section))
                 if table[i] == UNSEEN or (against is not None and table[i] != against[i]))


def baseline_checks(obs: ClusterObservation, section: PolicyProbeSection,
                    baseline: PolicyBaseline) -> tuple[ProbeCheck, ...] | str:
    """The flows the baseline has not seen yet, or why not now."""
    return observe_checks(obs, section, baseline.table)


def fold_table(table: str, detail: dict[str, str]) -> str:
    """A round of ``observe`` answers (``allow …`` / ``deny …``) written into ``table``; a check
    that could not be dialled keeps its character and is dialled again."""
    chars = list(table)
    for name, outcome in detail.items():
        if not name.startswith("policy#"):
            continue
        index = int(name[len("policy#"):])
        if 0 <= index < len(chars) and outcome.startswith(("allow", "deny")):
            chars[index] = ALLOWED if outcome.startswith("allow") else DENIED
    return "".join(chars)


def fold_baseline(baseline: PolicyBaseline, detail: dict[str, str]) -> PolicyBaseline:
    """A baseline round's answers written into the baseline's table."""
    return baseline.model_copy(update={"table": fold_table(baseline.table, detail)})


def differences(section: PolicyProbeSection, baseline: str, table: str) -> list[str]:
    """The flows whose verdict in ``table`` differs from ``baseline``, as human lines."""
    words = {ALLOWED: "allowed", DENIED: "denied"}
    return [f"{flow_name(*key)} {words[table[i]]}, {words[baseline[i]]} before the run"
            for i, key in enumerate(flow_keys(section)) if table[i] != UNSEEN and table[i] != baseline[i]]


# ------------------------------------------------------------------------------ the gate
def gate_checks(obs: ClusterObservation, section: PolicyProbeSection, baseline: PolicyBaseline,
                explained: Explained = nothing_explained) -> tuple[ProbeCheck, ...] | str:
    """Every flow of the table expecting its baseline verdict, except those ``explained``
    (the current gap report allows them to change); or why the table cannot be dialled now."""
    if baseline.spec != spec_digest(section):
        return ()   # the probe changed since the baseline: nothing to judge against (said by the caller)
    lost = missing(obs, section)
    if lost:
        return f"waiting for the policy probe pods: {', '.join(lost[:3])}" + (" …" if len(lost) > 3 else "")
    pods = probe_pods(obs, section)
    out = []
    for i, (s, d, port, proto) in enumerate(flow_keys(section)):
        seen = baseline.table[i]
        if seen == UNSEEN or explained(Flow(pods[s], pods[d], port, proto)):
            continue
        expect: Literal["allow", "deny"] = "allow" if seen == ALLOWED else "deny"
        out.append(_check(section, f"{GATE_PREFIX}{i}", pods[s], pods[d], port, proto, expect))
    return tuple(out)


def flow_names(section: PolicyProbeSection, checks: tuple[ProbeCheck, ...]) -> dict[str, str]:
    """How the gate shows its policy checks: the flow each short name stands for."""
    keys = flow_keys(section)
    return {c.name: flow_name(*keys[int(c.name[len(GATE_PREFIX):])]) for c in checks
            if c.name.startswith(GATE_PREFIX)}
