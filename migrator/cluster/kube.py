"""``KubeCluster``: the ``ClusterPort`` over HTTP, and the only module importing ``kubernetes``.

It loads a kubeconfig (optionally a ``--context``) or the in-cluster service account, calls the
typed APIs of the official client with dict bodies, and reads responses as plain JSON
(``_preload_content=False``) so that conversion to our facts happens once, in
``cluster/convert.py``. Every ``ApiException`` (and every transport failure) is mapped once
here into ``cluster/errors.py`` with ``raise ... from``; messages come from the ``Status`` body,
capped at 256 characters. A transport failure (refused, reset, timed out) becomes one line
naming the server, with ``Unavailable.sent`` telling whether the request may have been
executed. Nothing here retries (``cluster/guard.py`` does, once, for every caller).
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import kubernetes
import pydantic
import structlog
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from migrator.cluster import convert
from migrator.cluster.cache import Raw, WatchCache
from migrator.cluster.errors import (
    AlreadyExists,
    ClusterError,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    Unavailable,
    cap_message,
    map_status,
)
from migrator.cluster.kube_reads import KubeReads
from migrator.cluster.port import (
    ConfigMapSnapshot,
    LeaseEvent,
    LeaseRecord,
    ObjectRef,
    PodRequest,
    WatchScope,
)
from migrator.cluster.routing_reads import RoutingReads
from migrator.model.merge_patch import holds
from migrator.model.observation import PodFacts

log = structlog.get_logger(__name__)

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
CNC_GROUP, CNC_PLURAL = "cilium.io", "ciliumnodeconfigs"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
NEWER_WAIT = 1.0  # seconds a 409 waits for the watch cache to deliver the node's newer version


# -- configuration and error mapping ---------------------------------------------------------

def _version() -> str:
    try:
        return importlib.metadata.version("migrator")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"migrator/{_version()}"


#: The longest time between two runs of the client's credential refresh (``refreshed_rarely``).
REFRESH_EVERY = 30.0


def refreshed_rarely(hook: Callable[[Any], None], every: float = REFRESH_EVERY,
                     clock: Callable[[], float] = time.monotonic) -> Callable[[Any], None]:
    """``hook`` run at most once every ``every`` seconds.

    The client runs its configuration's ``refresh_api_key_hook`` before every request. The
    kubeconfig loader's hook sets seven fields of the whole configuration again each time (a
    third of a millisecond per request, a tenth of the tool's request cost) in order to renew a
    token once it counts as expired, which the client reckons five minutes before the token's
    expiry (``EXPIRY_SKEW_PREVENTION_DELAY``); the in-cluster loader's re-reads the service
    account token once a minute. Run every 30 s at most, either still renews every token well
    before it expires. Both loaders' hooks install a fresh hook of theirs as they run: that one
    is kept as the hook to run next time, and this wrapper stays the configuration's hook."""
    lock = threading.Lock()
    last: list[float | None] = [None]
    current = [hook]

    def refresh(configuration: Any) -> None:
        now = clock()
        with lock:
            if last[0] is not None and now - last[0] < every:
                return
            last[0] = now
        current[0](configuration)
        installed = getattr(configuration, "refresh_api_key_hook", refresh)
        if installed is not refresh and installed is not None:
            current[0] = installed
            configuration.refresh_api_key_hook = refresh

    return refresh


def load_api_client(kubeconfig: str | None = None, context: str | None = None, *,
                    pool_size: int = 32) -> kubernetes.client.ApiClient:
    """An ApiClient from a kubeconfig (``--kubeconfig``/``KUBECONFIG``/``~/.kube/config``), or from
    the in-cluster service account when no kubeconfig is given and we run in a pod."""
    cfg = kubernetes.client.Configuration()
    try:
        if kubeconfig is None and not os.environ.get("KUBECONFIG") \
                and os.environ.get("KUBERNETES_SERVICE_HOST"):
            kubernetes.config.load_incluster_config(client_configuration=cfg)
        else:
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                               client_configuration=cfg, persist_config=False)
    except (kubernetes.config.ConfigException, OSError, ValueError, TypeError) as exc:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ConfigError(f"cannot load kubeconfig {where}"
                          f"{f' context {context}' if context else ''} "
                          f"(pass --kubeconfig PATH and --context NAME): {exc}") from exc
    if cfg.refresh_api_key_hook is not None:
        cfg.refresh_api_key_hook = refreshed_rarely(cfg.refresh_api_key_hook)
    cfg.connection_pool_maxsize = pool_size
    # No hidden retries in the transport: urllib3 would otherwise re-send on 429/503 with a
    # Retry-After header and on connection errors. Retrying is retry.py's job alone.
    cfg.retries = urllib3.util.Retry(total=0, connect=0, read=0, redirect=0, status=0, other=0,
                                     respect_retry_after_header=False, raise_on_status=False)
    cfg.client_go_retries = False
    client = kubernetes.client.ApiClient(cfg)
    client.user_agent = USER_AGENT  # names the tool in audit logs (and the sim's request log)
    return client


