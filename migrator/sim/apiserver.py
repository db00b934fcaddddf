"""The simulated kube-apiserver: HTTP/1.1, routing, auth, watch streams and error Statuses.

Serves the Kubernetes REST API over real HTTP so that the official ``kubernetes`` client and
``kubectl`` talk to the simulated cluster exactly as to a real one: bearer-token auth,
keep-alive connections with Nagle off (otherwise every request stalls ~40 ms on delayed
ACKs), one thread per connection, chunked watch streams, and every failure answered with a
``Status`` object (never a dropped connection). The verbs themselves live in
``operations.py``; discovery documents in ``discovery.py``; kubectl's Tables in ``tables.py``.

Hooks: ``proxy`` answers the pods/proxy subresource (the simulated agnhost netexec);
``faults`` injects errors and latency by verb and resource, decided before a request is
executed; ``requests`` records every answer with its body sizes, and ``/sim/requests`` (plus
``/sim/introspect`` when an ``introspect`` hook is given) serves that record to clients in other
processes, with the same bearer token; these paths are the simulator's own, answered outside
the request log and the faults, and kube-apiserver has no such path. ``outage`` / ``schedule_outage`` make the server
unavailable for a while (``faults.Outage``): ``refuse`` stops listening and closes every
connection, ``503`` answers everything 503 and ends open watches. ``add_user`` issues another
bearer token, so that the request log can tell two clients apart by user.

Every request is authenticated (``authn.py``: the admin token, issued users, ServiceAccount
tokens, impersonation) and authorized by RBAC (``rbac.py``) before anything is executed, fault
injection included; ``/healthz``, ``/livez`` and ``/readyz`` answer before either.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import structlog

from migrator.sim import discovery, fields, operations, protobody, reviews, tables, wire
from migrator.sim.authn import Authenticator, impersonate
from migrator.sim.errors import (
    ApiError,
    BadRequest,
    Gone,
    InternalError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from migrator.sim.eviction import evict
from migrator.sim.faults import ApiFaults, Outage, OutageMode
from migrator.sim.httpparse import BodyError, FramingError, Headers, read_body, read_headers
from migrator.sim.openapi import OpenApi
from migrator.sim.operations import Target, present
from migrator.sim.rbac import Attributes, Authorizer, Identity
from migrator.sim.registry import ApiResource, Registry, registry_for
from migrator.sim.requestlog import RequestEntry, RequestFilter, RequestLog
from migrator.sim.selectors import build_predicate
from migrator.sim.store import Store
from migrator.sim.tls import serving_cert

Obj = dict[str, Any]
ProxyHook = Callable[[Obj, str, str, dict[str, list[str]]], tuple[int, Any]]
IntrospectHook = Callable[[], Obj]
log = structlog.get_logger("migrator.sim.apiserver")
MAX_WATCH_SECONDS = 1800


class _Server(ThreadingHTTPServer):
    """The listening socket. The backlog must be set on the class: ``listen()`` runs in the
    constructor, so an attribute set afterwards is ignored (the default of 5 refused connections
    when hundreds of clients and watches connected at once)."""

    request_queue_size = 1024
    daemon_threads = True


class ApiServer:
    """A running simulated API server bound to one ``Store``."""

    def __init__(self, store: Store, *, host: str = "127.0.0.1", port: int = 0, token: str,
                 proxy: ProxyHook | None = None, faults: ApiFaults | None = None, version: str = "v1.32.4",
                 service_cidr: str = "10.96.0.0/12", tls: bool = True,
                 introspect: IntrospectHook | None = None) -> None:
        self.store = store
        self.registry: Registry = registry_for(store)
        self.token = token
        self.authn = Authenticator(store, token)
        self.authz = Authorizer(store)
        self.proxy = proxy
        self.introspect = introspect
        self.faults = faults
        self.version = version
        self.requests = RequestLog()
        self.openapi = OpenApi(self.registry, version)   # documents built on first request
        self._stopping = threading.Event()
        self._handler = type("BoundHandler", (_Handler,), {"api": self})
        self.ca_pem: bytes | None = None
        self._ssl = None
        if tls:
            cert = serving_cert()
            self.ca_pem = cert.ca_pem
            self._ssl = cert.server_context()
        self._httpd = self._listen(host, port)
        self._thread: threading.Thread | None = None
        self._outage_lock = threading.Lock()
        self._outage: OutageMode | None = None
        self._outage_timers: list[threading.Timer] = []
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.outages = 0

    def _listen(self, host: str, port: int) -> _Server:
        httpd = _Server((host, port), self._handler)
        if self._ssl is not None:
            # handshake lazily, on the connection's own thread, so one stuck client cannot block accept()
            httpd.socket = self._ssl.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        return httpd

    def add_user(self, name: str, groups: tuple[str, ...] = ()) -> str:
        """Issue a bearer token for user ``name`` and return it. The user may do what RBAC binds to
        it (or to its ``groups``, e.g. ``system:masters``): at first no more than discover the API."""
        return self.authn.add_user(name, groups)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        assert isinstance(host, str)  # an AF_INET socket's address is (str, int); bytes only for AF_UNIX
        return f"{'https' if self.ca_pem else 'http'}://{host}:{port}"

    def start(self) -> ApiServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="sim-apiserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._outage_lock:
            for timer in self._outage_timers:
                timer.cancel()
        self.store.wake_watches()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    # ------------------------------------------------------------------ outages
    @property
    def unavailable(self) -> OutageMode | None:
        """The mode of the outage under way, or None while serving."""
        return self._outage

    def schedule_outage(self, outage: Outage) -> None:
        """Begin ``outage`` ``outage.after`` wall seconds from now."""
        self._timer(outage.after, lambda: self.outage(outage.duration, outage.mode))

    def outage(self, duration: float, mode: OutageMode = "refuse") -> None:
        """Become unavailable now, for ``duration`` wall seconds (no-op during another outage)."""
        with self._outage_lock:
            if self._outage is not None or self.stopping:
                return
            self._outage = mode
            self.outages += 1
        log.info("sim.apiserver.outage.begin", mode=mode, seconds=duration)
        if mode == "refuse":
            self._httpd.shutdown()           # stop accepting: new connections are refused
            self._httpd.server_close()
            with self._connections_lock:
                open_now = list(self._connections)
            for conn in open_now:            # and every open one is cut, watches included
                try:
                    socket.socket.shutdown(conn, socket.SHUT_RDWR)
                except OSError:
                    pass
        self.store.wake_watches()            # so that they end
        self._timer(duration, self._end_outage)

    def _end_outage(self) -> None:
        with self._outage_lock:
            if self._outage is None or self.stopping:
                return
            if self._outage == "refuse":
                host, port = self._httpd.server_address[:2]
                assert isinstance(host, str)
                for attempt in range(50):   # the same port again (a lingering socket may hold it briefly)
                    try:
                        self._httpd = self._listen(host, port)
                        break
                    except OSError:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)
                self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                                name="sim-apiserver", daemon=True)
                self._thread.start()
            self._outage = None
        log.info("sim.apiserver.outage.end")

    def _timer(self, delay: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(delay, action)
        timer.daemon = True
        with self._outage_lock:
            self._outage_timers = [t for t in self._outage_timers if t.is_alive()] + [timer]
        timer.start()

    def _opened(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(conn)

    def _closed(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()


def _http_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of ``HTTP/x.y``; None when malformed."""
    major, dot, minor = text.removeprefix("HTTP/").partition(".")
    if not text.startswith("HTTP/") or not dot or not (major.isdigit() and minor.isdigit()) \
            or len(major) > 10 or len(minor) > 10:
        return None
    return int(major), int(minor)


