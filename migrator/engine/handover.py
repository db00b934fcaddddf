"""The routing hand-over as an engine phase: ``migrator handover`` and ``migrator handover --rollback``.

After every node is DONE and before finalize (which removes Calico, and with it BIRD), the
hand-over moves what Calico and MetalLB announce to Cilium's BGP control plane and LB IPAM, one
write at a time, in the order ``engine/handover_steps.py`` gives. Each turn:

1. the steps are derived afresh from the observed cluster (``engine/handover_translate.py``:
   deterministic, and stable under the hand-over's own writes); the checkpoint's
   ``HandoverProgress`` names the step in flight by its key, so a resumed process finds its place
   even if a Service came or went meanwhile;
2. the step in flight is run as a row (``rows.advance``): done when its effect is observed
   (the object holds the write; a node's Cilium sessions Established with routes advertised, as
   its ``CiliumBGPNodeConfig`` status reports; a Service's IP unchanged), else its write is sent
   (again after ``RESEND_AFTER``), and past ``routing.handover_timeout`` the hand-over halts,
   naming what was not observed;
3. a patch carries its own undo: the JSON merge patch that takes the object back is computed
   from the object as it was before the first write and goes, in the same write, into the
   object's ``migrator.io/handover-undo`` annotation; a rollback restores an operator's own
   selectors and annotations, not defaults, and the checkpoint stays the same size whatever the
   number of Services;
4. at the end every step's effect is checked once more (a Service created meanwhile, a session
   that went down): the first that does not hold becomes the step in flight again.

The rollback runs the same rows' inverses newest first, from the step in flight (its write may
have landed: every undo is idempotent). Every write goes through the run lease, and the
checkpoint is saved before a write is sent, so a crash anywhere resumes by running
``migrator handover`` (or ``--rollback``) again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from migrator.engine import handover_objects as objs
from migrator.engine.actions import Action, ApplyObject, DeleteObject, LabelNode, PatchObject, UnlabelNode
from migrator.engine.handover_steps import Step, handover_steps
from migrator.engine.handover_translate import translate
from migrator.engine.pending import Pending
from migrator.engine.routing import detect
from migrator.engine.rows import ProgressCursor, Row, advance, validate
from migrator.model.checkpoint import Checkpoint, HandoverProgress, truncate_error
from migrator.model.handover import (
    HANDED,
    NODE_LABEL,
    UNDO_ANNOTATION,
    HandoverResources,
    HandoverState,
    ServiceSwitch,
)
from migrator.model.merge_patch import holds, inverse, merged
from migrator.model.observation import ClusterObservation
from migrator.model.plan import MigrationPlan, format_duration
from migrator.model.routing import RoutingDetection, RoutingInventory

HALT = "halt"
NEXT = "next"
#: The hand-over's objects are not watched: look again this soon after a write.
POLL = timedelta(seconds=2)
ESTABLISHED = "established"
Raw = Mapping[str, Any]


class UnreadableUndo(ValueError):
    """A ``migrator.io/handover-undo`` annotation that is not what the hand-over wrote."""


def undo_record(obj: Raw | None) -> dict[str, Any] | None:
    """The undo a patched object carries in its ``migrator.io/handover-undo`` annotation (None:
    none). Raises ``UnreadableUndo`` for one changed by hand: guessing would write the wrong undo."""
    text = (((obj or {}).get("metadata") or {}).get("annotations") or {}).get(UNDO_ANNOTATION)
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("undo"), dict):
        raise UnreadableUndo(text)
    return record


def ingress_ips(svc: Raw | None) -> list[str]:
    status = (svc or {}).get("status") or {}
    return [str(i["ip"]) for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]


@dataclass(frozen=True)
class Plan:
    """The hand-over's translation and steps for this turn."""

    res: HandoverResources
    steps: tuple[Step, ...]
    manifests: Mapping[tuple[str, str], Raw]


def _objects(res: HandoverResources) -> list[tuple[str, objs.Raw]]:
    """The Cilium objects the hand-over creates, as (plural, manifest)."""
    return objs.bgp_objects(res) + objs.lb_pool_objects(res)


