"""Which API server a command talks to, as whom, and what to say when that fails.

``read_target`` reads the kubeconfig the way the client will (``--kubeconfig``, else
``$KUBECONFIG``, else ``~/.kube/config``; the in-cluster service account when none is given in
a pod) just far enough to name the server, context and user, and refuses a file that is
missing, not YAML, or has no such context — one line naming the file and the problem, before
anything is sent. ``explain`` turns a ``ClusterError`` that ended a command into one line naming
that server, context and user and what to check, with its exit code: 2 when the input is wrong
(credentials refused, no permission, TLS verification failed, an unreadable checkpoint), 1 when
the server could not answer (nothing was changed; try again).

Only ``cluster/kube.py`` talks to the API server; this module reads files and error chains.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from migrator.cluster.errors import ClusterError, ConfigError, Forbidden, Unavailable
from migrator.rbac import missing_rule

INVALID, HALTED = 2, 1


@dataclass(frozen=True)
class Target:
    """The API server and identity a command uses."""

    server: str
    context: str
    user: str
    source: str  # the kubeconfig file(s), or "in-cluster service account"

    def describe(self) -> str:
        return f"API server {self.server} (context {self.context}, user {self.user}, {self.source})"


def _kubeconfig_paths(kubeconfig: str | None) -> list[str] | None:
    """The kubeconfig files to read, or None for the in-cluster service account."""
    if kubeconfig:
        return [kubeconfig]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return None
    return [str(Path("~/.kube/config").expanduser())]


def _read_one(path: str, *, required: bool) -> dict[str, Any]:
    file = Path(path)
    hint = "pass --kubeconfig PATH or set KUBECONFIG"
    if not file.exists():
        if required:
            raise ConfigError(f"kubeconfig {path}: not found; {hint}")
        return {}
    if file.is_dir():
        raise ConfigError(f"kubeconfig {path}: is a directory; {hint} to the kubeconfig file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"kubeconfig {path}: not UTF-8 text (offset {exc.start}); {hint} to a valid kubeconfig") from exc
    except OSError as exc:
        raise ConfigError(f"kubeconfig {path}: cannot be read ({exc.strerror}); check its permissions") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(p for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p) \
            or " ".join(str(exc).split())
        raise ConfigError(f"kubeconfig {path}: not valid YAML ({where}{what}); fix it or {hint}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k, []) or [], list)
                                            for k in ("clusters", "contexts", "users")):
        raise ConfigError(f"kubeconfig {path}: not a kubeconfig (expected a mapping with clusters, contexts and "
                          f"users lists); {hint}")
    return doc


def _named(items: list[Any], name: str) -> dict[str, Any]:
    for item in items:
        if isinstance(item, dict) and item.get("name") == name:
            body = next((v for k, v in item.items() if k != "name" and isinstance(v, dict)), {})
            return body
    return {}


def read_target(kubeconfig: str | None, context: str | None) -> Target:
    """The server, context and user the command will use. Raises ``ConfigError`` (exit 2)."""
    paths = _kubeconfig_paths(kubeconfig)
    if paths is None:
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST", ""), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        return Target(f"https://{host}:{port}", "in-cluster", "the pod's service account",
                      "in-cluster service account")
    docs = [_read_one(p, required=len(paths) == 1) for p in paths]
    source = "kubeconfig " + os.pathsep.join(paths)
    lists: dict[str, list[Any]] = {k: [i for d in docs for i in (d.get(k) or [])] for k in
                                   ("clusters", "contexts", "users")}
    current = next((d.get("current-context") for d in docs if d.get("current-context")), None)
    name = context or current
    known = [c.get("name") for c in lists["contexts"] if isinstance(c, dict)]
    if not known:
        raise ConfigError(f"{source}: has no contexts; pass --kubeconfig PATH to a kubeconfig for the cluster")
    if not name:
        raise ConfigError(f"{source}: no current-context; pass --context NAME (contexts: {', '.join(map(str, known))})")
    if name not in known:
        raise ConfigError(f"{source}: has no context {name!r}; pass --context with one of: "
                          f"{', '.join(map(str, known))}")
    ctx = _named(lists["contexts"], name)
    cluster = _named(lists["clusters"], str(ctx.get("cluster", "")))
    server = str(cluster.get("server") or "(no server)")
    return Target(server, name, str(ctx.get("user") or "(no user)"), source)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from, including urllib3's ``reason``."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen) or len(seen) > 20:
            continue
        seen.append(item)
        todo.extend([item.__cause__, item.__context__])
        reason = getattr(item, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return seen


def _transport_problem(exc: BaseException) -> tuple[str, str, int] | None:
    """(what happened, what to check, exit code) for a failure to reach the server at all."""
    chain = _causes(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    if "SSLError" in names or "CERTIFICATE_VERIFY_FAILED" in text or "SSLCertVerificationError" in names:
        return ("TLS verification failed", "check the kubeconfig's certificate-authority data for this server",
                INVALID)
    if "ConnectionRefusedError" in names or "Connection refused" in text:
        return ("connection refused", "check that the API server is running and that the kubeconfig's "
                "server address and port are right", HALTED)
    if "NameResolutionError" in names or "Name or service not known" in text or "gaierror" in names:
        return ("the host name does not resolve", "check the kubeconfig's server address", INVALID)
    if any(n in names for n in ("ConnectTimeoutError", "ReadTimeoutError", "TimeoutError", "timeout")):
        return ("no answer in time", "check the network path to the server and that it is up", HALTED)
    if "NewConnectionError" in names or "MaxRetryError" in names or "ProtocolError" in names:
        return ("the connection failed", "check that the API server is running and that the kubeconfig's "
                "server address is right", HALTED)
    return None


def explain(exc: ClusterError, target: Target | None) -> tuple[str, int]:
    """One line for ``exc`` (naming the server, context and user) and the exit code."""
    if isinstance(exc, ConfigError):
        return exc.message, INVALID
    where = target.describe() if target is not None else "the API server"
    if isinstance(exc, Forbidden) and exc.status == 401:
        user = target.user if target is not None else "the kubeconfig's user"
        return (f"{where} rejected the credentials of user {user} ({exc.message}); check that user's token or "
                "client certificate in the kubeconfig (it may have expired or belong to another cluster)", INVALID)
    if isinstance(exc, Forbidden):
        rule = missing_rule(exc.message)
        grant = f"add the rule {rule} to the user's ClusterRole (`migrator manifests` prints the whole role)" \
            if rule else "grant the ClusterRole that `migrator manifests` prints"
        return f"{where} refused: {exc.message}; {grant}, or use a context whose user has it", INVALID
    if type(exc).__name__ == "CheckpointUnreadable":
        return f"{exc.message} ({where})", INVALID
    if isinstance(exc, Unavailable) and exc.status is None:
        problem = _transport_problem(exc)
        if problem is not None:
            what, check, code = problem
            return f"cannot reach the {where}: {what}; {check}", code
    if isinstance(exc, Unavailable):
        return f"{where} could not answer ({exc.message}); try again when it is healthy", HALTED
    return f"{exc.message} ({where})", HALTED
