"""What the CLI says when the input or the cluster is not as expected: one line naming the API
server, context and user and what to check, with the documented exit code; and ``pause``/``abort``
saying what is true about whether a process will honour them (the Lease)."""

from __future__ import annotations

import socket
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

from migrator.cluster.errors import Forbidden, Unavailable
from migrator.target import Target, explain, read_target
from tests.chaos.incli import run_cli
from tests.chaos.test_bad_inputs import EXAMPLE, write_plan

TARGET = Target("https://10.0.0.1:6443", "prod", "alice", "kubeconfig /home/alice/.kube/config")


def chained(error: Exception, cause: Exception) -> Exception:
    try:
        raise error from cause
    except Exception as exc:  # noqa: BLE001 - building the chain the adapter builds
        return exc


def test_wrong_credentials_name_server_context_and_user() -> None:
    text, code = explain(Forbidden("Unauthorized", status=401), TARGET)
    assert code == 2 and "\n" not in text
    assert text.startswith("API server https://10.0.0.1:6443 (context prod, user alice, kubeconfig "
                           "/home/alice/.kube/config) rejected the credentials of user alice (Unauthorized)")
    assert "check that user's token or client certificate" in text


def test_no_permission_points_at_the_clusterrole() -> None:
    text, code = explain(Forbidden('configmaps "x" is forbidden: User "alice" cannot get', status=403), TARGET)
    assert code == 2 and "`migrator manifests`" in text and "context prod" in text


def test_a_refused_request_names_the_rule_to_add() -> None:
    message = ('pods "web-1" is forbidden: User "system:serviceaccount:kube-system:migrator-x" cannot create '
               'resource "pods/eviction" in API group "" in the namespace "shop"')
    text, code = explain(Forbidden(message, status=403), TARGET)
    assert code == 2 and "\n" not in text and message in text
    assert 'add the rule {apiGroups: [""], resources: [pods/eviction], verbs: [create]} (drain and recycle' in text
    text, _ = explain(Forbidden('leases.coordination.k8s.io "x" is forbidden: User "u" cannot update resource '
                                '"leases" in API group "coordination.k8s.io" in the namespace "kube-system"',
                                status=403), TARGET)
    assert 'add the rule {apiGroups: ["coordination.k8s.io"], resources: [leases], verbs: [update]}' in text


def test_refused_connection_names_the_server_and_what_to_check() -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"))
    text, code = explain(chained(Unavailable("get configmap: MaxRetryError: HTTPSConnectionPool(host=…"), refused),
                         TARGET)
    assert code == 1 and "\n" not in text
    assert text == ("cannot reach the API server https://10.0.0.1:6443 (context prod, user alice, kubeconfig "
                    "/home/alice/.kube/config): connection refused; check that the API server is running and that "
                    "the kubeconfig's server address and port are right")


def test_tls_failure_is_bad_input() -> None:
    bad = urllib3.exceptions.SSLError(ssl.SSLCertVerificationError("CERTIFICATE_VERIFY_FAILED"))
    text, code = explain(chained(Unavailable("get configmap: SSLError"), bad), TARGET)
    assert code == 2 and "TLS verification failed; check the kubeconfig's certificate-authority" in text


def test_a_server_error_is_halted_not_invalid() -> None:
    text, code = explain(Unavailable("etcdserver: request timed out", status=503), TARGET)
    assert code == 1 and "could not answer (etcdserver: request timed out); try again" in text


def kubeconfig(path: Path, contexts: dict[str, tuple[str, str]], current: str | None) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": n, "cluster": {"server": s}} for n, (s, _) in contexts.items()],
        "users": [{"name": u, "user": {"token": "t"}} for _, (_, u) in contexts.items()],
        "contexts": [{"name": n, "context": {"cluster": n, "user": u}} for n, (_, u) in contexts.items()],
    }
    if current:
        doc["current-context"] = current
    path.write_text(yaml.safe_dump(doc))
    return path