def handover_forecast(inventory: RoutingInventory, detection: RoutingDetection, nodes: Sequence[str]) -> tuple[str, ...]:
    """What ``migrator plan`` says of the hand-over a plan with ``routing.handover`` asks for."""
    res = translate(inventory, detection)
    if res.blockers:
        return ("hand-over: BLOCKED: " + "; ".join(res.blockers),)
    steps = handover_steps(res, sorted(nodes), [(plural, str(o["metadata"]["name"])) for plural, o in _objects(res)])
    peers = sorted({f"{p.address} (AS {p.asn})" for c in res.cluster_configs for p in c.peers})
    return (f"hand-over (after every node is DONE): {len(steps)} steps at {res.bgp_api}: Cilium peers "
            f"{', '.join(peers[:3])}{' …' if len(peers) > 3 else ''} from {len(nodes)} node(s), {len(res.services)} "
            f"LoadBalancer Service(s) move to {len(res.lb_pools)} CiliumLoadBalancerIPPool(s) keeping their IPs",)


def derive(state: HandoverState, nodes: Sequence[str]) -> Plan:
    """The translation and its ordered steps over the run's nodes still in the cluster."""
    res = translate(state.inventory, detect(state.inventory))
    manifests = {(plural, str(o["metadata"]["name"])): o for plural, o in _objects(res)}
    if res.blockers:
        return Plan(res, (), manifests)
    present = [n for n in nodes if n in state.node_labels]
    return Plan(res, handover_steps(res, present, list(manifests)), manifests)


@dataclass(kw_only=True)
class HandoverCursor(ProgressCursor):
    """One hand-over step being run by ``rows.advance``."""

    plan: MigrationPlan
    state: HandoverState
    derived: Plan
    step: Step
    progress: HandoverProgress

    def sent(self, actions: Sequence[Action]) -> None:
        self.actions.extend(actions)
        self.progress = self.progress.model_copy(update={"sent_at": self.now})
        self.wake(self.now + POLL)

    # -- what the step touches
    def obj(self, plural: str) -> Raw | None:
        ns, name = self.step.target
        return self.state.objects.get((plural, ns, name))

    @property
    def target_plural(self) -> str:
        return {"restrict-pool": "ipaddresspools", "yield-peer": "bgppeers", "yield-bird-peer": "bgppeers",
                "hand-service": "services"}.get(self.step.kind, self.step.target[0])

    def forward_patch(self) -> dict[str, Any]:
        kind, (ns, name) = self.step.kind, self.step.target
        if kind == "restrict-pool":
            current = self.obj("ipaddresspools") or {}
            alloc = ((current.get("spec") or {}).get("serviceAllocation") or {})
            return objs.metallb_pool_patch(tuple(alloc.get("serviceSelectors") or ()))
        if kind == "yield-bird-peer":
            return objs.calico_peer_patch(((self.obj("bgppeers") or {}).get("spec") or {}).get("nodeSelector"))
        if kind == "yield-peer":
            peer = next(p for p in self.state.inventory.metallb_peers if (p.namespace, p.name) == (ns, name))
            return objs.metallb_peer_patch(peer.node_selectors)
        return objs.service_patch(self.switch())

    def switch(self) -> ServiceSwitch:
        ns, name = self.step.target
        return next(s for s in self.derived.res.services if (s.namespace, s.name) == (ns, name))

    def record(self) -> dict[str, Any] | None:
        """The undo the object carries (None: never written, or undone)."""
        return undo_record(self.obj(self.target_plural))

    def written(self) -> dict[str, Any]:
        """The step's patch with the undo it carries: the one already on the object, else one
        computed from the object as it is now (before the first write)."""
        current, patch = self.obj(self.target_plural), self.forward_patch()
        record = self.record()
        if record is None:
            record = {"undo": inverse(current, patch)}
            if self.step.kind == "hand-service":
                record["ips"] = ingress_ips(current) or list(self.switch().ips)
        text = json.dumps(record, sort_keys=True, separators=(",", ":"))
        return merged(patch, {"metadata": {"annotations": {UNDO_ANNOTATION: text}}})

    def kept_ips(self) -> list[str]:
        return list((self.record() or {}).get("ips") or self.switch().ips)

    def node_labelled(self) -> bool:
        return self.state.node_labels.get(self.step.target[1], {}).get(NODE_LABEL) == HANDED


