"""Calico's selector language: parsing (precedence, quoting, errors naming the column), evaluation with
Calico's semantics, and the mapping to Kubernetes label selectors."""

from __future__ import annotations

import pytest

from migrator.policy.labelsel import Inexpressible, Req, as_label_selector, to_dnf
from migrator.policy.selector import All, And, Match, Not, Or, SelectorError, matches, parse


@pytest.mark.parametrize(("text", "tree"), [
    ("", All()),
    ("all()", All()),
    ("a == 'x'", Match("a", "==", ("x",))),
    ('a == "x"', Match("a", "==", ("x",))),
    ("a == 'x y' && b != \"it's\"", And((Match("a", "==", ("x y",)), Match("b", "!=", ("it's",))))),
    ("k.io/x-y_z in {'a', 'b'}", Match("k.io/x-y_z", "in", ("a", "b"))),
    ("k not in {}", Match("k", "not in", ())),
    ("!has(a)", Not(Match("a", "has"))),
    # && binds tighter than ||
    ("a == '1' || b == '2' && c == '3'",
     Or((Match("a", "==", ("1",)), And((Match("b", "==", ("2",)), Match("c", "==", ("3",))))))),
    # ! binds tighter than &&
    ("!a == '1' && b == '2'", And((Not(Match("a", "==", ("1",))), Match("b", "==", ("2",))))),
    ("!(a == '1' && b == '2')", Not(And((Match("a", "==", ("1",)), Match("b", "==", ("2",)))))),
    ("(a == '1' || b == '2') && c == '3'",
     And((Or((Match("a", "==", ("1",)), Match("b", "==", ("2",)))), Match("c", "==", ("3",))))),
    ("a starts with 'x' || a ends with 'y' || a contains 'z'",
     Or((Match("a", "starts with", ("x",)), Match("a", "ends with", ("y",)), Match("a", "contains", ("z",))))),
])
def test_parses_to_the_tree(text: str, tree: object) -> None:
    assert parse(text) == tree


@pytest.mark.parametrize(("text", "message"), [
    ("a = 'x'", "unexpected character '=' at column 3"),
    ("a == x", "unexpected 'x' at column 6"),
    ("a == 'x' &&", "unexpected end at column 12"),
    ("a == 'x' && (b == 'y'", "unexpected end at column 22"),
    ("a == 'x')", "unexpected ')' at column 9"),
    ("a == 'unterminated", "at column 6"),
    ("has(a", "unexpected end at column 6"),
])
def test_errors_name_the_column(text: str, message: str) -> None:
    with pytest.raises(SelectorError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        parse(text)
    assert repr(text) in str(err.value)


@pytest.mark.parametrize(("text", "labels", "expected"), [
    ("a != 'x'", {}, True),               # != also matches objects without the key
    ("a not in {'x'}", {}, True),
    ("a in {'x'}", {}, False),
    ("a == 'x' || !has(b)", {"a": "y"}, True),
    ("a == 'x' && has(b)", {"a": "x"}, False),
    ("global()", {}, False),
    ("a starts with 'we'", {"a": "web"}, True),
    ("!all()", {"a": "x"}, False),
])
def test_evaluates_with_calico_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert matches(parse(text), labels) is expected


def test_global_selects_only_non_namespaced_objects() -> None:
    assert matches(parse("global()"), {}, is_global=True)
    assert not matches(parse("global()"), {})


@pytest.mark.parametrize(("text", "selectors"), [
    ("a == 'x'", [{"matchLabels": {"a": "x"}}]),
    ("a == 'x' && b in {'2', '1'} && !has(c)",
     [{"matchLabels": {"a": "x"}, "matchExpressions": [{"key": "b", "operator": "In", "values": ["1", "2"]},
                                                       {"key": "c", "operator": "DoesNotExist"}]}]),
    ("a == 'x' || b != 'y'", [{"matchLabels": {"a": "x"}},
                              {"matchExpressions": [{"key": "b", "operator": "NotIn", "values": ["y"]}]}]),
    ("!(a == 'x' || has(b))", [{"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["x"]},
                                                     {"key": "b", "operator": "DoesNotExist"}]}]),
    ("(a == '1' || a == '2') && b == 'z'", [{"matchLabels": {"a": "1", "b": "z"}}, {"matchLabels": {"a": "2", "b": "z"}}]),
    ("a == '1' && a == '2'", []),          # contradiction: selects nothing
    ("!all()", []),
    ("all()", [{}]),
    ("a not in {}", [{}]),
])
def test_maps_to_label_selectors(text: str, selectors: list[dict[str, object]]) -> None:
    assert [as_label_selector(c) for c in to_dnf(parse(text))] == selectors


def test_key_map_renames_calico_special_keys() -> None:
    dnf = to_dnf(parse("projectcalico.org/namespace == 'shop'"),
                 {"projectcalico.org/namespace": "io.kubernetes.pod.namespace"})
    assert dnf == (frozenset({Req("io.kubernetes.pod.namespace", "In", ("shop",))}),)


@pytest.mark.parametrize("text", ["a contains 'x'", "global()", "!(a starts with 'x')"])
def test_inexpressible_selectors_say_why(text: str) -> None:
    with pytest.raises(Inexpressible):
        to_dnf(parse(text))


def test_expansion_is_capped() -> None:
    text = " && ".join(f"(k{i} == 'a' || k{i} == 'b')" for i in range(8))   # 2**8 = 256 selectors
    with pytest.raises(Inexpressible, match="more than 64"):
        to_dnf(parse(text))