def test_target_follows_context_and_kubeconfig_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = kubeconfig(tmp_path / "a", {"staging": ("https://s:6443", "bob")}, None)
    b = kubeconfig(tmp_path / "b", {"prod": ("https://p:6443", "alice")}, "prod")
    monkeypatch.setenv("KUBECONFIG", f"{a}:{b}")
    assert read_target(None, None) == Target("https://p:6443", "prod", "alice", f"kubeconfig {a}:{b}")
    assert read_target(None, "staging").server == "https://s:6443"
    with pytest.raises(Exception, match="has no context 'dev'; pass --context with one of: staging, prod"):
        read_target(None, "dev")
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert read_target(None, None).server == "https://10.96.0.1:443"


# ------------------------------------------------------------------ against the simulated cluster
def set_lease(sim: Any, holder: str, renewed: datetime) -> None:
    stamp = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sim.store.create("coordination.k8s.io/leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"namespace": "kube-system", "name": "cni-migration-lock"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 30, "acquireTime": stamp, "renewTime": stamp}})


def test_pause_and_abort_say_whether_a_process_will_honour_them(sim: Any, tmp_path: Path) -> None:
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    plan = str(write_plan({"set": {"cilium.tunnel_port": 4789}}, tmp_path / "plan.yaml"))  # halts at preflight
    code, text = run_cli(["run", "--yes", "--plan", plan, "--kubeconfig", kc, "--output-dir", str(tmp_path)])
    assert code == 1, text[-2000:]
    code, text = run_cli(["pause", "--plan", plan, "--kubeconfig", kc])
    assert code == 0
    assert ("pause recorded in configmap kube-system/cni-migration-state, but no process is running this migration "
            "(lease kube-system/cni-migration-lock is free: no process holds it)") in text
    assert "`migrator resume` clears the pause and continues" in text
    set_lease(sim, "other-host/99/abc", datetime.now(UTC) - timedelta(minutes=10))
    code, text = run_cli(["abort", "--plan", plan, "--kubeconfig", kc])
    assert code == 0
    assert "abort recorded" in text and "held by other-host/99/abc, stale since" in text
    assert "The next `migrator run` or `migrator resume` starts no new node" in text
    sim.store.delete("coordination.k8s.io/leases", "kube-system", "cni-migration-lock")
    set_lease(sim, "other-host/99/abc", datetime.now(UTC))
    code, text = run_cli(["pause", "--plan", plan, "--kubeconfig", kc])
    assert code == 0
    assert "the running migration (other-host/99/abc, lease kube-system/cni-migration-lock renewed" in text
    code, text = run_cli(["status", "--plan", plan, "--kubeconfig", kc])
    assert code == 0 and "lock: lease kube-system/cni-migration-lock held by other-host/99/abc" in text
    assert "(live: within its 30s duration)" in text and "requested: pause" in text


def test_metrics_port_in_use_and_unwritable_output_are_exit_2_before_any_write(sim: Any, tmp_path: Path) -> None:
    kc = str(sim.write_kubeconfig(tmp_path / "kc"))
    plan = str(EXAMPLE)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, text = run_cli(["run", "--yes", "--plan", plan, "--kubeconfig", kc, "--metrics-port", str(port),
                              "--output-dir", str(tmp_path)])
    assert code == 2 and f"--metrics-port {port}: cannot serve metrics there" in text and "pass a free port" in text
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "values-final.yaml").mkdir()
    code, text = run_cli(["finalize", "--yes", "--plan", plan, "--kubeconfig", kc,
                          "--output-dir", str(tmp_path / "out")])
    assert code == 2 and "finalize.helm_values_path" in text and "is a directory" in text
    assert not [e for e in sim.requests.entries if e.is_write and e.user_agent.startswith("migrator/")]


def test_ctrl_c_outside_a_run_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    import migrator.commands

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(migrator.commands, "cmd_preflight", interrupted)
    code, text = run_cli(["preflight", "--plan", str(EXAMPLE)])
    assert code == 1 and text == "migrator preflight: interrupted; `migrator status` shows where the run stands\n"