# ---------------------------------------------------------------------------------- forward
def _unreadable(c: HandoverCursor) -> str | None:
    """The object's undo annotation was changed by hand: the step cannot go on either way."""
    try:
        c.record()
    except UnreadableUndo:
        ns, name = c.step.target
        return (f"hand-over: {c.target_plural} {ns + '/' if ns else ''}{name} carries a {UNDO_ANNOTATION} annotation "
                "the hand-over did not write; put back the value it had (or undo that object's hand-over changes "
                "by hand and remove it), then run the command again")
    return None


def _patched(c: HandoverCursor) -> str | None:
    current = c.obj(c.target_plural)
    try:
        if not holds(current, c.written()):
            return None
    except UnreadableUndo:   # ``_unreadable`` halts
        return None
    if c.step.kind == "hand-service":
        kept = c.kept_ips()
        if ingress_ips(current) != kept:
            return None
        return f"{c.step.key}: Service labelled for Cilium, IP {', '.join(kept)} kept"
    return f"{c.step.key}: written"


def _send_patch(c: HandoverCursor) -> list[Action]:
    current = c.obj(c.target_plural)
    if current is None:
        return []
    return [_patch(c, current, c.written())]


def _patch(c: HandoverCursor, current: Raw, patch: dict[str, Any]) -> PatchObject:
    ns, name = c.step.target
    return PatchObject(api_version=str(current.get("apiVersion") or "v1"), plural=c.target_plural,
                       namespace=ns or None, name=name, patch=patch)


def _created(c: HandoverCursor) -> str | None:
    plural, name = c.step.target
    wanted = c.derived.manifests.get((plural, name))
    current = c.state.objects.get((plural, "", name))
    if wanted is None or current is None or not holds(current, {"spec": wanted["spec"]}):
        return None
    return f"{c.step.key}: present"


def _send_create(c: HandoverCursor) -> list[Action]:
    wanted = c.derived.manifests.get(c.step.target)
    return [ApplyObject(manifest=dict(wanted))] if wanted is not None else []


def _sessions(c: HandoverCursor) -> str:
    node = c.step.target[1]
    peers = c.state.bgp_nodes.get(node)
    if peers is None:
        return f"no CiliumBGPNodeConfig for {node} yet (Cilium's operator makes it once a CiliumBGPClusterConfig " \
               "selects the node)"
    if not peers:
        return f"{node}'s CiliumBGPNodeConfig reports no peer yet (is the agent's BGP control plane on there?)"
    return ", ".join(f"{p.address} {p.state or 'unreported'}"
                     + (f" ({p.advertised} route(s) advertised)" if p.advertised is not None else "") for p in peers)


def _node_handed(c: HandoverCursor) -> str | None:
    if not c.node_labelled():
        return None
    peers = c.state.bgp_nodes.get(c.step.target[1])
    if not peers or any(p.state != ESTABLISHED or (p.advertised is not None and p.advertised < 1) for p in peers):
        return None
    return f"{c.step.key}: {_sessions(c)}"


def _timeout(c: HandoverCursor) -> timedelta:
    return c.plan.routing.handover_timeout


def _timeout_error(c: HandoverCursor) -> str:
    what = {"hand-node": lambda: f"sessions: {_sessions(c)}; not established: the router refuses it, or BIRD or "
                                 "MetalLB peers it from the node too",
            "hand-service": lambda: f"IP {', '.join(ingress_ips(c.obj('services'))) or 'none'}, expected "
                                    f"{', '.join(c.kept_ips())}",
            "create": lambda: "the object is not observed with its spec"}.get(c.step.kind, lambda: "the write is not observed")
    return truncate_error(
        f"hand-over: {c.step.key} not observed within {format_duration(c.plan.routing.handover_timeout)} ({what()}); "
        "fix it, then `migrator handover` again (or --rollback)")


