"""agnhost ``netexec`` through the API server's pods/proxy, answered from the network model.

The probe image ``registry.k8s.io/e2e-test-images/agnhost`` run with ``netexec`` serves HTTP
(``--http-port``, default 8080) and UDP (``--udp-port``, default 8081; a UDP dial to it answers
the hostname); a pod with several netexec containers serves each one's ports. HTTP: ``/hostname`` (its hostname: the pod name, or the node name
for a hostNetwork pod), ``/healthz``, and ``/dial?host=H&port=P&request=hostname&protocol=http|udp&tries=N``
which connects N times from *this* pod to H:P and answers
``{"responses": [...], "errors": [...]}``. ``host`` may be an IP or a DNS name resolved through
kube-dns (``svc.ns.svc.cluster.local``, ``svc.ns``, ``svc``), which needs kube-dns reachable.
As in agnhost, the name is resolved once to check it (a failure is a 400), then again by every
try (each try is a new HTTP client); each lookup asks kube-dns up to ``RESOLVER_ATTEMPTS``
times, every query a new flow that kube-proxy may send to another backend.
Pods that do not run netexec answer nothing: the proxy reports the connection refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrator.sim.fleet import NodeFleet

Obj = dict[str, Any]
IMAGE = "registry.k8s.io/e2e-test-images/agnhost"
RESOLVER_ATTEMPTS = 2   # resolv.conf's default ``options attempts``


def netexec_ports(pod: Obj) -> list[tuple[int, str]]:
    """``(port, protocol)`` every agnhost netexec container of ``pod`` serves: its ``--http-port``
    (TCP, default 8080) and its ``--udp-port`` (UDP, default 8081; ``-1`` serves none, and no
    port is -1), in container order."""
    out: list[tuple[int, str]] = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        if not str(c.get("image", "")).startswith(IMAGE):
            continue
        args = [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
        if "netexec" not in args:
            continue
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        out += [(int(flags.get("http-port", 8080)), "tcp"), (int(flags.get("udp-port", 8081)), "udp")]
    return out


def netexec_port(pod: Obj) -> int | None:
    """The HTTP port of ``pod``'s first netexec container, else None (not a netexec pod)."""
    return next((port for port, proto in netexec_ports(pod) if proto == "tcp"), None)


def hostname_of(pod: Obj) -> str:
    if (pod.get("spec") or {}).get("hostNetwork"):
        return pod["spec"].get("nodeName", "")
    return pod["metadata"]["name"]


