"""Check the Grafana dashboard's and the PrometheusRule's queries against the series a scrape of
``--metrics-port`` holds.

Each query is parsed by ``promql-parser`` (Python bindings of GreptimeTeam's PromQL parser,
declared compatible with Prometheus 2.45; a pinned dev dependency) after Grafana's variables are
replaced (``$__rate_interval``/``$__interval``/``$__range`` by ``5m``, any other ``$var`` by
``.*``). What is checked, on the syntax tree:

* every vector selector selects at least one scraped series: the metric name exists, every
  label it matches on exists on that metric, and its ``=`` and ``=~`` matchers together match
  one series (a value the tool never exports selects nothing); ``!=`` and ``!~`` matchers only
  need their label, since a healthy run may export no series they keep (no failed action);
* every label named in ``by (...)``, ``on (...)``, ``group_left (...)`` exists on the operands;
* every label a legend (``{{phase}}``) or an alert annotation (``$labels.phase``) prints is a
  label of the query's result, computed the way Prometheus does: an aggregation keeps its
  ``by`` labels, ``histogram_quantile`` drops ``le``, a one-to-one match ``on (...)`` keeps the
  matched labels, ``and``/``unless`` keep the left side's, a comparison with a number keeps the
  vector's.

Not checked: whether a query's numbers mean what its title says, functions' semantics beyond
the labels they keep, and the labels a scrape adds (``job``, ``instance``, ``namespace``,
``pod``), which depend on the scrape configuration and which no query here uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser as pq
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "migrator-dashboard.json"
RULES = ROOT / "deploy" / "prometheus" / "migrator-rules.yaml"

Series = dict[str, list[dict[str, str]]]   # sample name -> label sets seen
_GRAFANA_RANGES = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}")
_GRAFANA_VARS = re.compile(r"\$\{\w+\}|\$\w+")
_LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_ANNOTATION = re.compile(r"\$labels\.(\w+)")
_LABEL_VALUES = re.compile(r"^label_values\(\s*(\w+)\s*,\s*(\w+)\s*\)$")


@dataclass(frozen=True)
class Query:
    """One query of an artefact: where it is, its PromQL, and the labels it prints."""

    where: str
    expr: str
    prints: tuple[str, ...] = ()


def add_scrape(series: Series, text: str) -> None:
    """Fold one scrape (the text exposition format) into ``series``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            seen = series.setdefault(sample.name, [])
            if sample.labels not in seen:
                seen.append(dict(sample.labels))


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every panel target (with the labels its legend prints) and every query variable."""
    queries = []

    def panels(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for item in items:
            yield item
            yield from panels(item.get("panels", ()))

    for panel in panels(dashboard.get("panels", ())):
        for target in panel.get("targets", ()):
            legend = target.get("legendFormat", "")
            queries.append(Query(f"panel {panel['title']!r} target {target['refId']}", target["expr"],
                                 tuple(_LEGEND.findall(legend))))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append(Query(f"variable {variable['name']!r}", text))
    return queries


def rule_queries(rules: dict[str, Any]) -> list[Query]:
    """Every rule's expression, with the labels its annotations and labels print."""
    queries = []
    for group in rules["spec"]["groups"]:
        for rule in group["rules"]:
            texts = [*(rule.get("annotations") or {}).values(), *(rule.get("labels") or {}).values()]
            prints = tuple(dict.fromkeys(name for text in texts for name in _ANNOTATION.findall(str(text))))
            queries.append(Query(f"rule {rule.get('alert') or rule.get('record')!r}", rule["expr"], prints))
    return queries


def load_artefacts() -> list[Query]:
    return dashboard_queries(json.loads(DASHBOARD.read_text())) + rule_queries(yaml.safe_load(RULES.read_text()))


def grafana_to_promql(expr: str) -> str:
    """Replace Grafana's variables with values PromQL parses."""
    return _GRAFANA_VARS.sub(".*", _GRAFANA_RANGES.sub("5m", expr))


# ------------------------------------------------------------------ checking
def _matches(matcher: Any, labels: dict[str, str]) -> bool:
    value = labels.get(matcher.name, "")
    op = matcher.op
    if op == pq.MatchOp.Equal:
        return value == matcher.value
    if op == pq.MatchOp.NotEqual:
        return value != matcher.value
    matched = re.fullmatch(matcher.value, value) is not None
    return matched if op == pq.MatchOp.Re else not matched


class _Anything(frozenset[str]):
    """The labels of an operand already found wrong: every label, so one mistake is reported once."""

    def __contains__(self, item: object) -> bool:
        return True

    def __or__(self, other: object) -> _Anything:
        return self

    __and__ = __sub__ = __rand__ = __ror__ = __or__


ANYTHING = _Anything()


