"""Finalize decisions: after every node is DONE, make Cilium the only CNI (guide §1.7, §3 #14).

Steps, each journaled in ``checkpoint.finalize`` before its actions run:
1. ``helm-values``: write the final Helm values (unmanaged-pod watcher restarts on, custom CNI
   config off, policy enforcement default, eBPF host routing) for the operator's ``helm upgrade``;
2. ``configmap`` (only with ``finalize.apply_configmap``): patch ``cilium-config`` with the
   same settings, for clusters where Helm does not own Cilium; with ``policy.mode: continuous``
   and no ``apply_configmap``, ``enable-policy: default`` alone (enforcement must survive the
   CiliumNodeConfig's deletion until the operator applies the Helm values); with
   ``routing.handover``, ``enable-bgp-control-plane`` likewise (and the Helm values keep
   ``bgpControlPlane.enabled``);
3. ``switch-routing`` (only with ``routing.native_routing``, after the hand-over): delete every
   agent pod at once so that every node leaves the overlay together (a tunnel-mode node and a
   native one cannot reach each other, cilium/cilium#9680), and wait for each node's new agent;
   ``restart-agents`` is then skipped;
   ``restart-agents``: rollout-restart the agent DaemonSet once (the ``restartedAt`` value is
   fixed in the checkpoint) and wait for the rollout;
4. ``delete-node-config``: delete the CiliumNodeConfig;
5. with ``policy.mode: continuous``: ``remove-shims`` (no pod is unmanaged any more; enforcement
   is already global from step 2's ``enable-policy`` and the Helm values), ``verify-policy``
   (every translated object observed and ``policy verify`` over the live objects passes, else
   halt with Calico's policies kept) and ``remove-calico-policies``;
6. ``remove-calico``: delete the Calico objects the plan lists — the point of no return;
7. ``node-cleanup``: on each node, a pod with ``sim.migrator.io/node-action: cleanup-calico``
   removes Calico's leftovers (CNI files, binaries, state, tunnel devices, bird routes).
With ``probes.policy``, between 4 and 5 (every pod is on Cilium under the final settings,
nothing is left in a gap, Calico is still there to go back to): ``policy-table`` dials the
policy probe's truth table again, which must equal the one before the run (a flow still changed
at ``probes.checks.deadline`` halts, naming it), then ``remove-policy-probe`` deletes its pods.
Each step is a row (``FINALIZE``) run by ``rows.advance``; ``configmap`` and ``node-cleanup``
are skipped when the plan turns them off, and a step that cannot succeed halts the run.
Finalize is refused until every selected node is DONE and no node or pod in the cluster is
left on Calico, and with ``routing.handover`` until the hand-over is done (``finalize_blockers``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import get_args

import yaml

from migrator.engine import policy_probe, policy_steps
from migrator.engine.actions import (
    Action,
    CreatePod,
    DeleteNodeConfig,
    DeleteObject,
    DeletePod,
    PatchConfigMap,
    RestartDaemonSet,
    RunProbes,
    WriteFile,
)
from migrator.engine.node_config import BGP_KEY, ENFORCEMENT_KEY, node_config_version
from migrator.engine.pending import RESEND_AFTER, Pending
from migrator.engine.pods import cleanup_pod_name
from migrator.engine.probes import fleet_removal
from migrator.engine.rows import ProgressCursor, Row, advance, validate
from migrator.engine.table import check_run_move
from migrator.model.checkpoint import Checkpoint, FinalizeProgress, FinalizeStep, truncate_error
from migrator.model.observation import NODE_ACTION_ANNOTATION, ClusterObservation, PodFacts
from migrator.model.plan import MIGRATION_LABEL, MigrationPlan, format_duration
from migrator.model.pod import PodRequest
from migrator.model.states import NodePhase, RunPhase

HALT = "halt"
STEP_NAMED: dict[str, FinalizeStep] = {step: step for step in get_args(FinalizeStep)}
FINAL_CONFIG = {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                "cni-exclusive": "true", "custom-cni-conf": "false", "enable-policy": "default",
                "enable-host-legacy-routing": "false", "unmanaged-pod-watcher-interval": "15s"}
CLEANUP_SCRIPT = """set -u
rm -f /host/etc/cni/net.d/10-calico.conflist /host/etc/cni/net.d/10-calico.conflist.cilium_bak
rm -f /host/etc/cni/net.d/calico-kubeconfig /host/opt/cni/bin/calico /host/opt/cni/bin/calico-ipam
rm -rf /host/var/lib/calico /host/var/run/calico
for dev in vxlan.calico tunl0; do ip link delete "$dev" 2>/dev/null || true; done
for dev in $(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep '^cali'); do
  ip link delete "$dev" 2>/dev/null || true