class Netexec:
    """Answers proxied requests to simulated netexec pods."""

    def __init__(self, fleet: NodeFleet) -> None:
        self.fleet = fleet

    def proxy(self, pod: Obj, port: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        served = netexec_port(pod)
        wanted = int(port) if port and port.isdigit() else served
        if served is None or (wanted, "tcp") not in netexec_ports(pod):
            return 503, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
                         "reason": "ServiceUnavailable",
                         "message": f"error trying to reach service: dial tcp {pod['status'].get('podIP')}:{wanted}: "
                                    "connect: connection refused"}
        path = path.rstrip("/") or "/"
        if path in ("/hostname", "/"):
            return 200, hostname_of(pod)
        if path == "/healthz":
            return 200, "ok"
        if path == "/dial":
            return self.dial(pod, {k: v[-1] for k, v in query.items()})
        return 404, "404 page not found"

    def _resolve(self, pod: Obj, name: str) -> tuple[str | None, str | None]:
        """(ip, error) for a DNS name, through kube-dns as seen from ``pod``."""
        parts = name.rstrip(".").split(".")
        svc_name = parts[0]
        ns = parts[1] if len(parts) > 1 and parts[1] != "svc" else pod["metadata"].get("namespace", "default")
        net = self.fleet.network
        dns = self.fleet.store.try_get("services", "kube-system", "kube-dns")
        if dns is None:
            return None, f"lookup {name}: no kube-dns service"
        for _ in range(RESOLVER_ATTEMPTS):
            ok, why = net.reachable(pod["status"]["podIP"], dns["spec"]["clusterIP"], 53, "udp")
            if ok:
                break
        if not ok:
            return None, f"lookup {name} on {dns['spec']['clusterIP']}:53: read udp: i/o timeout ({why})"
        svc = self.fleet.store.try_get("services", ns, svc_name)
        if svc is None:
            return None, f"lookup {name} on {dns['spec']['clusterIP']}:53: no such host"
        return svc["spec"].get("clusterIP"), None

    def dial(self, pod: Obj, q: dict[str, str]) -> tuple[int, Any]:
        host, protocol = q.get("host", ""), q.get("protocol", "http")
        try:
            port, tries = int(q.get("port", "0")), max(1, int(q.get("tries", "1")))
        except ValueError:
            return 400, f"port or tries parameter is invalid: {q.get('port')!r} {q.get('tries')!r}"
        by_name = bool(host) and not host.replace(".", "").isdigit()
        if by_name:
            _, err = self._resolve(pod, host)
            if err:
                return 400, f"host and/or port param are invalid. {err}"
        responses: list[str] = []
        errors: list[str] = []
        net = self.fleet.network
        src_ip = pod["status"]["podIP"]
        url = f"http://{host}:{port}/hostname"
        for _ in range(tries):
            ip: str | None = host
            if by_name:
                ip, err = self._resolve(pod, host)
                if err:
                    errors.append(f'Get "{url}": dial tcp: {err}')
                    continue
            proto = "udp" if protocol == "udp" else "tcp"
            ok, why = net.reachable(src_ip, ip or "", port, proto)
            if not ok:
                errors.append(f'Get "{url}": dial {proto} {ip}:{port}: i/o timeout ({why})')
                continue
            target = self._answering(ip or "", port, proto)
            if target is None and self._serves(ip or "", port):
                responses.append(self._serves(ip or "", port) or "")
            elif target is None:
                errors.append(f'Get "{url}": dial {proto} {ip}:{port}: connect: connection refused')
            else:
                responses.append(hostname_of(target) if q.get("request", "hostname") == "hostname" else q.get("request", ""))
        return 200, {"responses": responses, "errors": errors}

    def _serves(self, ip: str, port: int) -> str | None:
        """The answer of a non-netexec server at ip:port (the API server, a pod's declared port)."""
        net = self.fleet.network
        if net.endpoint(ip).network == "service":
            svc = net.service_for(ip)
            for bip, bport, _ in (net.backends(svc, port) if svc else []):
                answer = self._serves(bip, bport)
                if answer:
                    return answer
            return None
        if self.fleet.is_apiserver(ip, port):
            return "kube-apiserver"
        pod = net.endpoint(ip).pod
        if pod is not None and any(p.get("containerPort") == port for c in pod["spec"].get("containers") or []
                                   for p in c.get("ports") or []):
            return f"404 page not found ({pod['metadata']['name']})"
        return None

    def _answering(self, ip: str, port: int, proto: str = "tcp") -> Obj | None:
        """The netexec pod that answers at ip:port (through a Service if ip is a ClusterIP)."""
        net = self.fleet.network
        ep = net.endpoint(ip)
        if ep.network == "service":
            svc = net.service_for(ip)
            backends = net.backends(svc, port) if svc else []
            for _ip, bport, bpod in backends:
                if (bport, proto) in netexec_ports(bpod):
                    return bpod
            return None
        if ep.pod is not None and (port, proto) in netexec_ports(ep.pod):
            return ep.pod
        if ep.network == "host":   # a hostNetwork netexec pod on that node
            for p in self.fleet.store.list("pods", index=("nodeName", ep.node or "")):
                if (p.get("spec") or {}).get("hostNetwork") and (port, proto) in netexec_ports(p) \
                        and (p.get("status") or {}).get("phase") == "Running":
                    return p
        return None
