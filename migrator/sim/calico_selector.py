"""Calico's selector language, as Felix evaluates it, for the simulated Calico policy engine.

Written from Calico's selector reference (the ``selector`` fields of NetworkPolicy,
GlobalNetworkPolicy and their rules): ``all()``, ``k == 'v'``, ``k != 'v'``, ``k in {'a', 'b'}``,
``k not in {...}``, ``has(k)``, ``!has(k)``, ``k contains 's'``, ``k starts with 's'``,
``k ends with 's'``, ``global()``, ``!``, ``&&``, ``||`` and parentheses, with strings in single or
double quotes. Operators bind tighter than parentheses, then ``!``, then ``&&``, then ``||``.
``k != 'v'`` and ``k not in {...}`` hold for objects without ``k``; the string operators need ``k``.
An empty selector selects everything.

``global()`` and ``all()`` mean something different in a namespaceSelector (Calico's selector
scopes): there ``all()`` selects every namespace and ``global()`` the objects outside any namespace
(GlobalNetworkSets, host endpoints). ``compile_selector(text, scope=...)`` takes the scope; a
compiled selector is called with the object's labels and whether it lives in a namespace.

A syntax error is ``SelectorSyntaxError`` (a ``ValueError``) naming the selector and the column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from lark import Lark, Token, Transformer, UnexpectedInput

#: labels, namespaced? -> selected?
Match = Callable[[Mapping[str, str], bool], bool]

_GRAMMAR = r"""
?disj: conj ("||" conj)*            -> any_of
?conj: neg ("&&" neg)*              -> every
?neg: "!" neg                       -> negate
    | term
?term: "(" disj ")"
     | "all" "(" ")"                -> everything
     | "global" "(" ")"             -> outside_namespaces
     | "has" "(" LABEL ")"          -> present
     | LABEL "==" STRING            -> equals
     | LABEL "!=" STRING            -> differs
     | LABEL "in" valueset          -> member
     | LABEL "not" "in" valueset    -> not_member
     | LABEL "contains" STRING      -> contains
     | LABEL "starts" "with" STRING -> prefix
     | LABEL "ends" "with" STRING   -> suffix
valueset: "{" [STRING ("," STRING)*] "}"
LABEL: /[A-Za-z0-9_.\/-]+/
STRING: /'[^']*'/ | /"[^"]*"/
%ignore /\s+/
"""

_PARSER = Lark(_GRAMMAR, start="disj", parser="lalr")


class SelectorSyntaxError(ValueError):
    pass


def _text(tok: Token) -> str:
    return str(tok)[1:-1]


class _Build(Transformer):
    """Turns the parse tree into nested closures; ``scope`` decides all() and global()."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def any_of(self, parts: list[Match]) -> Match:
        return lambda labels, ns: any(p(labels, ns) for p in parts)

    def every(self, parts: list[Match]) -> Match:
        return lambda labels, ns: all(p(labels, ns) for p in parts)

    def negate(self, parts: list[Match]) -> Match:
        inner = parts[0]
        return lambda labels, ns: not inner(labels, ns)

    def everything(self, _: list[object]) -> Match:
        if self.scope == "namespace":
            return lambda labels, ns: ns
        return lambda labels, ns: True

    def outside_namespaces(self, _: list[object]) -> Match:
        return lambda labels, ns: not ns

    def present(self, parts: list[Token]) -> Match:
        key = str(parts[0])
        return lambda labels, ns: key in labels

    def equals(self, parts: list[Token]) -> Match:
        key, value = str(parts[0]), _text(parts[1])
        return lambda labels, ns: labels.get(key) == value

    def differs(self, parts: list[Token]) -> Match:
        key, value = str(parts[0]), _text(parts[1])
        return lambda labels, ns: labels.get(key) != value

    def valueset(self, parts: list[Token | None]) -> frozenset[str]:
        return frozenset(_text(p) for p in parts if p is not None)

    def member(self, parts: list[Any]) -> Match:
        key, values = str(parts[0]), parts[1]
        return lambda labels, ns: key in labels and labels[key] in values

    def not_member(self, parts: list[Any]) -> Match:
        key, values = str(parts[0]), parts[1]
        return lambda labels, ns: labels.get(key) not in values

    def contains(self, parts: list[Token]) -> Match:
        key, value = str(parts[0]), _text(parts[1])
        return lambda labels, ns: key in labels and value in labels[key]

    def prefix(self, parts: list[Token]) -> Match:
        key, value = str(parts[0]), _text(parts[1])
        return lambda labels, ns: key in labels and labels[key].startswith(value)

    def suffix(self, parts: list[Token]) -> Match:
        key, value = str(parts[0]), _text(parts[1])
        return lambda labels, ns: key in labels and labels[key].endswith(value)


@lru_cache(maxsize=4096)
def compile_selector(text: str | None, scope: str = "endpoint") -> Match:
    """The matcher for ``text``; ``scope`` is ``endpoint`` (a selector) or ``namespace`` (a
    namespaceSelector). None or blank selects everything."""
    if text is None or not text.strip():
        return lambda labels, ns: True
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise SelectorSyntaxError(f"Calico selector {text!r} is invalid at column {exc.column}") from None
    built: Match = _Build(scope).transform(tree)
    return built


@lru_cache(maxsize=256)
def _cached(text: str) -> Match:
    return compile_selector(text)


def calico_selects(selector: str | None, labels: Mapping[str, str]) -> bool:
    """A Calico selector on a node's labels (a BGPPeer's ``nodeSelector`` / ``peerSelector``); an
    invalid one selects nothing, as Calico refuses such a peer."""
    try:
        return _cached(selector or "all()")(labels, False)
    except SelectorSyntaxError:
        return False
