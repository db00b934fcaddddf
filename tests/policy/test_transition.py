"""The transition predictor: each end of a flow judged by the engine serving it, Cilium seeing
Calico-served peers only as ``unmanaged``; the gap of a step is what differs from Calico alone."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.policy import model
from migrator.policy.compile import translate
from migrator.policy.transition import Verdicts, gap
from tests.policy.fixtures import knp, np

NAMESPACES = {"shop": {"tenant": "a"}}
# (name, labels, node): web on n1, db on n2, a second web and an unlabelled pod on n3
PODS = (("web-0", {"app": "web"}, "n1"), ("db-0", {"app": "db"}, "n2"),
        ("web-1", {"app": "web"}, "n3"), ("misc-0", {}, "n3"))

WEB_OUT_TO_DB = np("web-out", selector="app == 'web'", types=["Egress"], egress=[
    {"action": "Allow", "protocol": "TCP", "destination": {"selector": "app == 'db'", "ports": [80]}}])
DB_IN_FROM_WEB = np("db-in", selector="app == 'db'", types=["Ingress"], ingress=[
    {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'web'"}, "destination": {"ports": [80]}}])
DB_DENIES_WEB = np("db-deny", selector="app == 'db'", order=10, types=["Ingress"], ingress=[
    {"action": "Deny", "source": {"selector": "app == 'web'"}}, {"action": "Allow"}])


def pods() -> tuple[model.Pod, ...]:
    return tuple(model.Pod("shop", name, labels, f"10.0.0.{i + 10}", node=node)
                 for i, (name, labels, node) in enumerate(PODS))


def pod(name: str) -> model.Pod:
    return next(p for p in pods() if p.name == name)


def inventory(*policies: model.Policy) -> model.Inventory:
    return model.Inventory(policies=policies, pods=pods(), namespaces=NAMESPACES)


def shim(direction: str, app: str, port: int) -> dict[str, Any]:
    """A shim CCNP: the subject may reach (or be reached by) any unmanaged pod on the port."""
    key, side = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": f"shim-{app}-{key}"},
            "spec": {"endpointSelector": {"matchLabels": {"k8s:app": app}},
                     "enableDefaultDeny": {"ingress": False, "egress": False},
                     key: [{f"{side}Entities": ["unmanaged"],
                            "toPorts": [{"ports": [{"port": str(port), "protocol": "TCP"}]}]}]}}


CASES = [
    # (id, policies, shims, cilium nodes before, after, flow (src, dst, port), in gap?)
    ("cilium-src-egress-by-peer-labels-to-calico-dst", [WEB_OUT_TO_DB], [], set(), {"n1"},
     ("web-0", "db-0", 80), True),
    ("same-flow-with-unmanaged-shim", [WEB_OUT_TO_DB], [shim("Egress", "web", 80)], set(), {"n1"},
     ("web-0", "db-0", 80), False),
    ("calico-src-to-cilium-dst-ingress-by-peer-labels", [DB_IN_FROM_WEB], [], set(), {"n2"},
     ("web-0", "db-0", 80), True),
    ("same-ingress-with-unmanaged-shim", [DB_IN_FROM_WEB], [shim("Ingress", "db", 80)], set(), {"n2"},
     ("web-0", "db-0", 80), False),
    ("calico-side-already-denies", [DB_DENIES_WEB, WEB_OUT_TO_DB], [], set(), {"n1"},
     ("web-0", "db-0", 80), False),
    ("both-ends-on-cilium-exact", [WEB_OUT_TO_DB, DB_IN_FROM_WEB], [], {"n1", "n2"}, {"n1", "n2", "n3"},
     ("web-0", "db-0", 80), False),
    ("src-on-cilium-before-the-step-too", [WEB_OUT_TO_DB, DB_IN_FROM_WEB], [], {"n1"}, {"n1", "n2"},
     ("web-0", "db-0", 80), True),
    ("both-ends-on-calico", [WEB_OUT_TO_DB], [], set(), {"n1"},
     ("web-1", "db-0", 80), False),
    ("denied-port-stays-denied", [WEB_OUT_TO_DB], [], set(), {"n1"},
     ("web-0", "db-0", 81), False),
    ("unenforcing-cilium-node-opens-a-calico-deny", [DB_IN_FROM_WEB], [], set(), {"n2": False},
     ("misc-0", "db-0", 80), True),
    ("unenforcing-node-where-calico-allowed", [DB_IN_FROM_WEB], [], set(), {"n2": False},
     ("web-0", "db-0", 80), False),
]


@pytest.mark.parametrize(("policies", "shims", "before", "after", "flow", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_gap_covers(policies: list[model.Policy], shims: list[dict[str, Any]], before: Any, after: Any,
                    flow: tuple[str, str, int], expected: bool) -> None:
    inv = inventory(*policies)
    report = gap(inv, [*translate(inv).objects, *shims], before, after)
    src, dst, port = flow
    assert report.covers(pod(src), pod(dst), port, "TCP") is expected
    listed = {(f.source, f.destination, f.probe) for f in report.flows}
    if port == 80:   # a referenced port: the group flow is listed too
        assert ((report.group(pod(src)), report.group(pod(dst)), "80/TCP") in listed) is expected, listed


def test_report_names_the_flow_its_verdicts_and_the_deciding_rule() -> None:
    inv = inventory(WEB_OUT_TO_DB)
    report = gap(inv, translate(inv).objects, set(), {"n1"})
    assert [(f.source, f.destination, f.probe, f.baseline, f.before, f.after) for f in report.flows] == [
        ("shop/app=web [calico→cilium]", "shop/app=db", "80/TCP", True, True, False)]
    assert any(r.startswith("cilium: ") for r in report.flows[0].responsible)
    text = report.summary()
    assert "1 flow(s)" in text and "allow before the step, deny after" in text


def test_the_calico_view_of_a_cilium_pod_is_by_its_labels() -> None:
    """A Calico destination still tells a migrated source apart by its labels: no gap at the Calico end."""
    inv = inventory(DB_IN_FROM_WEB)
    report = gap(inv, translate(inv).objects, set(), {"n1", "n3"})
    assert report.flows == ()
    assert not report.covers(pod("misc-0"), pod("db-0"), 80, "TCP")
    assert not report.covers(pod("web-0"), pod("db-0"), 80, "TCP")


def test_kubernetes_policies_are_enforced_natively_by_cilium() -> None:
    policy = knp("db-from-web", podSelector={"matchLabels": {"app": "db"}},
                 ingress=[{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]}])
    inv = inventory(policy)
    report = gap(inv, translate(inv).objects, set(), {"n2"})
    assert report.covers(pod("web-0"), pod("db-0"), 80, "TCP")         # Cilium sees web-0 as unmanaged
    assert not report.covers(pod("misc-0"), pod("db-0"), 80, "TCP")    # denied on both sides
    both = gap(inv, translate(inv).objects, {"n2"}, {"n1", "n2"})
    assert both.covers(pod("web-1"), pod("db-0"), 80, "TCP")           # still unmanaged (n3)
    assert both.covers(pod("web-0"), pod("db-0"), 80, "TCP")           # unmanaged before the step
    done = gap(inv, translate(inv).objects, {"n1", "n2", "n3"}, {"n1", "n2", "n3"})
    assert done.flows == () and not done.covers(pod("web-0"), pod("db-0"), 80, "TCP")


def test_summary_is_bounded_and_cost_follows_groups() -> None:
    many = tuple(model.Pod("shop", f"web-{i}", {"app": "web"}, f"10.0.1.{i}", node=f"w{i % 4}") for i in range(40))
    inv = model.Inventory(policies=(WEB_OUT_TO_DB,), pods=(*pods(), *many), namespaces=NAMESPACES)
    report = gap(inv, translate(inv).objects, set(), {"w0", "w1", "w2", "w3", "n1"})
    small = gap(inventory(WEB_OUT_TO_DB), translate(inventory(WEB_OUT_TO_DB)).objects, set(), {"n1"})
    assert report.groups == small.groups and report.evaluated == small.evaluated
    text = report.summary(limit=1)
    assert len(text.splitlines()) <= 3


def test_an_unlisted_report_judges_flows_as_the_listed_one() -> None:
    inv = inventory(WEB_OUT_TO_DB, DB_IN_FROM_WEB)
    listed = gap(inv, translate(inv).objects, {"n1"}, {"n1"})
    unlisted = gap(inv, translate(inv).objects, {"n1"}, {"n1"}, listed=False)
    assert unlisted.flows == () and unlisted.evaluated == 0 and listed.flows
    for src in pods():
        for dst in pods():
            for port in (80, 81):
                assert unlisted.covers(src, dst, port, "TCP") is listed.covers(src, dst, port, "TCP")
    assert listed.covers(pod("web-0"), pod("db-0"), 80, "TCP")


def _flows(report: Any) -> list[tuple[Any, ...]]:
    return [(f.source, f.destination, f.probe, f.baseline, f.before, f.after, f.responsible) for f in report.flows]


def test_verdicts_kept_across_steps_give_the_reports_computed_afresh() -> None:
    """A run's steps n1, then n2, then n3 with one ``Verdicts``: each report is the one computed
    without it, the later steps evaluate only what no earlier one met, and a changed policy
    empties what was kept (the report follows the change)."""
    policies = [WEB_OUT_TO_DB, DB_IN_FROM_WEB]
    inv = inventory(*policies)
    objects = [*translate(inv).objects, shim("Ingress", "db", 80)]
    kept = Verdicts()
    steps = [(set(), {"n1"}), ({"n1"}, {"n1", "n2"}), ({"n1", "n2"}, {"n1", "n2", "n3"})]
    rows = []
    for before, after in steps:
        report = gap(inv, objects, before, after, verdicts=kept)
        assert _flows(report) == _flows(gap(inv, objects, before, after)), (before, after)
        rows.append(len(kept.rows))
    assert any(_flows(gap(inv, objects, b, a)) for b, a in steps)   # not a comparison of empty reports
    assert rows[0] > 0 and rows[2] >= rows[1] >= rows[0]
    again = len(kept.rows)
    gap(inv, objects, {"n1"}, {"n1", "n2"}, verdicts=kept)
    assert len(kept.rows) == again   # met before: nothing new evaluated

    changed = inventory(DB_DENIES_WEB, *policies)
    fresh = gap(changed, objects, {"n1"}, {"n1", "n2"})
    assert _flows(gap(changed, objects, {"n1"}, {"n1", "n2"}, verdicts=kept)) == _flows(fresh)
    assert _flows(fresh) != _flows(gap(inv, objects, {"n1"}, {"n1", "n2"}))