class _Checker:
    def __init__(self, series: Series) -> None:
        self.series = series
        self.problems: list[str] = []

    def selector(self, node: Any) -> set[str]:
        name = node.name
        text = str(node)
        if name is None or name not in self.series:
            self.problems.append(f"{text}: the tool exports no series named {name}")
            return ANYTHING
        matchers = [m for m in node.matchers.matchers if m.name != "__name__"]
        positive = [m for m in matchers if m.op in (pq.MatchOp.Equal, pq.MatchOp.Re)]
        known = sorted({k for labels in self.series[name] for k in labels})
        unknown = [m.name for m in matchers if m.name not in known]
        chosen = [labels for labels in self.series[name] if all(_matches(m, labels) for m in positive)]
        if unknown or not chosen:
            why = f"no label {', '.join(unknown)} (it has {', '.join(known)})" if unknown else \
                "no exported series matches all its matchers"
            self.problems.append(f"{text}: selects no series: {why}")
            return ANYTHING
        return {k for labels in chosen for k in labels}

    def need(self, names: Iterable[str], have: set[str] | None, what: str) -> bool:
        """Report the ``names`` that ``have`` lacks; False if any."""
        missing = [n for n in names if have is None or n not in have]
        if missing:
            self.problems.append(f"{what} uses label(s) {', '.join(missing)} that its operand does not have "
                                 f"(it has {', '.join(sorted(have or ())) or 'none'})")
        return not missing

    def labels(self, node: Any) -> set[str] | None:
        """The result's label names; None for a scalar or a string."""
        if isinstance(node, pq.VectorSelector):
            return self.selector(node)
        if isinstance(node, pq.MatrixSelector):
            return self.selector(node.vector_selector)
        if isinstance(node, (pq.ParenExpr, pq.UnaryExpr, pq.SubqueryExpr)):
            return self.labels(node.expr)
        if isinstance(node, (pq.NumberLiteral, pq.StringLiteral)):
            return None
        if isinstance(node, pq.Call):
            args = [self.labels(a) for a in node.args]
            name = node.func.name
            if name in ("time", "scalar", "pi") or node.func.return_type == pq.ValueType.Scalar:
                return None
            if name == "vector":
                return set()
            vectors = [a for a in args if a is not None]
            if vectors and isinstance(vectors[0], _Anything):
                return ANYTHING
            result = set(vectors[0]) if vectors else set()
            if name == "histogram_quantile":
                if not self.need(["le"], result, f"{node}"):
                    return ANYTHING
                result.discard("le")
            if name in ("label_replace", "label_join"):
                result.add(str(node.args[1].val))
            return result
        if isinstance(node, pq.AggregateExpr):
            inner = self.labels(node.expr)
            modifier = node.modifier
            if str(node.op) in ("topk", "bottomk", "limitk", "limit_ratio"):
                return inner
            if modifier is None:
                return set()
            by = modifier.type == pq.AggModifierType.By
            if not self.need(modifier.labels, inner, f"{str(node.op)} {'by' if by else 'without'} (...)"):
                return ANYTHING
            if by:
                return set(modifier.labels)
            return inner - set(modifier.labels) if inner is not None else set()
        if isinstance(node, pq.BinaryExpr):
            lhs, rhs = self.labels(node.lhs), self.labels(node.rhs)
            if lhs is None or rhs is None:
                return rhs if lhs is None else lhs
            op, modifier = str(node.op), node.modifier
            matching = modifier.matching if modifier is not None else None
            if matching is not None and matching.labels and not (
                    self.need(matching.labels, lhs, f"the left side of {op} on/ignoring (...)")
                    & self.need(matching.labels, rhs, f"the right side of {op} on/ignoring (...)")):
                return ANYTHING
            if op in ("and", "unless"):
                return lhs
            if op == "or":
                return lhs | rhs
            card = modifier.card if modifier is not None else None
            if card == pq.VectorMatchCardinality.ManyToOne:
                if not self.need(modifier.group_labels or (), rhs, f"group_left of {op}"):
                    return ANYTHING
                return lhs | set(modifier.group_labels or ())
            if card == pq.VectorMatchCardinality.OneToMany:
                if not self.need(modifier.group_labels or (), lhs, f"group_right of {op}"):
                    return ANYTHING
                return rhs | set(modifier.group_labels or ())
            if matching is not None and matching.labels:
                kept = set(matching.labels)
                return lhs & kept if matching.type == pq.LabelModifierType.Include else lhs - kept
            return lhs
        self.problems.append(f"{node}: an expression this check does not know ({type(node).__name__})")
        return set()


def check(query: Query, series: Series) -> list[str]:
    """What is wrong with ``query`` against the scraped ``series`` (empty: nothing found)."""
    found = _LABEL_VALUES.match(query.expr.strip())
    if found:   # a Grafana variable: label_values(metric, label)
        metric, label = found.groups()
        checker = _Checker(series)
        have = checker.selector(pq.parse(metric))
        checker.need([label], have, "label_values")
        return [f"{query.where}: {p}" for p in checker.problems]
    try:
        tree = pq.parse(grafana_to_promql(query.expr))
    except (ValueError, RuntimeError) as exc:
        return [f"{query.where}: does not parse: {exc}"]
    checker = _Checker(series)
    result = checker.labels(tree)
    checker.need(query.prints, result, "the legend or annotations")
    return [f"{query.where}: {p}" for p in checker.problems]


def check_all(queries: Iterable[Query], series: Series) -> list[str]:
    return [problem for query in queries for problem in check(query, series)]