done
ip route flush proto bird 2>/dev/null || true
for table in filter nat mangle raw; do
  iptables-save -t "$table" | grep -v -e '-j cali-' -e '^:cali-' -e '^-A cali-' | iptables-restore -T "$table" || true
done
"""


def helm_values(plan: MigrationPlan | None = None) -> str:
    """The final Helm values (guide §1.7), to merge over the migration values; with
    ``routing.handover`` Cilium's BGP control plane stays on (it announces the pod CIDRs and the
    LoadBalancer IPs the hand-over gave it)."""
    values: dict[str, object] = {"operator": {"unmanagedPodWatcher": {"restart": True}},
                                 "cni": {"customConf": False, "uninstall": False},
                                 "policyEnforcementMode": "default",
                                 "bpf": {"hostLegacyRouting": False}}
    if plan is not None and plan.routing.handover:
        values["bgpControlPlane"] = {"enabled": True}
    if plan is not None and plan.routing.native_routing:
        values.update(routingMode="native", ipv4NativeRoutingCIDR=plan.cilium.pod_cidr, autoDirectNodeRoutes=False)
    header = ("# Final Cilium Helm values after the migration (docs: 'Migrating a cluster to Cilium',\n"
              "# post-migration). Apply with: helm upgrade cilium cilium/cilium -n kube-system \\\n"
              "#   --reuse-values -f THIS_FILE && kubectl -n kube-system rollout restart ds/cilium\n")
    return header + yaml.safe_dump(values, sort_keys=True)


SHOWN = 5


def _names(items: Sequence[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def finalize_blockers(checkpoint: Checkpoint, obs: ClusterObservation | None = None,
                      plan: MigrationPlan | None = None) -> list[str]:
    """Why finalize may not start (empty when it may), each with what to do.

    The run's own nodes must be ``DONE`` (a node deleted from the cluster during the run does
    not block: it runs nothing). Removing Calico is cluster-wide, so with an observation of every
    node and pod (finalize observes them all) it is also refused while any node in the cluster —
    in the run or not (a selector that missed it, a name misspelt, a node that joined later) —
    still runs on Calico (no migration label), or any pod still holds an address outside
    Cilium's pod CIDR. Lists are capped; the counts say how many there are."""
    blockers: list[str] = []
    if checkpoint.halted:
        blockers.append(f"run is halted: {checkpoint.halted}")
    if checkpoint.run_phase not in (RunPhase.NODES_DONE, RunPhase.FINALIZING, RunPhase.FINALIZED):
        blockers.append(f"run is {checkpoint.run_phase.value}, not NODES_DONE")
    present = obs.node_by_name if obs is not None else None
    retry: list[str] = []
    waiting: list[str] = []
    for r in checkpoint.nodes:
        if r.phase is NodePhase.DONE:
            continue
        if present is not None and r.name not in present and r.phase is NodePhase.SKIPPED:
            continue   # deleted from the cluster: nothing runs there
        if r.phase in (NodePhase.ROLLED_BACK, NodePhase.SKIPPED):
            retry.append(r.name)
        waiting.append(f"{r.name} is {r.phase.value}")
    if retry:   # the way forward first: the list after it may be cut short
        blockers.append(f"{_names(retry)} rolled back or skipped: run `migrator retry --node NAME` for each once "
                        "the cause is fixed, then `migrator resume`")
    blockers.extend(waiting)
    if plan is not None and plan.routing.handover and checkpoint.run_phase is RunPhase.NODES_DONE:
        handover = checkpoint.handover
        if handover is None or handover.state != "done":
            state = "not started" if handover is None else (
                "rolled back" if handover.state == "undone" else f"at step {handover.key} ({handover.direction})")
            blockers.append(f"the routing hand-over is {state}: removing Calico now would take its routes away; run "
                            "`migrator handover --plan PLAN --yes` first (routing.handover is on)")
    if obs is None or plan is None:
        return blockers
    finished = {r.name for r in checkpoint.nodes if r.phase is NodePhase.DONE}
    outside = [n.name for n in obs.nodes if n.name not in checkpoint.by_name and n.labels.get(MIGRATION_LABEL) != "true"]
    unlabelled = [n.name for n in obs.nodes if n.name in finished and n.labels.get(MIGRATION_LABEL) != "true"]
    if outside:
        blockers.append(f"{len(outside)} node(s) outside the run still on Calico: {_names(outside)}; migrate them "
                        "first (a plan that selects them, then `migrator run`), or drain and delete them")
    if unlabelled:
        blockers.append(f"{_names(unlabelled)} DONE but without the {MIGRATION_LABEL}=true label (removed by "
                        "hand?): put it back (kubectl label node NAME " + MIGRATION_LABEL + "=true), or roll "
                        "the node back and retry it")
    cilium = ipaddress.ip_network(plan.cilium.pod_cidr)
    stale = [f"{p.namespace}/{p.name} on {p.node}" for p in obs.pods
             if p.node is not None and not p.host_network and p.ip and not p.terminal and not p.deleting
             and not p.ip_in(cilium)]
    if stale:
        blockers.append(f"{len(stale)} pod(s) still on Calico addresses: {_names(stale)}; migrate their node, or "
                        "delete the pods so they restart on Cilium, then finalize again")
    return blockers


