"""Calico's selector language: parser, AST and evaluation.

The grammar follows Calico's selector reference: ``k == 'v'``, ``k != 'v'``, ``k in {'a', 'b'}``,
``k not in {...}``, ``has(k)``, ``!has(k)``, ``k contains 's'``, ``k starts with 's'``,
``k ends with 's'``, ``all()``, ``global()``, ``!``, ``&&``, ``||`` and parentheses; strings in single
or double quotes (no escapes); precedence: ``!`` binds tighter than ``&&``, which binds tighter than
``||``. An empty selector selects everything, as in Calico. The parser is a lark LALR grammar, not a
hand-written tokenizer; a syntax error becomes ``SelectorError`` naming the column.

Semantics kept from Calico: ``k != 'v'`` and ``k not in {...}`` also match objects without ``k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from lark import Lark, Transformer, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

GRAMMAR = r"""
?start: orexpr | -> all_
?orexpr: andexpr ("||" andexpr)*  -> or_
?andexpr: unary ("&&" unary)*     -> and_
?unary: "!" unary                 -> not_
      | atom
?atom: "(" orexpr ")"
     | "all" "(" ")"              -> all_
     | "global" "(" ")"           -> global_
     | "has" "(" KEY ")"          -> has
     | KEY "==" STRING            -> eq
     | KEY "!=" STRING            -> ne
     | KEY "in" set               -> in_
     | KEY "not" "in" set         -> not_in
     | KEY "contains" STRING      -> contains
     | KEY "starts" "with" STRING -> starts_with
     | KEY "ends" "with" STRING   -> ends_with