def _status_body(exc: ApiException) -> dict[str, Any]:
    """The ``Status`` of an error answer; a plain-text body (a backend's own answer through
    pods/proxy) becomes its message, so the reason is not lost behind "Bad Request"."""
    raw = exc.body or ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        body = json.loads(text or "{}")
        return body if isinstance(body, dict) else {}
    except ValueError:
        return {"message": text} if text.strip() else {}


def _retry_after(exc: ApiException, status: dict[str, Any]) -> float | None:
    header = (exc.headers or {}).get("Retry-After") if exc.headers else None
    for value in (header, (status.get("details") or {}).get("retryAfterSeconds")):
        try:
            if value is not None:
                return float(value)
        except (TypeError, ValueError):
            continue
    return None


def map_api_exception(exc: ApiException) -> ClusterError:
    """Our error for an ApiException (the only place HTTP codes are interpreted)."""
    status = _status_body(exc)
    return map_status(status, code=exc.status or 0, fallback=str(exc.reason or ""),
                      retry_after=_retry_after(exc, status))


_NOT_SENT = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError,
             urllib3.exceptions.NameResolutionError, ConnectionRefusedError)


def transport_error(what: str, exc: BaseException, server: str = "") -> Unavailable:
    """One line for a failure below HTTP: what was asked, of which server, and what happened.

    ``sent`` says whether the request may have reached the server: a refused connection, a
    connect timeout or an unknown host did not; a read timeout or a reset mid-answer may have
    (the outcome is unknown). urllib3's nested repr (pool, object address, retries) is dropped."""
    cause: BaseException = exc
    while isinstance(cause, urllib3.exceptions.MaxRetryError) and cause.reason is not None:
        cause = cause.reason
    if isinstance(cause, urllib3.exceptions.ProtocolError) and cause.args and \
            isinstance(cause.args[-1], BaseException):
        cause = cause.args[-1]
    where = f" {server}" if server else ""
    # NewConnectionError subclasses ConnectTimeoutError in urllib3 2: test it first
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        text = f"cannot resolve the API server{where}"
    elif isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
        text = f"connection to the API server{where} refused"
    elif isinstance(cause, urllib3.exceptions.NewConnectionError):
        text = f"cannot connect to the API server{where}"
    elif isinstance(cause, urllib3.exceptions.ConnectTimeoutError):
        text = f"connecting to the API server{where} timed out"
    elif isinstance(cause, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        text = f"the API server{where} did not answer in time"
    elif isinstance(cause, ConnectionResetError) or "reset" in str(cause).lower():
        text = f"connection to the API server{where} reset"
    else:
        text = f"connection to the API server{where} failed ({type(cause).__name__})"
    sent = not isinstance(cause, _NOT_SENT)
    return Unavailable(f"{what}: {text}; check that it is up and reachable from here",
                       status=None, reason="ConnectionFailed", sent=sent)


@contextmanager
def translate(what: str, server: str = "") -> Iterator[None]:
    """Map client and transport failures into our errors, chained."""
    try:
        yield
    except ApiException as exc:
        raise map_api_exception(exc) from exc
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        raise transport_error(what, exc, server) from exc
    except pydantic.ValidationError as exc:
        raise Invalid(f"{what}: request rejected by the client: {exc}") from exc


def read_json(response: Any) -> Raw:
    """The body of a raw (``_preload_content=False``) response as a dict."""
    try:
        data = response.data
        return json.loads(data) if data else {}
    finally:
        response.release_conn()


# -- list/watch sources for the cache ----------------------------------------------------------

class _Source:
    """Lists and watches one resource kind through a typed list function."""

    def __init__(self, name: str, list_fn: Any, *args: Any, request_timeout: float = 60.0,
                 server: str = "") -> None:
        self.name, self._list_fn, self._args = name, list_fn, args
        self.server = server
        self._request_timeout = request_timeout
        self._response: Any = None
        self._aborted = False

    def abort(self) -> None:
        """End the watch in flight (called from another thread when the cache stops)."""
        self._aborted = True
        response = self._response
        if response is not None:
            try:
                response.shutdown() if hasattr(response, "shutdown") else response.close()
            except Exception:  # noqa: BLE001 - best effort: the thread ends at its timeout anyway
                pass

    def list(self) -> tuple[list[Raw], str]:
        with translate(f"list {self.name}", self.server):
            body = read_json(self._list_fn(*self._args, _preload_content=False,
                                           _request_timeout=self._request_timeout))
        return body.get("items") or [], (body.get("metadata") or {}).get("resourceVersion") or ""

    def watch(self, resource_version: str, timeout_seconds: int) -> Iterator[tuple[str, Raw]]:
        """Stream watch events as dicts. An ERROR event carries a Status: 410 → ``Expired``."""
        with translate(f"watch {self.name}", self.server):
            response = self._list_fn(
                *self._args, watch=True, resource_version=resource_version,
                timeout_seconds=timeout_seconds, allow_watch_bookmarks=True,
                _preload_content=False,
                _request_timeout=(10, timeout_seconds + 30))  # a silent dead connection ends too
            self._response = response
            try:
                if self._aborted:  # aborted while the request was being sent
                    return
                for line in iter_resp_lines(response):
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        raise map_status(obj, code=int(obj.get("code") or 500))
                    yield event.get("type", ""), obj
            except (urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError):
                if not self._aborted:
                    raise
            finally:
                self._response = None
                response.close()
                response.release_conn()


class _LeaseWatch:
    """``LeaseWatch`` over one WATCH response that ``KubeCluster.watch_lease`` opened.

    The server ends the stream at its ``timeoutSeconds`` (whole seconds); a timer ends it at
    the caller's exact ``timeout`` too, and ``stop`` ends it from any thread at once."""

    def __init__(self, response: Any, *, what: str, server: str, timeout: float) -> None:
        self._response = response
        self._what, self._server = what, server
        self._stopped = False
        self._closed = False
        self._mutex = threading.Lock()
        self._timer = threading.Timer(max(timeout, 0.0), self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()
        with self._mutex:
            if self._closed:  # the connection went back to the pool: never touch it again
                return
            try:
                self._response.shutdown()  # wakes a read blocked on the socket
            except Exception:  # noqa: BLE001 - best effort: the server ends the watch at its timeout anyway
                pass

    def __iter__(self) -> Iterator[LeaseEvent]:
        response = self._response
        try:
            with translate(self._what, self._server):
                for line in iter_resp_lines(response):
                    if self._stopped:
                        return
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    kind = event.get("type", "")
                    if kind == "ERROR":
                        raise map_status(obj, code=int(obj.get("code") or 500))
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
                    if kind == "BOOKMARK":
                        yield LeaseEvent("BOOKMARK", rv, None)
                    elif kind in ("ADDED", "MODIFIED", "DELETED"):
                        yield LeaseEvent(kind, rv, convert.lease_record(obj))
        except (ClusterError, urllib3.exceptions.HTTPError, OSError, AttributeError, ValueError):
            if not self._stopped:  # a stream cut by stop() ends quietly
                raise
        finally:
            self._stopped = True
            self._timer.cancel()
            with self._mutex:
                self._closed = True
                response.close()
                response.release_conn()


# -- the port ------------------------------------------------------------------------------

PLURALS = {"Namespace": "namespaces", "Service": "services", "DaemonSet": "daemonsets",
           "ConfigMap": "configmaps", "ServiceAccount": "serviceaccounts",
           # the policy translation and shims a continuous run applies
           "CiliumNetworkPolicy": "ciliumnetworkpolicies",
           "CiliumClusterwideNetworkPolicy": "ciliumclusterwidenetworkpolicies",
           "CiliumCIDRGroup": "ciliumcidrgroups",
           # the routing hand-over's Cilium BGP and LB IPAM objects
           "CiliumBGPClusterConfig": "ciliumbgpclusterconfigs", "CiliumBGPPeerConfig": "ciliumbgppeerconfigs",
           "CiliumBGPAdvertisement": "ciliumbgpadvertisements",
           "CiliumLoadBalancerIPPool": "ciliumloadbalancerippools"}


def api_path(api_version: str, plural: str, namespace: str | None, name: str | None = None) -> str:
    """The API path of a resource (``v1``: the core group) or, with ``name``, of one object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{base}{ns}/{plural}" + (f"/{name}" if name else "")


def object_path(manifest: dict[str, Any]) -> str:
    """The API path of a manifest's object (kinds in ``PLURALS``)."""
    kind, meta = manifest["kind"], manifest["metadata"]
    if kind not in PLURALS:
        raise ValueError(f"apply_object does not know the plural of kind {kind}")
    return api_path(manifest["apiVersion"], PLURALS[kind], meta.get("namespace"), meta["name"])


def contains(current: Any, wanted: Any) -> bool:
    """True when every key/value of ``wanted`` is present in ``current`` (lists compared item-wise)."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(k in current and contains(current[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and \
            all(contains(c, w) for c, w in zip(current, wanted, strict=True))
    return bool(current == wanted)


class KubeCluster(KubeReads, RoutingReads):
    """``ClusterPort`` implementation over the official client. Reads live in ``KubeReads``."""

    def __init__(self, api: kubernetes.client.ApiClient, *, field_manager: str = "migrator",
                 watch_timeout_seconds: int = 60,
                 request_timeout: float | tuple[float, float] = (5.0, 30.0)) -> None:
        self.api = api
        self.server = str(getattr(api.configuration, "host", "") or "")
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.coordination = kubernetes.client.CoordinationV1Api(api)
        self.networking = kubernetes.client.NetworkingV1Api(api)
        self.extensions = kubernetes.client.ApiextensionsV1Api(api)
        self.version_api = kubernetes.client.VersionApi(api)
        self.field_manager = field_manager
        self.cache: WatchCache | None = None
        self.scope: WatchScope | None = None
        self._watch_timeout = watch_timeout_seconds
        self.request_timeout = request_timeout

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Raw:
        """Call a typed client function and return the JSON body, errors mapped."""
        with translate(what, self.server):
            return read_json(fn(*args, _preload_content=False,
                                _request_timeout=self.request_timeout, **kwargs))

    def _core_request(self, method: str, ref: ObjectRef, *, body: Raw | None = None,
                      query: list[tuple[str, Any]] | None = None) -> Raw:
        """A request on any core/v1 resource (used for generic deletion and listing)."""
        path = api_path(ref.version, ref.plural, ref.namespace, ref.name)
        text = self._raw_request(method, path, what=f"{method.lower()} {ref}", body=body, query=query)
        return json.loads(text) if text else {}

    def _raw_request(self, method: str, path: str, *, what: str, body: Raw | None = None,
                     query: list[tuple[str, Any]] | None = None, content_type: str = "application/json",
                     accept: str = "application/json") -> str:
        """One request on an API path; the body as text, errors mapped."""
        with translate(what, self.server):
            params = self.api.param_serialize(method=method, resource_path=path,
                                              query_params=query or [], body=body,
                                              header_params={"Accept": accept, "Content-Type": content_type},
                                              auth_settings=["BearerToken"])
            response = self.api.call_api(*params, _request_timeout=self.request_timeout)
            response.read()
            if not 200 <= response.status <= 299:
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            data = response.data or b""
            return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None,
                        **kwargs: Any) -> KubeCluster:
        return cls(load_api_client(kubeconfig, context), **kwargs)

    # -- cache ---------------------------------------------------------------------------------
    def start_watching(self, scope: WatchScope) -> None:
        if self.cache is not None:
            return
        cache = WatchCache(watch_timeout_seconds=self._watch_timeout)
        at = self.server
        cache.add(_Source("nodes", self.core.list_node, server=at), convert.node_facts)
        cache.add(_Source("pods", self.core.list_pod_for_all_namespaces, server=at), convert.pod_facts,
                  indexes={"node": lambda p: p.node, "namespace": lambda p: p.namespace,
                           "unready": lambda p: p.namespace if p.unready else None})
        cache.add(_Source("pdbs", self.policy.list_pod_disruption_budget_for_all_namespaces, server=at),
                  convert.pdb_facts)
        cache.add(_Source("daemonsets", self.apps.list_namespaced_daemon_set,
                          scope.agent_namespace, server=at), convert.daemonset_info)
        if scope.node_config_version:
            cache.add(_Source("nodeconfigs", self.custom.list_namespaced_custom_object, CNC_GROUP,
                              scope.node_config_version, scope.node_config_namespace, CNC_PLURAL,
                              server=at),
                      convert.node_config_facts)
        cache.start()
        self.cache, self.scope = cache, scope
        log.info("cache.started", kinds=5 if scope.node_config_version else 4)

    def wait_for_change(self, timeout: float) -> bool:
        if self.cache is None:
            raise ClusterError("wait_for_change needs start_watching first")
        return self.cache.wait_for_change(timeout)

    def close(self) -> None:
        if self.cache is not None:
            self.cache.stop()
        self.cache = None

    # -- node writes ---------------------------------------------------------------------------
    def cordon_node(self, name: str) -> bool:
        return self._set_unschedulable(name, True)

    def uncordon_node(self, name: str) -> bool:
        return self._set_unschedulable(name, False)

    def _set_unschedulable(self, name: str, value: bool) -> bool:
        node = self._node_raw(name)
        if bool((node.get("spec") or {}).get("unschedulable")) == value:
            return False
        self._call(f"patch node {name}", self.core.patch_node, name,
                   {"spec": {"unschedulable": value}}, _content_type=MERGE)
        log.info("node.cordon" if value else "node.uncordon", node=name)
        return True

    def set_node_taint(self, name: str, key: str, effect: str, present: bool) -> bool:
        """Add or remove one taint without clobbering others: a merge patch of the whole list
        carrying the resourceVersion it was computed from (409: the copy was behind, so compute
        again from a newer one)."""
        node = self._node_raw(name)
        for _ in range(10):
            taints = list((node.get("spec") or {}).get("taints") or [])
            has = any(t.get("key") == key and t.get("effect") == effect for t in taints)
            if has == present:
                return False
            wanted = ([*taints, {"key": key, "value": "true", "effect": effect}] if present else
                      [t for t in taints if not (t.get("key") == key and t.get("effect") == effect)])
            patch = {"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                     "spec": {"taints": wanted or None}}
            try:
                self._call(f"patch node {name}", self.core.patch_node, name, patch, _content_type=MERGE)
                log.info("node.taint" if present else "node.untaint", node=name, key=key, effect=effect)
                return True
            except Conflict:
                node = self._node_past(name, node)
        raise Conflict(f"node {name} kept changing while setting taint {key}:{effect}", status=409)

    def _node_past(self, name: str, stale: Raw) -> Raw:
        """A newer copy of the node than ``stale``: the watch cache's once it delivers one
        (usually within milliseconds, and no request); without a cache, the server's."""
        cache = self._cached("nodes")
        if cache is not None:
            rv = (stale.get("metadata") or {}).get("resourceVersion") or ""
            entry = cache.wait_past("nodes", None, name, rv, NEWER_WAIT)
            if entry is not None:
                return entry.raw
        return self._node_raw(name)

    def set_node_label(self, name: str, key: str, value: str | None) -> bool:
        labels = (self._node_raw(name).get("metadata") or {}).get("labels") or {}
        if labels.get(key) == value:
            return False
        self._call(f"label node {name}", self.core.patch_node, name,
                   {"metadata": {"labels": {key: value}}}, _content_type=MERGE)
        return True

    def emit_node_event(self, node: str, *, reason: str, message: str,
                        type: str = "Normal", namespace: str = "default") -> None:
        uid = (self._node_raw(node, missing_ok=True).get("metadata") or {}).get("uid")
        body = convert.node_event(node, reason=reason, message=cap_message(message, 1024),
                                  type=type, namespace=namespace, when=datetime.now(UTC), uid=uid)
        self._call(f"create event for node {node}", self.core.create_namespaced_event,
                   namespace, body)

    # -- pod writes ----------------------------------------------------------------------------
    def evict_pod(self, namespace: str, name: str, *, uid: str | None = None,
                  grace_period_seconds: int | None = None) -> bool:
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": convert.delete_options(uid, grace_period_seconds)}
        return self._gone_ok(namespace, name, uid, f"evict pod {namespace}/{name}",
                             self.core.create_namespaced_pod_eviction, name, namespace, body)

    def delete_pod(self, namespace: str, name: str, *, uid: str | None = None,
                   grace_period_seconds: int | None = None) -> bool:
        return self._gone_ok(namespace, name, uid, f"delete pod {namespace}/{name}",
                             self.core.delete_namespaced_pod, name, namespace,
                             body=convert.delete_options(uid, grace_period_seconds))

    def _gone_ok(self, namespace: str, name: str, uid: str | None, what: str, fn: Any,
                 *args: Any, **kwargs: Any) -> bool:
        """Remove a pod; a 404, or a 409 because the pod with ``uid`` was replaced, is False."""
        try:
            self._call(what, fn, *args, **kwargs)
            return True
        except NotFound:
            return False
        except Conflict:
            current = self._read_pod_raw(namespace, name)
            if current is None or (uid and (current.get("metadata") or {}).get("uid") != uid):
                return False
            raise

    def create_pod(self, request: PodRequest) -> PodFacts:
        raw = self._call(f"create pod {request.namespace}/{request.name}",
                         self.core.create_namespaced_pod, request.namespace,
                         convert.pod_manifest(request))
        return convert.pod_facts(raw)

    # -- Cilium / ConfigMaps / DaemonSets ------------------------------------------------------
    def ensure_node_config(self, namespace: str, name: str, *, version: str,
                           node_selector: dict[str, str], defaults: dict[str, str]) -> bool:
        spec = {"nodeSelector": {"matchLabels": dict(node_selector)}, "defaults": dict(defaults)}
        where = f"CiliumNodeConfig {namespace}/{name}"
        current = self._get_custom(CNC_GROUP, version, CNC_PLURAL, name, namespace)
        if current is None:
            body = {"apiVersion": f"{CNC_GROUP}/{version}", "kind": "CiliumNodeConfig",
                    "metadata": {"name": name, "namespace": namespace,
                                 "labels": {"app.kubernetes.io/managed-by": "migrator"}},
                    "spec": spec}
            self._call(f"create {where}", self.custom.create_namespaced_custom_object,
                       CNC_GROUP, version, namespace, CNC_PLURAL, body)
            return True
        if current.get("spec") == spec:
            return False
        self._call(f"replace {where}", self.custom.replace_namespaced_custom_object,
                   CNC_GROUP, version, namespace, CNC_PLURAL, name, {**current, "spec": spec})
        return True

    def delete_node_config(self, namespace: str, name: str, *, version: str) -> bool:
        return self.delete_object(ObjectRef(CNC_GROUP, version, CNC_PLURAL, name, namespace))

    def create_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                         labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
                "data": dict(data)}
        raw = self._call(f"create configmap {namespace}/{name}",
                         self.core.create_namespaced_config_map, namespace, body)
        return convert.configmap_snapshot(raw)

    def replace_configmap(self, namespace: str, name: str, data: dict[str, str], *,
                          resource_version: str,
                          labels: dict[str, str] | None = None) -> ConfigMapSnapshot:
        body = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": namespace,
                             "resourceVersion": resource_version, "labels": dict(labels or {})},
                "data": dict(data)}
        raw = self._call(f"replace configmap {namespace}/{name}",
                         self.core.replace_namespaced_config_map, name, namespace, body)
        return convert.configmap_snapshot(raw)

    def patch_configmap(self, namespace: str, name: str, data: dict[str, str]) -> bool:
        current = self._read_configmap_raw(namespace, name)
        if current is None:
            raise NotFound(f"configmap {namespace}/{name} not found", status=404)
        have = current.get("data") or {}
        if all(have.get(k) == v for k, v in data.items()):
            return False
        self._call(f"patch configmap {namespace}/{name}", self.core.patch_namespaced_config_map,
                   name, namespace, {"data": dict(data)}, _content_type=MERGE)
        return True

    def restart_daemonset(self, namespace: str, name: str, *, restarted_at: datetime) -> bool:
        stamp = restarted_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        info = self.get_daemonset(namespace, name)
        if info is None:
            raise NotFound(f"daemonset {namespace}/{name} not found", status=404)
        if info.restarted_at == stamp:
            return False
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: stamp}}}}}
        self._call(f"restart daemonset {namespace}/{name}", self.apps.patch_namespaced_daemon_set,
                   name, namespace, patch, _content_type=STRATEGIC)
        return True

    # -- generic objects -----------------------------------------------------------------------
    def apply_object(self, manifest: dict[str, Any]) -> bool:
        """Create ``manifest``, or merge-patch its labels and spec when the served object differs."""
        path = object_path(manifest)
        meta = manifest["metadata"]
        what = f"{manifest['kind']} {meta.get('namespace', '')}/{meta['name']}".replace(" /", " ")
        try:
            current = json.loads(self._raw_request("GET", path, what=f"get {what}"))
        except NotFound:
            collection = path.rsplit("/", 1)[0]
            try:
                self._raw_request("POST", collection, what=f"create {what}", body=manifest,
                                  query=[("fieldManager", self.field_manager)])
                return True
            except AlreadyExists:
                return False
        wanted: dict[str, Any] = {"metadata": {"labels": meta.get("labels") or {}}}
        wanted.update({k: manifest[k] for k in ("spec", "specs") if k in manifest})
        if contains(current, wanted):
            return False
        self._raw_request("PATCH", path, what=f"patch {what}", body=wanted, content_type=MERGE,
                          query=[("fieldManager", self.field_manager)])
        return True

    def patch_object(self, api_version: str, plural: str, namespace: str | None, name: str,
                     patch: dict[str, Any]) -> bool:
        """JSON merge patch of any object; False when the object already holds what the patch says."""
        path = api_path(api_version, plural, namespace, name)
        what = f"{plural} {namespace + '/' if namespace else ''}{name}"
        current = json.loads(self._raw_request("GET", path, what=f"get {what}"))
        if holds(current, patch):
            return False
        self._raw_request("PATCH", path, what=f"patch {what}", body=patch, content_type=MERGE,
                          query=[("fieldManager", self.field_manager)])
        return True

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: dict[str, str]) -> str:
        """GET through the pods/proxy subresource; the answer's body as text."""
        target = f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/{path.lstrip('/')}"
        return self._raw_request("GET", target, what=f"proxy {namespace}/{pod}:{port}/{path.lstrip('/')}",
                                 query=sorted(query.items()), accept="*/*")

    # -- generic deletion ----------------------------------------------------------------------
    def delete_object(self, ref: ObjectRef) -> bool:
        body = {"propagationPolicy": "Background"}
        try:
            if not ref.group:
                self._core_request("DELETE", ref, body=body)
            elif ref.namespace:
                self._call(f"delete {ref}", self.custom.delete_namespaced_custom_object, ref.group,
                           ref.version, ref.namespace, ref.plural, ref.name, body=body)
            else:
                self._call(f"delete {ref}", self.custom.delete_cluster_custom_object, ref.group,
                           ref.version, ref.plural, ref.name, body=body)
            return True
        except NotFound:
            return False

    # -- lease -----------------------------------------------------------------------------------
    def create_lease(self, record: LeaseRecord) -> LeaseRecord:
        raw = self._call(f"create lease {record.namespace}/{record.name}",
                         self.coordination.create_namespaced_lease, record.namespace,
                         convert.lease_manifest(record))
        return convert.lease_record(raw)

    def replace_lease(self, record: LeaseRecord) -> LeaseRecord:
        raw = self._call(f"replace lease {record.namespace}/{record.name}",
                         self.coordination.replace_namespaced_lease, record.name, record.namespace,
                         convert.lease_manifest(record))
        return convert.lease_record(raw)

    def delete_lease(self, namespace: str, name: str, *, resource_version: str) -> bool:
        try:
            self._call(f"delete lease {namespace}/{name}", self.coordination.delete_namespaced_lease,
                       name, namespace, body={"preconditions": {"resourceVersion": resource_version}})
            return True
        except NotFound:
            return False

    def watch_lease(self, namespace: str, name: str, *, resource_version: str,
                    timeout: float) -> _LeaseWatch:
        """One WATCH on the Lease's collection narrowed to it by ``metadata.name``, as client-go's
        informers follow a single object; it is open (headers received) when this returns."""
        what = f"watch lease {namespace}/{name}"
        seconds = max(1, math.ceil(timeout))
        timeouts = self.request_timeout
        connect = timeouts[0] if isinstance(timeouts, tuple) else timeouts
        with translate(what, self.server):
            response = self.coordination.list_namespaced_lease(
                namespace, field_selector=f"metadata.name={name}", watch=True,
                resource_version=resource_version, timeout_seconds=seconds, allow_watch_bookmarks=True,
                _preload_content=False, _request_timeout=(connect, seconds + 30))
        return _LeaseWatch(response, what=what, server=self.server, timeout=timeout)