def _same_time(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    try:
        return datetime.fromisoformat(a.replace("Z", "+00:00")) == datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return a == b


@dataclass(kw_only=True)
class FinalizeCursor(ProgressCursor):
    """The finalize step being run by ``rows.advance``."""

    plan: MigrationPlan
    obs: ClusterObservation
    cp: Checkpoint
    progress: FinalizeProgress

    def sent(self, actions: Sequence[Action], **changes: object) -> None:
        self.actions.extend(actions)
        self.progress = self.progress.model_copy(update={"sent_at": self.now, **changes})


def _helm_values_written(c: FinalizeCursor) -> str | None:
    path = c.plan.finalize.helm_values_path
    return f"wrote {path}" if path in c.obs.files else None


def _final_config(plan: MigrationPlan) -> dict[str, str]:
    """What the ``configmap`` step writes: the final settings (``finalize.apply_configmap``), and
    whatever the CiliumNodeConfig carried per node that must outlive it when it is deleted and the
    agents restart: under ``policy.mode: continuous`` ``enable-policy: default``, with
    ``routing.handover`` ``enable-bgp-control-plane: "true"``."""
    config = dict(FINAL_CONFIG) if plan.finalize.apply_configmap else {}
    if policy_steps.continuous(plan):
        config[ENFORCEMENT_KEY] = "default"
    if plan.routing.handover:
        config[BGP_KEY] = "true"
    if plan.routing.native_routing:
        config.update(native_routing_config(plan))
    return config


def native_routing_config(plan: MigrationPlan) -> dict[str, str]:
    """Cilium's agent keys for native routing after the hand-over: pod traffic leaves unencapsulated
    and reaches other nodes' pod CIDRs through the routers Cilium's BGP announces them to, so no
    direct node routes; masquerading spares the pod CIDR (Helm ``routingMode``,
    ``ipv4NativeRoutingCIDR``, ``autoDirectNodeRoutes``)."""
    return {"routing-mode": "native", "ipv4-native-routing-cidr": plan.cilium.pod_cidr,
            "auto-direct-node-routes": "false"}


def _configmap_off(c: FinalizeCursor) -> str | None:
    return None if _final_config(c.plan) else "finalize.apply_configmap is false"


def _configmap_patched(c: FinalizeCursor) -> str | None:
    current = c.obs.cilium_config
    if current is None or any(current.get(k) != v for k, v in _final_config(c.plan).items()):
        return None
    return f"{c.plan.cilium.agent.config_map} has the final settings"


def _send_configmap(c: FinalizeCursor) -> list[Action]:
    agent = c.plan.cilium.agent
    return [PatchConfigMap(namespace=agent.namespace, name=agent.config_map, data=_final_config(c.plan))]


def _stamp(c: FinalizeCursor) -> str:
    return c.progress.restarted_at or c.now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rolled_out(c: FinalizeCursor) -> str | None:
    ds = c.obs.cilium_daemonset
    if ds is None or not _same_time(ds.restarted_at, _stamp(c)) or not ds.rolled_out:
        return None
    return "agents restarted with the final settings"


def _restart_agents(c: FinalizeCursor) -> None:
    agent, ds, stamp = c.plan.cilium.agent, c.obs.cilium_daemonset, _stamp(c)
    if c.progress.restarted_at is None or (
            c.pending.due(c.now) and (ds is None or not _same_time(ds.restarted_at, stamp))):
        c.sent([RestartDaemonSet(namespace=agent.namespace, name=agent.daemonset, restarted_at=stamp)],
               restarted_at=stamp)
    c.wake(c.now + RESEND_AFTER)
    c.say(f"restarting DaemonSet {agent.namespace}/{agent.daemonset}")


def _native_off(c: FinalizeCursor) -> str | None:
    return None if c.plan.routing.native_routing else "routing.native_routing is false"


def _agents(c: FinalizeCursor) -> list[PodFacts]:
    """Every agent pod in the cluster, deleting ones included."""
    agent = c.plan.cilium.agent
    return [p for n in c.obs.nodes for p in c.obs.agent_pods(n.name, agent.namespace, agent.selector)]


def _switched(c: FinalizeCursor) -> str | None:
    """Every agent pod deleted for the switch is gone and each node that had one runs a Ready new one."""
    replaced = set(c.progress.replaced)
    if not replaced:
        return None
    agent, pods = c.plan.cilium.agent, _agents(c)
    nodes = {p.node for p in pods}
    if any(p.uid in replaced for p in pods):
        return None
    for node in nodes:
        current = c.obs.agent_pod(node or "", agent.namespace, agent.selector)
        if current is None or not current.ready:
            return None
    return f"native routing: every agent restarted at once ({len(replaced)} pod(s))"


def _switch_routing(c: FinalizeCursor) -> None:
    """Delete every agent pod in one batch (their DaemonSet recreates them with the final settings
    at once), then again any that a lost request left."""
    pods = [p for p in _agents(c) if not p.deleting]
    first = not c.progress.replaced
    targets = pods if first else [p for p in pods if p.uid in set(c.progress.replaced)]
    if targets and (first or c.pending.due(c.now)):
        c.sent([DeletePod(node=p.node or "", namespace=p.namespace, name=p.name, uid=p.uid, reason="agent-restart")
                for p in targets], **({"replaced": tuple(p.uid for p in targets)} if first else {}))
    c.wake(c.now + RESEND_AFTER)
    c.say(f"switching to native routing: {len(c.progress.replaced)} agent pod(s) restarted at once")


def _rollout_timeout_error(c: FinalizeCursor) -> str:
    agent = c.plan.cilium.agent
    return (f"finalize: DaemonSet {agent.namespace}/{agent.daemonset} did not roll out within "
            f"{format_duration(c.plan.finalize.timeout)}")


def _node_config_gone(c: FinalizeCursor) -> str | None:
    return "CiliumNodeConfig deleted" if c.obs.node_config is None else None


def _send_node_config_delete(c: FinalizeCursor) -> list[Action]:
    ref = c.plan.cilium.node_config
    current = c.obs.node_config
    version = (c.cp.node_config_version or (current.api_version if current else None)
               or node_config_version(c.plan, c.obs.served_cnc_versions) or "cilium.io/v2")
    return [DeleteNodeConfig(namespace=ref.namespace, name=ref.name, api_version=version)]


def _probes_off(c: FinalizeCursor) -> str | None:
    return None if c.plan.probes.enabled else "probes disabled by the plan"


def _fleet_gone(c: FinalizeCursor) -> str | None:
    return None if any(not p.deleting for p in c.obs.probe_pods) else "probe fleet removed"


def _policy_off(c: FinalizeCursor) -> str | None:
    return None if policy_steps.continuous(c.plan) else "policy.mode is off"


def _shims_gone(c: FinalizeCursor) -> str | None:
    facts = c.obs.policy
    if facts is None or facts.present is None or any(o.shim for o in facts.present):
        return None
    return "migration shims removed"


def _translation_missing(c: FinalizeCursor) -> list[str]:
    """The translated objects (shims aside) not observed."""
    facts = c.obs.policy
    if facts is None or facts.present is None:
        return []
    have = {o.ref for o in facts.present}
    wanted = [(str(m["kind"]), (m.get("metadata") or {}).get("namespace"), str((m.get("metadata") or {}).get("name")))
              for m in facts.wanted if not policy_steps.is_shim(m)]
    return [f"{kind} {ns + '/' if ns else ''}{name}" for kind, ns, name in wanted if (kind, ns, name) not in have]


def _verified(c: FinalizeCursor) -> str | None:
    facts = c.obs.policy
    if facts is None or facts.error is not None or facts.present is None or facts.differences is None \
            or facts.differences or _translation_missing(c):
        return None
    return "policy verify passed on the live translation"


def _verify_failed(c: FinalizeCursor) -> str | None:
    facts = c.obs.policy
    if facts is not None and facts.error is not None:
        return (f"finalize: the cluster's policies cannot be translated ({facts.error}); Calico's policies are "
                "kept. Fix that object, then `migrator finalize` again")
    missing = _translation_missing(c)
    if missing:
        return (f"finalize: {len(missing)} translated policy object(s) missing ({_names(missing)}); Calico's "
                "policies are kept. Run `migrator policy translate --plan PLAN | kubectl apply -f -` or "
                "`migrator resume` (prepare re-applies them), then `migrator finalize` again")
    facts = c.obs.policy
    if facts is not None and facts.differences:
        return (f"finalize: policy verify finds {len(facts.differences)} difference(s) between Calico's policies "
                f"and the live translation ({facts.differences[0]}); Calico's policies are kept. See "
                "`migrator policy verify --plan PLAN`, fix the translation or the Calico policy, then "
                "`migrator finalize` again")
    return None


def _verifying(c: FinalizeCursor) -> None:
    c.say("verifying the live translation against Calico's policies")
    c.wake(c.now + RESEND_AFTER)


def _calico_policies_gone(c: FinalizeCursor) -> str | None:
    facts = c.obs.policy
    return "Calico policy objects removed" if facts is not None and not facts.calico else None


def _send_calico_policy_removal(c: FinalizeCursor) -> list[Action]:
    facts = c.obs.policy
    return [DeleteObject(group=o.group, version=o.version, plural=o.plural, namespace=o.namespace, name=o.name)
            for o in (facts.calico if facts is not None else ())]


def _calico_gone(c: FinalizeCursor) -> str | None:
    return None if c.obs.calico_objects else "Calico objects removed"


def _send_calico_removal(c: FinalizeCursor) -> list[Action]:
    return [DeleteObject(group=o.group, version=o.version, plural=o.plural, namespace=o.namespace, name=o.name)
            for o in c.obs.calico_objects]


def _cleanup_off(c: FinalizeCursor) -> str | None:
    return None if c.plan.finalize.node_cleanup else "finalize.node_cleanup is false"


def _to_clean(c: FinalizeCursor) -> list[str]:
    """The run's nodes still in the cluster (a node deleted during the run has nothing to clean)."""
    return [name for name in c.cp.order if name in c.obs.node_by_name]


def _cleaned(c: FinalizeCursor) -> str | None:
    return "every node cleaned up" if set(_to_clean(c)) <= set(c.progress.cleaned) else None


def _cleanup_pod_of(c: FinalizeCursor, node: str) -> PodFacts | None:
    return c.obs.pod(c.plan.verify.namespace, cleanup_pod_name(node))


def _cleanup_failed(c: FinalizeCursor) -> str | None:
    for name in c.progress.active:
        pod = _cleanup_pod_of(c, name)
        if pod is not None and pod.phase == "Failed":
            return f"finalize: clean-up pod {pod.namespace}/{pod.name} failed on node {name}"
    return None


def _cleanup(c: FinalizeCursor) -> None:
    """Run the clean-up pods, ``concurrency`` nodes at a time; a finished pod is removed."""
    plan, progress = c.plan, c.progress
    cleaned, active = list(progress.cleaned), list(progress.active)
    actions: list[Action] = []
    for name in list(active):
        pod = _cleanup_pod_of(c, name)
        if name not in c.obs.node_by_name:   # deleted meanwhile: nothing left to clean there
            active.remove(name)
        elif pod is not None and pod.phase == "Succeeded":
            cleaned.append(name)
            active.remove(name)
            actions.append(DeletePod(node=name, namespace=pod.namespace, name=pod.name, uid=pod.uid,
                                     reason="node-action-cleanup"))
        elif pod is None and c.pending.due(c.now):
            actions.append(_cleanup_pod(plan, name))
    done = set(cleaned) | set(active)
    room = plan.concurrency.limit(len(c.cp.nodes)) - len(active)
    for name in _to_clean(c):
        if room <= 0:
            break
        if name in done:
            continue
        actions.append(_cleanup_pod(plan, name))
        active.append(name)
        room -= 1
    changes: dict[str, object] = {"cleaned": tuple(cleaned), "active": tuple(active)}
    if actions:
        c.sent(actions, **changes)
    else:
        c.progress = c.progress.model_copy(update=changes)
    c.wake(c.now + RESEND_AFTER)
    c.say(f"node clean-up: {len(cleaned)}/{len(_to_clean(c))} done, {len(active)} running")


def _cleanup_pod(plan: MigrationPlan, name: str) -> CreatePod:
    """The node-local Calico clean-up pod for node ``name``."""
    return CreatePod(
        node=name, purpose="node-action", pod=PodRequest(
            node_name=name, namespace=plan.verify.namespace, name=cleanup_pod_name(name),
            image=plan.finalize.cleanup_image, command=("/bin/sh", "-c", CLEANUP_SCRIPT),
            annotations={NODE_ACTION_ANNOTATION: "cleanup-calico", "migrator.io/node": name},
            labels={"app.kubernetes.io/name": "migrator-cleanup",
                    "app.kubernetes.io/managed-by": "migrator"},
            host_network=True, privileged=True,
            host_path_mounts=(("/etc/cni/net.d", "/host/etc/cni/net.d"),
                              ("/opt/cni/bin", "/host/opt/cni/bin"),
                              ("/var/lib/calico", "/host/var/lib/calico"),
                              ("/var/run/calico", "/host/var/run/calico"))))


def _no_policy_probe(c: FinalizeCursor) -> str | None:
    return None if c.plan.probes.policy is not None and c.plan.probes.enabled else "no policy probe in the plan"


def _no_policy_baseline(c: FinalizeCursor) -> str | None:
    section, baseline = c.plan.probes.policy, c.cp.policy_baseline
    if _no_policy_probe(c) or section is None:
        return "no policy probe in the plan"
    if baseline is None or not baseline.complete or baseline.spec != policy_probe.spec_digest(section):
        return "no baseline of this policy probe to compare with"
    return None


def _policy_table_kept(c: FinalizeCursor) -> str | None:
    baseline = c.cp.policy_baseline
    if baseline is None or c.progress.policy_table != baseline.table:
        return None
    return f"policy probe: all {len(baseline.table)} flows have their verdicts from before the run"


def _policy_table(c: FinalizeCursor) -> None:
    """Dial every flow whose verdict after finalize is not yet the one before the run (all at
    first), each round after the probes' interval, until they all are or the deadline passes."""
    section, baseline = c.plan.probes.policy, c.cp.policy_baseline
    assert section is not None and baseline is not None
    table = c.progress.policy_table or policy_probe.UNSEEN * len(baseline.table)
    if c.progress.policy_table is None:
        c.progress = c.progress.model_copy(update={"policy_table": table})
    checks = policy_probe.observe_checks(c.obs, section, table, against=baseline.table)
    interval = c.plan.probes.checks.interval
    if isinstance(checks, str):
        c.say(checks)
    else:
        if Pending(c.progress.sent_at, after=interval).due(c.now):
            c.sent([RunProbes(purpose="policy", checks=checks, threshold=c.plan.probes.checks.pass_threshold)])
        changed = policy_probe.differences(section, baseline.table, table)
        c.say(f"policy probe after finalize: {len(checks)} flow(s) to dial"
              + (f", {len(changed)} changed: {'; '.join(changed[:2])}" if changed else ""))
    c.wake(c.now + interval)


def _policy_table_error(c: FinalizeCursor) -> str:
    section, baseline = c.plan.probes.policy, c.cp.policy_baseline
    assert section is not None and baseline is not None
    table = c.progress.policy_table or ""
    changed = policy_probe.differences(section, baseline.table, table) if table else []
    unseen = table.count(policy_probe.UNSEEN) if table else len(baseline.table)
    return truncate_error(
        f"finalize: the policy probe's table differs from before the run after "
        f"{format_duration(c.plan.probes.checks.deadline)}: {len(changed)} flow(s) changed"
        + (f" ({'; '.join(changed[:3])})" if changed else "") + (f", {unseen} not dialled" if unseen else "")
        + "; find the policy that changed them (migrator policy verify), fix it, then `migrator resume`")


def _policy_probe_gone(c: FinalizeCursor) -> str | None:
    return None if any(not p.deleting for p in c.obs.policy_probe_pods) else "policy probe removed"


def _finalize_timeout(c: FinalizeCursor) -> timedelta:
    return c.plan.finalize.timeout


ROWS: tuple[Row[FinalizeCursor], ...] = (
    Row(step="helm-values", done=_helm_values_written, done_doc="the file exists in the output directory",
        send=lambda c: [WriteFile(path=c.plan.finalize.helm_values_path, content=helm_values(c.plan))],
        sends=("write-file",), doing=lambda c: f"writing {c.plan.finalize.helm_values_path}", then="configmap"),
    Row(step="configmap", done=_configmap_patched, done_doc="the agent ConfigMap holds the final settings",
        skip=_configmap_off, skip_doc="`finalize.apply_configmap` is false, `policy.mode` off and "
                                      "`routing.handover` off (continuous patches `enable-policy: default` alone, "
                                      "the hand-over `enable-bgp-control-plane`, native routing its keys)",
        send=_send_configmap, sends=("patch-configmap",), then="switch-routing",
        doing=lambda c: f"patching {c.plan.cilium.agent.namespace}/{c.plan.cilium.agent.config_map}"),
    Row(step="switch-routing", done=_switched, done_doc="every agent pod deleted for the switch is gone and each "
        "node runs a Ready new one", skip=_native_off, skip_doc="`routing.native_routing` is false",
        work=_switch_routing, sends=("delete-pod",), timeout=_finalize_timeout, on_timeout=HALT,
        timeout_error=lambda c: f"finalize: the agents did not all come back within "
                                f"{format_duration(c.plan.finalize.timeout)} after the switch to native routing",
        timeout_doc="`finalize.timeout`", then="restart-agents"),
    Row(step="restart-agents", done=_rolled_out, done_doc="the DaemonSet carries our restartedAt and rolled out",
        skip=lambda c: "the switch to native routing restarted every agent" if c.plan.routing.native_routing
        else None, skip_doc="`routing.native_routing` (the switch restarted every agent with the final settings)",
        work=_restart_agents, sends=("restart-daemonset",), timeout=_finalize_timeout, on_timeout=HALT,
        timeout_error=_rollout_timeout_error, timeout_doc="`finalize.timeout`", then="delete-node-config"),
    Row(step="delete-node-config", done=_node_config_gone, done_doc="no CiliumNodeConfig observed",
        send=_send_node_config_delete, sends=("delete-node-config",), then="policy-table",
        doing=lambda c: f"deleting CiliumNodeConfig {c.plan.cilium.node_config.namespace}/"
                        f"{c.plan.cilium.node_config.name}"),
    Row(step="policy-table", done=_policy_table_kept, done_doc="every flow of the policy probe has its verdict "
        "from before the run", skip=_no_policy_baseline, skip_doc="no `probes.policy`, or no baseline of this probe",
        work=_policy_table, sends=("run-probes",), timeout=lambda c: c.plan.probes.checks.deadline,
        on_timeout=HALT, timeout_error=_policy_table_error, timeout_doc="`probes.checks.deadline`",
        then="remove-policy-probe"),
    Row(step="remove-policy-probe", done=_policy_probe_gone, done_doc="no policy probe pod left",
        skip=_no_policy_probe, skip_doc="no `probes.policy`", send=lambda c: list(policy_probe.removal(c.plan)),
        sends=("delete-object",), doing="removing the policy probe", then="remove-probes"),
    Row(step="remove-probes", done=_fleet_gone, done_doc="no probe pod left", skip=_probes_off,
        skip_doc="`probes.enabled` is false", send=lambda c: [fleet_removal(c.plan)], sends=("delete-object",),
        doing=lambda c: f"removing the probe fleet (namespace {c.plan.probes.namespace})", then="remove-shims"),
    Row(step="remove-shims", done=_shims_gone, done_doc="no migration shim (`migrator.io/shim=true`) observed",
        skip=_policy_off, skip_doc="`policy.mode` is off", send=lambda c: policy_steps.removals(c.obs, shims_only=True),
        sends=("delete-object",), doing="removing the migration shims (no pod is unmanaged any more)",
        then="verify-policy"),
    Row(step="verify-policy", done=_verified,
        done_doc="every translated object observed and `policy verify` over them passes", skip=_policy_off,
        skip_doc="`policy.mode` is off", work=_verifying, failed=_verify_failed, on_failed=HALT,
        failed_doc="a translated object is missing or `policy verify` finds a difference (Calico's policies "
                   "are kept)", then="remove-calico-policies"),
    Row(step="remove-calico-policies", done=_calico_policies_gone,
        done_doc="no Calico NetworkPolicy, GlobalNetworkPolicy, NetworkSet or GlobalNetworkSet observed",
        skip=_policy_off, skip_doc="`policy.mode` is off", send=_send_calico_policy_removal,
        sends=("delete-object",), then="remove-calico",
        doing=lambda c: f"removing {len(c.obs.policy.calico) if c.obs.policy else 0} Calico policy object(s)"),
    Row(step="remove-calico", done=_calico_gone, done_doc="none of the plan's Calico objects observed",
        send=_send_calico_removal, sends=("delete-object",), then="node-cleanup",
        doing=lambda c: f"removing {len(c.obs.calico_objects)} Calico objects"),
    Row(step="node-cleanup", done=_cleaned, done_doc="every node's clean-up pod Succeeded",
        skip=_cleanup_off, skip_doc="`finalize.node_cleanup` is false", work=_cleanup,
        sends=("create-pod", "delete-pod"), failed=_cleanup_failed, on_failed=HALT,
        failed_doc="a clean-up pod Failed", then="done"),
)
FINALIZE: dict[str, Row[FinalizeCursor]] = {row.step: row for row in ROWS}
validate("finalize steps", FINALIZE, "helm-values", frozenset({"done", HALT}))


def finalize_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                  now: datetime) -> tuple[Checkpoint, list[Action], list[str], datetime | None]:
    """Run finalize's rows from the recorded step as far as the observation allows."""
    if cp.run_phase is RunPhase.NODES_DONE:
        check_run_move(cp.run_phase, RunPhase.FINALIZING)
        cp = cp.model_copy(update={"run_phase": RunPhase.FINALIZING, "run_phase_started_at": now,
                                   "finalize": FinalizeProgress(step="helm-values", step_started_at=now)})
    notes: list[str] = []
    actions: list[Action] = []
    wake: datetime | None = None
    for _ in range(len(ROWS) + 1):
        progress = cp.finalize
        assert progress is not None
        if progress.step == "done":
            check_run_move(cp.run_phase, RunPhase.FINALIZED)
            cp = cp.model_copy(update={"run_phase": RunPhase.FINALIZED, "run_phase_started_at": now})
            notes.append("finalized: Cilium is the only CNI")
            break
        c = FinalizeCursor(plan=plan, obs=obs, now=now, cp=cp, progress=progress)
        way = advance(FINALIZE[progress.step], c)
        actions.extend(c.actions)
        wake = c.wake_at if wake is None or (c.wake_at is not None and c.wake_at < wake) else wake
        if way is None:
            notes.append(c.note)
            cp = cp.model_copy(update={"finalize": c.progress})
            break
        if way.to == HALT:
            cp = cp.model_copy(update={"halted": way.why, "finalize": c.progress.model_copy(
                update={"last_error": truncate_error(way.why)})})
            notes.insert(0, way.why)
            break
        notes.append(way.why)
        cp = cp.model_copy(update={"finalize": FinalizeProgress(
            step=STEP_NAMED[way.to], step_started_at=now, cleaned=c.progress.cleaned)})
    return cp, actions, [n for n in notes if n], wake
