"""The sim's one label-selector evaluator: query strings and structured LabelSelectors agree, and
what kube-apiserver refuses (an unknown operator, a malformed requirement) is a 400, never a
silent match or miss."""

from __future__ import annotations

import pytest

from migrator.sim.errors import BadRequest
from migrator.sim.selectors import (
    label_selector_matches,
    labels_match,
    parse_label_selector,
    selects_or_not,
)

LABELS = [{}, {"tier": "web"}, {"tier": "db"}, {"tier": "web", "zone": "a"}, {"zone": "b"}]
# the same selector as a query string and as a structured LabelSelector
SAME = [
    ("tier=web", {"matchLabels": {"tier": "web"}}),
    ("tier in (web,db)", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "db"]}]}),
    ("tier notin (web)", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}),
    ("zone", {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
    ("!zone", {"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
    ("tier=web,zone", {"matchLabels": {"tier": "web"}, "matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
    ("", {}),
]


@pytest.mark.parametrize(("text", "structured"), SAME)
def test_query_string_and_structured_selectors_agree(text, structured):
    reqs = parse_label_selector(text)
    assert [labels_match(reqs, lbl) for lbl in LABELS] == [label_selector_matches(structured, lbl) for lbl in LABELS]


def test_a_null_selector_selects_nothing_and_an_empty_one_everything():
    assert not any(label_selector_matches(None, lbl) for lbl in LABELS)
    assert all(label_selector_matches({}, lbl) for lbl in LABELS)


@pytest.mark.parametrize("operator", ["Gt", "Equals", "in", ""])
def test_an_unknown_operator_is_a_bad_request(operator):
    selector = {"matchExpressions": [{"key": "tier", "operator": operator, "values": ["web"]}]}
    for labels in LABELS:
        with pytest.raises(BadRequest) as refused:
            label_selector_matches(selector, labels)
        assert refused.value.code == 400 and "is not a valid label selector operator" in str(refused.value)
        assert selects_or_not(selector, labels) is False   # which PDBs cover a pod: an invalid one does not


@pytest.mark.parametrize("text", ["tier~=web", "tier=>web", "tier=~web", "tier >= web", "tier in web",
                                  "tier notin2 (web)", "!tier in (web)", "=web", "tier=web app"])
def test_a_malformed_query_string_is_a_bad_request(text):
    with pytest.raises(BadRequest):
        parse_label_selector(text)


def test_valid_keys_and_values_parse():
    reqs = parse_label_selector("io.cilium.migration/cilium-default=true,node-role.kubernetes.io/control-plane,"
                                "k8s-app in (cilium, calico-node),tier!=,a.b_c-d==e")
    assert [r[0] for r in reqs] == ["io.cilium.migration/cilium-default", "node-role.kubernetes.io/control-plane",
                                    "k8s-app", "tier", "a.b_c-d"]
