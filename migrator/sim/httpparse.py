"""Request-line and header parsing for the simulated API server, lean enough for its hot path.

``BaseHTTPRequestHandler`` parses every request's headers with the ``email`` package's
FeedParser, which cost about a third of the server's CPU per request. Kubernetes clients send
a handful of plain ``Name: value`` lines; this reads them directly, with the standard library's
limits (64 KiB per line, 100 headers) and its exceptions, so the handler answers oversized or
malformed requests as before.
"""

from __future__ import annotations

import http.client
from typing import Protocol, overload

MAX_LINE = 65536
MAX_HEADERS = 100


class _LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class Headers:
    """Request headers by case-insensitive name; the first of repeated headers wins, as with
    ``email.message.Message.get``."""

    __slots__ = ("_values",)

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        for name, value in pairs:
            self._values.setdefault(name.lower(), value)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:
        return self._values.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._values

    def items(self) -> list[tuple[str, str]]:
        return list(self._values.items())


def read_headers(rfile: _LineReader) -> Headers:
    """Read header lines up to the blank line. Raises ``http.client.LineTooLong`` or
    ``http.client.HTTPException`` (too many headers) like ``http.client.parse_headers``."""
    pairs: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            return Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and pairs:   # obsolete line folding continues the previous value
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {text.strip()}")
            continue
        name, sep, value = text.partition(":")
        if sep:
            pairs.append((name.strip(), value.strip()))