set: "{" [STRING ("," STRING)*] "}"
KEY: /[a-zA-Z0-9_][a-zA-Z0-9_.\/-]*/
STRING: /'[^']*'/ | /"[^"]*"/
%ignore /[ \t\r\n]+/
"""


class SelectorError(ValueError):
    """A selector that does not parse; the message names the column and what was found."""


# ----------------------------------------------------------------------------------- AST
@dataclass(frozen=True)
class All:
    """``all()`` (or the empty selector): every object."""


@dataclass(frozen=True)
class Global:
    """``global()``: non-namespaced objects (GlobalNetworkSets, HostEndpoints)."""


@dataclass(frozen=True)
class Match:
    """One label test. ``op`` is ``==``, ``!=``, ``in``, ``not in``, ``has``, ``contains``,
    ``starts with`` or ``ends with``; ``values`` holds the operand(s)."""

    key: str
    op: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Not:
    term: Node


@dataclass(frozen=True)
class And:
    terms: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    terms: tuple[Node, ...]


Node = All | Global | Match | Not | And | Or
UNTRANSLATABLE_OPS = ("contains", "starts with", "ends with")


def _unquote(token: str) -> str:
    return str(token)[1:-1]


class _Build(Transformer):
    def all_(self, _items: list[object]) -> Node:
        return All()

    def global_(self, _items: list[object]) -> Node:
        return Global()

    def has(self, items: list[object]) -> Node:
        return Match(str(items[0]), "has")

    def eq(self, items: list[object]) -> Node:
        return Match(str(items[0]), "==", (_unquote(str(items[1])),))

    def ne(self, items: list[object]) -> Node:
        return Match(str(items[0]), "!=", (_unquote(str(items[1])),))

    def set(self, items: list[object]) -> tuple[str, ...]:
        return tuple(_unquote(str(i)) for i in items if i is not None)

    def in_(self, items: list[object]) -> Node:
        return Match(str(items[0]), "in", tuple(items[1]))  # type: ignore[arg-type]

    def not_in(self, items: list[object]) -> Node:
        return Match(str(items[0]), "not in", tuple(items[1]))  # type: ignore[arg-type]

    def contains(self, items: list[object]) -> Node:
        return Match(str(items[0]), "contains", (_unquote(str(items[1])),))

    def starts_with(self, items: list[object]) -> Node:
        return Match(str(items[0]), "starts with", (_unquote(str(items[1])),))

    def ends_with(self, items: list[object]) -> Node:
        return Match(str(items[0]), "ends with", (_unquote(str(items[1])),))

    def not_(self, items: list[object]) -> Node:
        return Not(items[0])  # type: ignore[arg-type]

    def and_(self, items: list[object]) -> Node:
        return items[0] if len(items) == 1 else And(tuple(items))  # type: ignore[return-value,arg-type]

    def or_(self, items: list[object]) -> Node:
        return items[0] if len(items) == 1 else Or(tuple(items))  # type: ignore[return-value,arg-type]


_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


@lru_cache(maxsize=4096)
def parse(text: str) -> Node:
    """The AST of a Calico selector; raises ``SelectorError`` naming the column of the problem."""
    if not text.strip():
        return All()
    try:
        tree = _PARSER.parse(text)
    except UnexpectedEOF:
        raise SelectorError(f"selector {text!r}: unexpected end at column {len(text) + 1}; "
                            "complete the expression") from None
    except UnexpectedCharacters as exc:
        raise SelectorError(f"selector {text!r}: unexpected character {text[exc.pos_in_stream or 0]!r} at "
                            f"column {exc.column}") from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            raise SelectorError(f"selector {text!r}: unexpected end at column {len(text) + 1}; "
                                "complete the expression") from None
        raise SelectorError(f"selector {text!r}: unexpected {str(exc.token)!r} at column {exc.column}") from None
    except UnexpectedInput as exc:  # pragma: no cover - the three above are lark's concrete kinds
        raise SelectorError(f"selector {text!r}: syntax error at column {exc.column}") from None
    node: Node = _Build().transform(tree)
    return node


# ----------------------------------------------------------------------------------- meaning
def matches(node: Node, labels: Mapping[str, str], *, is_global: bool = False, namespaces: bool = False) -> bool:
    """Whether an object with ``labels`` is selected (``is_global``: a non-namespaced object).
    ``namespaces``: ``node`` is a rule's namespaceSelector, where ``all()`` means every namespace and so
    selects no global object (libcalico-go rewrites it to ``has(projectcalico.org/namespace)``)."""
    if isinstance(node, All):
        return not (namespaces and is_global)
    if isinstance(node, Global):
        return is_global
    if isinstance(node, Not):
        return not matches(node.term, labels, is_global=is_global, namespaces=namespaces)
    if isinstance(node, And):
        return all(matches(t, labels, is_global=is_global, namespaces=namespaces) for t in node.terms)
    if isinstance(node, Or):
        return any(matches(t, labels, is_global=is_global, namespaces=namespaces) for t in node.terms)
    value = labels.get(node.key)
    op = node.op
    if op == "has":
        return value is not None
    if op == "==":
        return value == node.values[0]
    if op == "!=":
        return value != node.values[0]
    if op == "in":
        return value in node.values
    if op == "not in":
        return value not in node.values
    if value is None:
        return False
    if op == "contains":
        return node.values[0] in value
    if op == "starts with":
        return value.startswith(node.values[0])
    return value.endswith(node.values[0])


def keys(node: Node) -> set[str]:
    """Every label key a selector reads."""
    if isinstance(node, Match):
        return {node.key}
    if isinstance(node, Not):
        return keys(node.term)
    if isinstance(node, And | Or):
        return set().union(*(keys(t) for t in node.terms))
    return set()


def ops(node: Node) -> set[str]:
    """Every operator a selector uses (``all()``/``global()`` included by name)."""
    if isinstance(node, Match):
        return {node.op}
    if isinstance(node, All):
        return {"all()"}
    if isinstance(node, Global):
        return {"global()"}
    if isinstance(node, Not):
        return ops(node.term)
    return set().union(*(ops(t) for t in node.terms))