# ---------------------------------------------------------------------------------- back
def _undo_patched(c: HandoverCursor) -> str | None:
    """Done once the object carries no undo: restored and the annotation dropped, or never written."""
    if c.obj(c.target_plural) is None:
        return f"{c.step.key}: the object is gone"
    try:
        return None if c.record() is not None else f"undid {c.step.key}"
    except UnreadableUndo:   # ``_unreadable`` halts
        return None


def _undoing(c: HandoverCursor) -> None:
    """Write the undo the object carries (keeping it there) until the object holds it — for a
    Service, until it holds its IP again — then drop the annotation."""
    current, record = c.obj(c.target_plural), c.record()
    if current is None or record is None:
        return
    restored = holds(current, record["undo"]) and (
        c.step.kind != "hand-service" or ingress_ips(current) == record.get("ips"))
    if restored:
        c.say(f"undid {c.step.key}: dropping its {UNDO_ANNOTATION} annotation")
        if Pending(c.progress.sent_at, after=POLL).due(c.now):
            c.sent([_patch(c, current, {"metadata": {"annotations": {UNDO_ANNOTATION: None}}})])
    else:
        c.say(f"undoing {c.step.key}")
        if c.pending.due(c.now):
            c.sent([_patch(c, current, record["undo"])])
        c.wake(c.pending.wake_at(c.now))
    c.wake(c.now + POLL)


def _deleted(c: HandoverCursor) -> str | None:
    plural, name = c.step.target
    return None if (plural, "", name) in c.state.objects else f"undid {c.step.key}"


def _send_delete(c: HandoverCursor) -> list[Action]:
    plural, name = c.step.target
    current = c.state.objects.get((plural, "", name)) or {}
    group, _, version = str(current.get("apiVersion") or c.derived.res.bgp_api or "cilium.io/v2").partition("/")
    return [DeleteObject(group=group, version=version, plural=plural, name=name)]


def _node_returned(c: HandoverCursor) -> str | None:
    if c.node_labelled() or c.step.target[1] in c.state.bgp_nodes:
        return None
    return f"undid {c.step.key}: Cilium's sessions on the node are gone"


def _undo_timeout_error(c: HandoverCursor) -> str:
    return truncate_error(
        f"hand-over rollback: undoing {c.step.key} not observed within "
        f"{format_duration(c.plan.routing.handover_timeout)}; fix the cause and run `migrator handover --rollback` again")


def _row(step: str, done: Any, act: Any, doc: str, sends: tuple[str, ...], back: bool = False) -> Row[HandoverCursor]:
    """A hand-over row: ``act`` is the row's ``send``, or its ``work`` when it is ``_undoing``
    (which paces its two writes itself)."""
    how: dict[str, Any] = {"work": act} if act is _undoing else {"send": act}
    if done in (_patched, _undo_patched):
        how.update(failed=_unreadable, on_failed=HALT, failed_doc="the object's `migrator.io/handover-undo` "
                                                                  "annotation is not what the hand-over wrote")
    return Row(step=step, done=done, done_doc=doc, **how, sends=sends, then=NEXT, timeout=_timeout,
               on_timeout=HALT, timeout_error=_undo_timeout_error if back else _timeout_error,
               timeout_doc="`routing.handover_timeout`",
               doing=lambda c: f"{'undoing' if back else 'hand-over:'} {c.step.key}")


