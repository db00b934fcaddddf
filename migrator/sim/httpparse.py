"""Request-line, header and body parsing for the simulated API server, lean enough for its hot path.

``BaseHTTPRequestHandler`` parses every request's headers with the ``email`` package's
FeedParser, which cost about a third of the server's CPU per request. Kubernetes clients send
a handful of plain ``Name: value`` lines; this reads them directly, with the standard library's
limits (64 KiB per line, 100 headers) and its exceptions, so the handler answers oversized or
malformed requests as before.

Bodies are read whole before anything is decoded, as kube-apiserver's handlers read them: a
body that ends before its framing says (a client killed mid-request) is an error, never a
shorter body to execute.
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
    ``email.message.Message.get``; ``get_all`` has every value (``Impersonate-Group`` repeats)."""

    __slots__ = ("_values", "_repeated")

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._values: dict[str, str] = {}
        self._repeated: dict[str, list[str]] = {}
        for name, value in pairs:
            key = name.lower()
            if key in self._values:
                self._repeated.setdefault(key, [self._values[key]]).append(value)
            else:
                self._values[key] = value

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        return self._values.get(name.lower(), default)

    def __getitem__(self, name: str) -> str | None:
        return self._values.get(name.lower())

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return list(self._repeated.get(key) or ([self._values[key]] if key in self._values else []))

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


class BodyError(Exception):
    """The request's body could not be read whole: the client closed inside it, or its chunked
    framing is broken. The text is Go's, which kube-apiserver passes on as the answer's message."""


class FramingError(Exception):
    """A Content-Length or Transfer-Encoding no request body can be read by: answered with
    ``code`` before anything is read, as Go's server does, and the connection closes."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _BodyReader(_LineReader, Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_body(rfile: _BodyReader, headers: Headers) -> bytes:
    """The whole request body as its headers frame it: chunked, else Content-Length bytes, else
    none. Raises ``BodyError`` when it ends early (Go's ``io.ErrUnexpectedEOF``: a body shorter
    than its Content-Length, chunks without the closing empty one) and ``FramingError`` for
    framing Go's server refuses outright. Never returns part of a body."""
    coding = (headers.get("Transfer-Encoding") or "").strip().lower()
    if coding:
        if coding != "chunked":
            raise FramingError(501, f"unsupported transfer encoding: {coding!r}")
        return _read_chunked(rfile)
    declared = (headers.get("Content-Length") or "").strip()
    if not declared:
        return b""
    if not (declared.isascii() and declared.isdigit()):
        raise FramingError(400, f"bad Content-Length: {declared!r}")
    length = int(declared)
    data = rfile.read(length) if length else b""
    if len(data) < length:
        raise BodyError("unexpected EOF")
    return data


_HEX = frozenset(b"0123456789abcdefABCDEF")


def _chunk_line(rfile: _LineReader, eof: str) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise BodyError("header line too long")
    if not line.endswith(b"\n"):
        raise BodyError(eof)
    return line


def _read_chunked(rfile: _BodyReader) -> bytes:
    """A chunked body, its trailer skipped; errors worded as Go's chunked reader words them."""
    parts: list[bytes] = []
    while True:
        size_field = _chunk_line(rfile, "unexpected EOF").split(b";", 1)[0].strip()
        if not size_field or len(size_field) > 16 or not _HEX.issuperset(size_field):
            raise BodyError("malformed chunked encoding")
        size = int(size_field, 16)
        if size == 0:
            break
        data = rfile.read(size)
        if len(data) < size:
            raise BodyError("unexpected EOF")
        if _chunk_line(rfile, "unexpected EOF") not in (b"\r\n", b"\n"):
            raise BodyError("malformed chunked encoding")
        parts.append(data)
    while _chunk_line(rfile, "http: unexpected EOF reading trailer") not in (b"\r\n", b"\n"):
        pass   # trailer fields: nothing here reads them
    return b"".join(parts)