class _Handler(BaseHTTPRequestHandler):
    _unlogged = False  # True from the start of ``_handle`` until the request is in the log
    _stream_entry = -1  # a watch's number in the request log, which counts what it sends
    api: ApiServer
    headers: Headers  # type: ignore[assignment]  # read_headers' lean Headers stand in for email.message.Message
    raw_requestline: bytes  # set by handle_one_request, undeclared in the stdlib's stubs
    _warnings: list[str]
    _identity: Identity   # who the request acts as, once authenticated (and impersonated)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    # Buffer each response and send it whole (handle_one_request flushes after the handler):
    # unbuffered, the headers and the body went out as two TLS records, two syscalls and two
    # wake-ups of the client. Streams flush what they write themselves.
    wbufsize = 1 << 16
    server_version = "migrator-sim-apiserver"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stdlib access log
        return

    def handle(self) -> None:
        self.api._opened(self.connection)
        try:
            super().handle()
        except OSError:  # TLS handshake or read failed: the client is gone
            self.close_connection = True

    def finish(self) -> None:
        self.api._closed(self.connection)
        try:
            super().finish()
        except OSError:  # the client left with a response still buffered: nothing to deliver it to
            self.rfile.close()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """A request refused before routing (bad request line, oversized headers, unknown method):
        a ``Status`` like every other error, on an HTTP/1.1 status line, then the connection closes
        (what follows on it cannot be trusted)."""
        phrase = HTTPStatus(code).phrase
        err = ApiError(f"{message or phrase}{f': {explain}' if explain else ''}")
        err.code, err.reason = code, phrase.title().replace(" ", "").replace("-", "")
        self.close_connection = True
        self.request_version = "HTTP/1.1"
        self._warnings = []
        self._send(code, err.status(), headers={"Connection": "close"})

    def parse_request(self) -> bool:
        """The request line and headers, as the standard library's, minus its email parser."""
        self.command = ""
        self.request_version = self.default_request_version
        self.close_connection = True
        self.requestline = requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = requestline.split()
        if not words:
            return False
        if len(words) != 3:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request syntax ({requestline!r})")
            return False
        command, path, version = words
        number = _http_version(version)
        if number is None:
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request version ({version!r})")
            return False
        if number >= (2, 0):
            self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"Invalid HTTP version ({version})")
            return False
        self.request_version = version
        self.close_connection = number < (1, 1)
        self.command, self.path = command, "/" + path.lstrip("/") if path.startswith("//") else path
        try:
            self.headers = read_headers(self.rfile)
        except http.client.LineTooLong as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long", str(err))
            return False
        except http.client.HTTPException as err:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers", str(err))
            return False
        connection = (self.headers.get("Connection") or "").lower()
        if connection == "close":
            self.close_connection = True
        elif connection == "keep-alive":
            self.close_connection = False
        if (self.headers.get("Expect") or "").lower() == "100-continue" and number >= (1, 1):
            return self.handle_expect_100()
        return True

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    # ------------------------------------------------------------------ plumbing
    def _handle(self, method: str) -> None:
        self._entry = ("", "", "", "")
        self._user = ""
        self._request_bytes = 0
        self._unlogged = True
        self._warnings = []
        code = 500
        if self.api.unavailable == "refuse":  # arrived as the server went down: never served
            self.close_connection = True
            return
        try:
            try:
                body = read_body(self.rfile, self.headers)
                self._request_bytes = len(body)
            except FramingError as err:
                self.send_error(err.code, str(err))
                return
            except BodyError as err:
                self._refuse_body(err)
                return
            code = self._dispatch(method, body)
        except ApiError as err:
            code = self._send_status(err)
        except OSError:  # the client went away (reset, broken pipe, TLS EOF): nothing to answer
            self.close_connection = True
            return
        except Exception as exc:  # a handler bug: answer 500, keep serving
            log.error("sim.apiserver.handler_bug", error=repr(exc), trace=traceback.format_exc().splitlines()[-3:])
            try:
                code = self._send_status(InternalError(f"simulated apiserver handler failed: {exc!r}"))
            except OSError:
                self.close_connection = True
                return
        self._record(code)

    def _record(self, code: int, response_bytes: int = 0) -> int:
        """Log the request once, as its answer starts: a client that has read the answer (or
        started reading a watch) finds it counted. Returns its number in the log (-1 if it was
        logged already or is not to be)."""
        if not self._unlogged:
            return -1
        self._unlogged = False
        verb, resource, ns, name = self._entry
        return self.api.requests.add(RequestEntry(verb, resource, ns, name, code, self.headers.get("User-Agent", ""),
                                                  self._user, self._request_bytes, response_bytes))

    def _refuse_body(self, err: BodyError) -> int:
        """A body that ended early (the client died inside it) is never decoded, let alone
        executed. kube-apiserver's handlers read the whole body first; Go's reader fails with
        ``unexpected EOF``, the handler passes that error to its error writer, which answers any
        error that is not a Status as a 500 with the error's text and no reason (apimachinery's
        ErrorToAPIStatus), and Go's server closes the connection whose body it could not finish."""
        self.close_connection = True
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": str(err), "code": 500}
        return self._send(500, status, headers={"Connection": "close"})

    def _send(self, code: int, payload: Any, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> int:
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else wire.dumps(payload))
        self._record(code, 0 if self.command == "HEAD" else len(data))
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if "Cache-Control" not in (headers or {}):
            self.send_header("Cache-Control", "no-cache, private")
        for w in self._warnings:
            quoted = w.replace("\\", "\\\\").replace('"', '\\"')   # a quoted-string (RFC 7230)
            self.send_header("Warning", f'299 - "{quoted}"')
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return code

    def _send_status(self, err: ApiError) -> int:
        headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
        return self._send(err.code, err.status(), headers=headers)

    # ------------------------------------------------------------------ routing
    def _dispatch(self, method: str, body: bytes) -> int:
        api = self.api
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            self._entry = ("get", "", "", path)
            self._unavailable()
            return self._send(200, "ok", "text/plain; charset=utf-8")
        who = api.authn.authenticate(self.headers.get("Authorization", ""))
        if path == "/sim" or path.startswith("/sim/"):
            self._unlogged = False   # observing the simulator is not API traffic
        if who is None:
            raise Unauthorized("Unauthorized")
        self._user = who.name
        if "Impersonate-User" in self.headers or "Impersonate-Group" in self.headers:
            who = impersonate(api.authz, who, self.headers)
            self._user = who.name
        self._identity = who
        segs = [s for s in path.split("/") if s]
        if segs[:1] == ["sim"]:
            return self._sim(segs[1:], query)
        if not segs or not ((segs[0] == "api" and len(segs) >= 3) or (segs[0] == "apis" and len(segs) >= 4)):
            self._entry = ("get", "", "", path)   # discovery and /version: non-resource gets
            api.authz.check(who, Attributes(method.lower(), path=path))
            self._fault("get", "")
        if path == "/version":
            return self._send(200, discovery.version_doc(api.version))
        if path == "/api":
            return self._send(200, discovery.core_versions(self.headers.get("Host", "")))
        if path == "/apis":
            return self._send(200, discovery.group_list(api.registry))
        if segs and segs[0] == "openapi":
            return self._openapi(segs[1:], query)
        if segs and segs[0] == "api" and len(segs) >= 2:
            group, version, rest = "", segs[1], segs[2:]
        elif segs and segs[0] == "apis" and len(segs) >= 2:
            if len(segs) == 2:
                doc = discovery.group_doc(api.registry, segs[1])
                if doc is None:
                    raise NotFound(f"the server could not find the requested resource (group {segs[1]})")
                return self._send(200, doc)
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            raise NotFound(f"the server could not find the requested resource ({path})")
        if not rest:
            doc = discovery.resource_list(api.registry, group, version)
            if doc is None:
                raise NotFound(f"the server could not find the requested resource ({path})")
            return self._send(200, doc)
        target, tail = self._resolve(group, version, rest)
        return self._serve(method, target, tail, query, body)

    def _resolve(self, group: str, version: str, rest: list[str]) -> tuple[Target, list[str]]:
        reg = self.api.registry
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = reg.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        res = reg.get(group, version, rest[0])
        if res is None:
            gv = f"{group}/{version}" if group else version
            raise NotFound(f"the server could not find the requested resource ({gv}, {rest[0]})",
                           details={"kind": rest[0], "group": group})
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            raise NotFound(f"the server could not find the requested resource ({res.plural}/{sub})")
        if res.deprecated:
            self._warnings.append(res.deprecated)
        return Target(res, namespace, name, sub), rest[3:]

    def _serve(self, method: str, t: Target, tail: list[str], query: dict[str, str], body: bytes) -> int:
        store = self.api.store
        res = t.res
        resource = res.key + (f"/{t.subresource}" if t.subresource else "")
        watching = method == "GET" and query.get("watch") in ("1", "true")
        verb = {"GET": "watch" if watching else ("get" if t.name else "list"), "POST": "create",
                "PUT": "update", "PATCH": "patch", "DELETE": "delete" if t.name else "deletecollection"}[method]
        if t.subresource == "proxy":
            verb = "get" if method == "GET" else verb
        self._entry = (verb, resource, t.namespace or "", (t.name or "").split(":")[0])
        self.api.authz.check(self._identity, _attributes(t, verb, query))
        self._fault(verb, resource)   # decided before anything is executed: a fault has no effect
        if res.key in _REVIEWS or t.subresource == "token":
            return self._review(method, t, body)
        if t.subresource == "proxy":
            return self._proxy(t, tail, method)
        if t.subresource == "eviction":
            if method != "POST":
                raise MethodNotAllowed("eviction only accepts POST")
            return self._send(201, evict(store, Target(res, t.namespace, t.name), self._decode(body, "Eviction")))
        if t.subresource == "binding":
            return self._bind(t, self._decode(body, "Binding"))
        if t.subresource == "log":
            pod = store.get("pods", t.namespace, t.name or "")
            text = (pod["metadata"].get("annotations") or {}).get("sim.migrator.io/log", "")
            return self._send(200, text, "text/plain")
        if t.subresource == "scale":
            return self._scale(method, t, body, query)
        if watching:
            return self._watch(t, query)
        if method in ("POST", "PUT", "PATCH") and not query.get("fieldManager") \
                and not self.headers.get("Content-Type", "").startswith("application/apply-patch"):
            # kube-apiserver names an unnamed writer after its User-Agent, up to the first "/"
            query = dict(query, fieldManager=self.headers.get("User-Agent", "").split("/")[0][:128] or "unknown")
        if method == "GET":
            if t.name:
                return self._send_obj(res, operations.get(store, t), query=query)
            items, rv, cont = operations.list_objects(store, t, query)
            if tables.wants_table(self.headers.get("Accept", "")):
                return self._send(200, tables.table(res, [present(res, o) for o in items],
                                                    include=self._include_object(query), resource_version=rv,
                                                    cont=cont))
            meta: Obj = {"resourceVersion": rv}
            if cont:
                meta["continue"] = cont
            return self._send(200, {"kind": f"{res.kind}List", "apiVersion": res.group_version,
                                    "metadata": meta, "items": items})
        if method == "POST":
            obj = self._decode(body, res.kind, res)
            self._name_created(obj)
            return self._send_obj(res, operations.create(store, t, obj, query, self._warnings), 201, query=query)
        if method == "PUT":
            return self._send_obj(res, operations.update(store, t, self._decode(body, res.kind, res), query,
                                                         self._warnings), query=query)
        if method == "PATCH":
            patched, created = operations.patch(store, t, body, self.headers.get("Content-Type", ""), query,
                                                self._warnings)
            return self._send_obj(res, patched, 201 if created else 200, query=query)
        if method == "DELETE":
            options = self._json(body) if body else {}
            if not t.name:
                return self._send(200, operations.delete_collection(store, t, options, query))
            obj, pending = operations.delete(store, t, options, query)
            return self._send(202 if pending and res.kind != "Pod" else 200, obj)
        raise MethodNotAllowed(f"method {method} is not supported")

    def _review(self, method: str, t: Target, body: bytes) -> int:
        """The create-only resources answered, never stored: the self reviews and TokenRequest."""
        if method != "POST":
            raise MethodNotAllowed(f"method {method} is not supported")
        who = self._identity
        if t.subresource == "token":
            return self._send(201, self.api.authn.token_request(t.namespace or "", t.name or "",
                                                                self._decode(body, "TokenRequest")))
        kind = _REVIEWS[t.res.key]
        data = self._decode(body, kind)
        if kind == "SelfSubjectAccessReview":
            return self._send(201, reviews.access_review(self.api.authz, who, data))
        if kind == "SelfSubjectRulesReview":
            return self._send(201, reviews.rules_review(self.api.authz, who, data))
        return self._send(201, reviews.subject_review(who, data))

    def _sim(self, rest: list[str], query: dict[str, str]) -> int:
        """The simulator's own read-only paths: ``/sim/requests`` (the request log's counts and
        body bytes, filtered as ``RequestFilter.from_query`` reads the query) and
        ``/sim/introspect``. Observing is not traffic: neither logged nor faulted."""
        if self.command != "GET":
            raise MethodNotAllowed(f"{self.path} only answers GET")
        if rest == ["requests"]:
            try:
                where = RequestFilter.from_query(query)
            except ValueError as err:
                raise BadRequest(f"/sim/requests: {err}") from err
            return self._send(200, self.api.requests.summary(where))
        if rest == ["introspect"] and self.api.introspect is not None:
            return self._send(200, self.api.introspect())
        raise NotFound(f"the server could not find the requested resource ({self.path})")

    def _name_created(self, obj: Any) -> None:
        """A create is logged under the name its body gives (none for ``generateName``), as
        kube-apiserver's audit completes ``objectRef.name`` from the decoded request object."""
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(name, str):
            verb, resource, namespace, _ = self._entry
            self._entry = (verb, resource, namespace, name)

    def _openapi(self, rest: list[str], query: dict[str, str]) -> int:
        """``/openapi/v2`` and ``/openapi/v3[/<group-version>]``, as kube-openapi's handlers serve
        them: a v3 document asked for by its current hash is immutable, an outdated hash is
        redirected to the current one."""
        openapi = self.api.openapi
        if rest == ["v2"]:
            accept = self.headers.get("Accept", "") or "*/*"
            if not any(t.split(";")[0].strip() in ("application/json", "*/*", "application/*")
                       for t in accept.split(",")):
                raise NotAcceptable("only the following media types are accepted: application/json")
            return self._send(200, openapi.v2())
        if rest == ["v3"]:
            return self._send(200, openapi.v3_index())
        if rest[:1] == ["v3"]:
            found = openapi.v3_documents().get("/".join(rest[1:]))
            if found is not None:
                data, digest = found
                wanted = query.get("hash")
                if wanted and wanted != digest:
                    location = f"/openapi/v3/{'/'.join(rest[1:])}?hash={digest}"
                    return self._send(301, b"", headers={"Location": location})
                cache = {"Cache-Control": "public, immutable", "Expires": "Thu, 31 Dec 2099 00:00:00 GMT"} \
                    if wanted else {"Etag": f'"{digest}"'}
                return self._send(200, data, headers=cache)
        raise NotFound(f"the server could not find the requested resource ({self.path})")

    def _unavailable(self) -> None:
        """Answer 503 during an outage in ``503`` mode (``refuse`` never gets this far)."""
        if self.api.unavailable is not None:
            raise ServiceUnavailable("the server is currently unable to handle the request "
                                     "(control plane unavailable)", retry_after=1)

    def _fault(self, verb: str, resource: str) -> None:
        """The outage, then the fault rules, for one request about to be executed."""
        self._unavailable()
        if self.api.faults is not None:
            delay, err = self.api.faults.decide(verb, resource)
            if delay:
                time.sleep(delay)
            if err is not None:
                raise err

    def _send_obj(self, res: ApiResource, obj: Obj, code: int = 200, *, query: dict[str, str]) -> int:
        if tables.wants_table(self.headers.get("Accept", "")):
            return self._send(code, tables.table(res, [obj], include=self._include_object(query),
                                                 resource_version=obj["metadata"].get("resourceVersion", "")))
        return self._send(code, obj)

    @staticmethod
    def _include_object(query: dict[str, str]) -> str:
        """The ``includeObject`` of a Table request (kube-apiserver's default: the metadata only)."""
        include = query.get("includeObject") or "PartialObjectMetadata"
        if include not in tables.INCLUDE_OBJECT:
            raise BadRequest(f'includeObject: Unsupported value: "{include}": supported values: '
                             f'"{tables.INCLUDE_OBJECT[0]}", "{tables.INCLUDE_OBJECT[1]}", "{tables.INCLUDE_OBJECT[2]}"')
        return include

    def _decode(self, body: bytes, kind: str, res: ApiResource | None = None) -> Any:
        """The object a create or update sends (to ``res``, when not a subresource), decoded as
        kube-apiserver's handlers decode it: JSON, or protobuf (``protobody``)."""
        if not body.strip():
            raise BadRequest(operations.unrecognized_body(kind, body))
        if self.headers.get("Content-Type", "").split(";")[0].strip() == protobody.MEDIA_TYPE:
            return protobody.read(body, kind, custom=res is not None and res.crd_schema is not None)
        try:
            return fields.loads(body)
        except ValueError as exc:
            raise BadRequest(f"error decoding request body as JSON: {exc}") from exc

    @staticmethod
    def _json(body: bytes) -> Any:
        if not body:
            return {}
        try:
            return json.loads(body)
        except ValueError as exc:
            raise BadRequest(f"error decoding request body as JSON: {exc}") from exc

    # ------------------------------------------------------------------ subresources
    def _proxy(self, t: Target, tail: list[str], method: str) -> int:
        name, _, port = (t.name or "").partition(":")
        pod = self.api.store.get("pods", t.namespace, name)
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            raise ServiceUnavailable(f'error trying to reach service: pod {name} is not running')
        if self.api.proxy is None:
            raise ServiceUnavailable("error trying to reach service: no route to the simulated pod")
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        code, payload = self.api.proxy(pod, port, "/" + "/".join(tail), query)
        if isinstance(payload, (dict, list)):
            return self._send(code, payload)
        return self._send(code, str(payload), "text/plain; charset=utf-8")

    def _bind(self, t: Target, body: Obj) -> int:
        node = ((body or {}).get("target") or {}).get("name")
        if not node:
            raise BadRequest("binding requires target.name")
        store = self.api.store
        with store.lock:
            pod = store.get("pods", t.namespace, t.name or "")
            if (pod.get("spec") or {}).get("nodeName"):
                from migrator.sim.errors import Conflict
                raise Conflict(f'pod {t.name} is already assigned to node "{pod["spec"]["nodeName"]}"')
            store.mutate("pods", t.namespace, t.name or "", lambda o: o["spec"].update(nodeName=node))
        return self._send(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})

    def _scale(self, method: str, t: Target, body: bytes, query: dict[str, str]) -> int:
        store = self.api.store
        if method in ("PUT", "PATCH"):
            data = self._decode(body, "Scale") if method == "PUT" else \
                operations.decode_patch(body, self.headers.get("Content-Type", ""))
            replicas = ((data if isinstance(data, dict) else {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise BadRequest("scale requires spec.replicas as a non-negative integer")
            store.mutate(t.res.key, t.namespace, t.name or "", lambda o: o["spec"].update(replicas=replicas))
        obj = store.get(t.res.key, t.namespace, t.name or "")
        return self._send(200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                                "metadata": {"name": t.name, "namespace": t.namespace,
                                             "resourceVersion": obj["metadata"]["resourceVersion"]},
                                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0)}})

    # ------------------------------------------------------------------ watch
    def _watch(self, t: Target, query: dict[str, str]) -> int:
        store, res = self.api.store, t.res
        predicate = build_predicate(query.get("labelSelector"), query.get("fieldSelector"))
        timeout = min(int(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        as_table = tables.wants_table(self.headers.get("Accept", ""))
        include = self._include_object(query) if as_table else ""
        deadline = time.monotonic() + timeout

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            if t.namespace is not None and obj["metadata"].get("namespace", "") != t.namespace:
                return False
            if t.name and obj["metadata"].get("name") != t.name:
                return False
            return predicate is None or predicate(obj)

        rv_param = query.get("resourceVersion", "")
        initial: list[Obj] = []
        with store.lock:
            if rv_param in ("", "0"):
                initial = [o for o in store.list(res.key, t.namespace, predicate=predicate) if matches(o)]
                cursor = store.resource_version
            else:
                try:
                    cursor = int(rv_param)
                except ValueError as exc:
                    raise BadRequest(f"invalid resourceVersion {rv_param!r}") from exc
        number = self._record(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()   # the client's watch starts at the headers, events or not
        self._stream_entry = number
        try:
            for obj in initial:
                self._chunk("ADDED", present(res, obj), res, include)
            while not self.api.stopping and self.api.unavailable is None:
                try:
                    events = store.events_since(cursor)
                except Gone as err:
                    self._chunk("ERROR", err.status(), res, "")
                    break
                for ev in events:
                    cursor = ev.rv
                    if ev.resource != res.key:
                        continue
                    now_in, was_in = matches(ev.obj), matches(ev.old)
                    if ev.type == "DELETED":
                        kind = "DELETED" if was_in or now_in else None
                    elif now_in and not was_in and ev.type == "MODIFIED":
                        kind = "ADDED"
                    elif was_in and not now_in:
                        kind = "DELETED"
                    else:
                        kind = ev.type if now_in else None
                    if kind:
                        self._chunk(kind, present(res, ev.obj), res, include)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                store.wait_for_event(res.key, cursor, min(remaining, 1.0))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True
            return 200
        # A finished chunked response leaves the connection reusable, as kube-apiserver's does:
        # closing it here raced with clients that had already pooled it for their next watch.
        self.close_connection = self.api.stopping or self.api.unavailable is not None
        return 200

    def _chunk(self, kind: str, obj: Obj, res: ApiResource, include: str) -> None:
        """One watch event as one chunk, its JSON line (not the chunk's framing) counted in the log
        first (a client that has read an event finds it counted); a Table of the one object when the
        watch asked for Tables (``include`` set)."""
        if include and kind != "ERROR":
            obj = tables.table(res, [obj], include=include, resource_version=obj["metadata"].get("resourceVersion", ""))
        data = wire.dumps({"type": kind, "object": obj}) + b"\n"
        self.api.requests.add_response_bytes(self._stream_entry, len(data))
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


_REVIEWS = {"authorization.k8s.io/selfsubjectaccessreviews": "SelfSubjectAccessReview",
            "authorization.k8s.io/selfsubjectrulesreviews": "SelfSubjectRulesReview",
            "authentication.k8s.io/selfsubjectreviews": "SelfSubjectReview"}


def _attributes(t: Target, verb: str, query: dict[str, str]) -> Attributes:
    """What a resource request asks, as kube-apiserver's RequestInfo describes it: a namespace's
    own name is its namespace; a list or watch of one name (``fieldSelector=metadata.name=X``)
    names it."""
    res = t.res
    name = t.name or ""
    namespace = t.namespace or (name if res.key == "namespaces" else "")
    if not name and verb in ("list", "watch"):
        selected = query.get("fieldSelector", "")
        if selected.startswith("metadata.name=") and "," not in selected:
            name = selected.removeprefix("metadata.name=")
    return Attributes(verb, res.group, res.plural, t.subresource or "", namespace, name)


__all__ = ["ApiServer", "ApiResource", "Identity"]