FORWARD: dict[str, Row[HandoverCursor]] = {
    "restrict-pool": _row("restrict-pool", _patched, _send_patch, "the MetalLB IPAddressPool admits no Service "
                          "labelled for Cilium", ("patch-object",)),
    "yield-peer": _row("yield-peer", _patched, _send_patch, "the MetalLB BGPPeer selects no node labelled for "
                       "Cilium", ("patch-object",)),
    "yield-bird-peer": _row("yield-bird-peer", _patched, _send_patch, "the Calico BGPPeer selects no node "
                            "labelled for Cilium", ("patch-object",)),
    "create": _row("create", _created, _send_create, "the Cilium object is observed with its spec", ("apply-object",)),
    "hand-node": _row("hand-node", _node_handed, lambda c: [LabelNode(node=c.step.target[1], key=NODE_LABEL,
                                                                      value=HANDED)],
                      "the node carries the hand-over label and its CiliumBGPNodeConfig reports every peer "
                      "established with routes advertised", ("label-node",)),
    "hand-service": _row("hand-service", _patched, _send_patch, "the Service carries the hand-over label and LB "
                         "IPAM's request, without MetalLB's annotations, and holds the IP it had", ("patch-object",)),
}
BACK: dict[str, Row[HandoverCursor]] = {
    "undo-restrict-pool": _row("undo-restrict-pool", _undo_patched, _undoing, "the pool's serviceAllocation "
                               "is as it was and it carries no undo", ("patch-object",), back=True),
    "undo-yield-peer": _row("undo-yield-peer", _undo_patched, _undoing, "the peer's nodeSelectors are as "
                            "they were and it carries no undo", ("patch-object",), back=True),
    "undo-yield-bird-peer": _row("undo-yield-bird-peer", _undo_patched, _undoing, "the Calico BGPPeer's "
                                 "nodeSelector is as it was and it carries no undo", ("patch-object",), back=True),
    "undo-create": _row("undo-create", _deleted, _send_delete, "the Cilium object is gone", ("delete-object",),
                        back=True),
    "undo-hand-node": _row("undo-hand-node", _node_returned, lambda c: [UnlabelNode(node=c.step.target[1],
                                                                                    key=NODE_LABEL)],
                           "the node has no hand-over label and no CiliumBGPNodeConfig", ("unlabel-node",), back=True),
    "undo-hand-service": _row("undo-hand-service", _undo_patched, _undoing, "the Service's labels and "
                              "annotations are as they were, it holds the IP it had and carries no undo",
                              ("patch-object",), back=True),
}
validate("hand-over steps", FORWARD, list(FORWARD), frozenset({NEXT, HALT}))
validate("hand-over rollback", BACK, list(BACK), frozenset({NEXT, HALT}))


def _row_of(step: Step, direction: str) -> Row[HandoverCursor]:
    return FORWARD[step.kind] if direction == "forward" else BACK[f"undo-{step.kind}"]


def _position(progress: HandoverProgress, steps: tuple[Step, ...]) -> int:
    """Where the step in flight is now: by its key, else (the list changed around a step that is
    gone) by its recorded index."""
    keys = [s.key for s in steps]
    if progress.key in keys:
        return keys.index(progress.key)
    if progress.direction == "forward":
        return min(progress.index, len(steps))
    return min(progress.index, len(steps) - 1)


def start(cp: Checkpoint, direction: str, now: datetime) -> Checkpoint:
    """Record an operator's ``migrator handover`` (forward) or ``--rollback`` (back)."""
    progress = cp.handover
    if progress is None or (direction == "forward" and progress.state == "undone"):
        progress = HandoverProgress(direction="forward", step_started_at=now)
    else:
        update: dict[str, Any] = {"direction": direction, "last_error": None}
        if progress.direction != direction or progress.state != "running":
            update.update(step_started_at=now, sent_at=None, state="running")
        if direction == "back" and progress.state == "done":
            update["index"] = max(progress.index - 1, 0)
            update["key"] = None
        progress = progress.model_copy(update=update)
    return cp.model_copy(update={"handover": progress, "halted": None})


def handover_step(plan: MigrationPlan, cp: Checkpoint, obs: ClusterObservation,
                  now: datetime) -> tuple[Checkpoint, list[Action], list[str], datetime | None]:
    """Run the hand-over (or its rollback) from the step in flight as far as the observation allows."""
    progress = cp.handover
    state = obs.handover
    if progress is None or progress.state != "running":
        return cp, [], [], None
    if state is None:
        return cp, [], ["hand-over: waiting for the routing objects to be read"], now + POLL
    derived = derive(state, cp.order)
    if derived.res.blockers:
        why = truncate_error("hand-over: " + "; ".join(derived.res.blockers))
        return (cp.model_copy(update={"halted": why, "handover": progress.model_copy(update={"last_error": why})}),
                [], [why], None)
    steps = derived.steps
    actions: list[Action] = []
    notes: list[str] = []
    wake: datetime | None = None
    forward = progress.direction == "forward"
    for _ in range(len(steps) + 2):
        at = _position(progress, steps)
        if forward and at >= len(steps):
            undone = next((i for i, s in enumerate(steps) if _check(plan, now, state, derived, s, progress) is None), None)
            if undone is None:
                progress = progress.model_copy(update={"state": "done", "index": len(steps), "key": None})
                notes.append(f"hand-over done: {len(steps)} step(s) observed")
                break
            notes.append(f"{steps[undone].key} no longer holds: doing it again")
            progress = progress.model_copy(update={"index": undone, "key": steps[undone].key,
                                                   "step_started_at": now, "sent_at": None})
            continue
        if not forward and at < 0 or not steps:
            progress = progress.model_copy(update={"state": "undone" if not forward else "done", "index": 0,
                                                   "key": None})
            notes.append("hand-over rolled back: every step undone" if not forward else "hand-over: nothing to do")
            break
        window = _window(steps, at, forward, plan.concurrency.limit(len(cp.nodes)))
        start = progress.model_copy(update={"index": at, "key": steps[at].key})
        moved: list[str] = []
        waiting: list[str] = []
        sent = False
        halt = None
        for i in window:
            c = HandoverCursor(plan=plan, now=now, state=state, derived=derived, step=steps[i], progress=start)
            way = advance(_row_of(steps[i], progress.direction), c)
            actions.extend(c.actions)
            sent = sent or c.progress.sent_at != start.sent_at
            wake = c.wake_at if wake is None or (c.wake_at is not None and c.wake_at < wake) else wake
            if way is None:
                waiting.append(c.note)
            elif way.to == HALT:
                halt = way
                break
            else:
                moved.append(way.why)
        progress = start.model_copy(update={"sent_at": now} if sent else {})
        if halt is not None:
            progress = progress.model_copy(update={"last_error": truncate_error(halt.why)})
            cp = cp.model_copy(update={"halted": halt.why})
            notes.insert(0, halt.why)
            break
        if waiting:
            notes.append(waiting[0] + (f" (and {len(waiting) - 1} more of {len(window)} together)"
                                       if len(waiting) > 1 else ""))
            break
        notes.extend(moved)
        nxt = at + len(window) if forward else at - len(window)
        progress = progress.model_copy(update={
            "index": max(nxt, 0), "key": steps[nxt].key if 0 <= nxt < len(steps) else None,
            "step_started_at": now, "sent_at": None})
        if not forward and nxt < 0:
            progress = progress.model_copy(update={"state": "undone", "index": 0})
            notes.append("hand-over rolled back: every step undone")
            break
    return cp.model_copy(update={"handover": progress}), actions, [n for n in notes if n], wake


def _window(steps: tuple[Step, ...], at: int, forward: bool, size: int) -> list[int]:
    """The steps run together from ``at``: once the Services have moved, the other nodes' steps go
    ``size`` at a time (``concurrency.max_unavailable``: each one only moves that node's sessions);
    the first node, and every other kind of step, goes alone."""
    nodes = [i for i, s in enumerate(steps) if s.kind == "hand-node"]
    if steps[at].kind != "hand-node" or at == nodes[0] or size <= 1:
        return [at]
    out, way = [at], 1 if forward else -1
    i = at + way
    while len(out) < size and 0 <= i < len(steps) and steps[i].kind == "hand-node" and i != nodes[0]:
        out.append(i)
        i += way
    return out


def _check(plan: MigrationPlan, now: datetime, state: HandoverState, derived: Plan, step: Step,
           progress: HandoverProgress) -> str | None:
    """Whether ``step``'s forward effect holds now (its row's done observation)."""
    c = HandoverCursor(plan=plan, now=now, state=state, derived=derived, step=step, progress=progress)
    return FORWARD[step.kind].done(c)
