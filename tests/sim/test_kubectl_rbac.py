"""kubectl under RBAC against the simulated cluster: a ServiceAccount's kubeconfig (``migrator sim
serve --kubeconfig-for``), ``kubectl apply`` of a binding, impersonation with ``--as``, and the
Forbidden errors kubectl prints.

Expected output is kubectl's and kube-apiserver's: kubectl prints an API Status error as
``Error from server (<reason>): <message>`` (``cmdutil.StandardErrorMessage``) and exits 1, and an
Unauthorized met in discovery as ``error: You must be logged in to the server (the server has asked
for the client to provide credentials)``; the messages are
kube-apiserver's ``responsewriters.forbiddenMessage`` inside ``apierrors.NewForbidden``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import run_kubectl
from tests.sim.test_sim_serve import migrator, read_line

pytestmark = pytest.mark.kubectl

ROBOT = "system:serviceaccount:kube-system:robot"
BINDING = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: robot-reads-nodes
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: node-reader}
subjects: [{kind: ServiceAccount, name: robot, namespace: kube-system}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: node-reader
rules: [{apiGroups: [""], resources: [nodes], verbs: [get, list, watch]}]
"""


def test_a_service_account_kubeconfig_from_sim_serve_works_once_the_account_exists_and_is_bound(tmp_path):
    admin, robot = tmp_path / "admin", tmp_path / "robot"
    proc = migrator("sim", "serve", "--nodes", "2", "--kubeconfig", str(admin),
                    "--kubeconfig-for", "kube-system/robot", str(robot), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert "sim cluster ready" in read_line(proc, timeout=60)
        got = run_kubectl(robot, "get", "nodes")
        assert (got.returncode, got.stderr.strip().splitlines()[-1]) == (
            1, "error: You must be logged in to the server (the server has asked for the client to provide credentials)")
        account = tmp_path / "sa.yaml"
        account.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: robot, namespace: kube-system}\n")
        assert run_kubectl(admin, "apply", "-f", str(account)).returncode == 0
        got = run_kubectl(robot, "get", "nodes")
        assert got.returncode == 1
        assert got.stderr.strip() == (f'Error from server (Forbidden): nodes is forbidden: User "{ROBOT}" cannot '
                                      'list resource "nodes" in API group "" at the cluster scope')
        (tmp_path / "binding.yaml").write_text(BINDING)
        assert run_kubectl(admin, "apply", "-f", str(tmp_path / "binding.yaml")).returncode == 0
        got = run_kubectl(robot, "get", "nodes", "-o", "name")
        assert (got.returncode, got.stdout.split()) == (0, ["node/cp-1", "node/node-1"]), got.stderr
        got = run_kubectl(robot, "-n", "kube-system", "delete", "pod", "anything")
        assert got.stderr.strip() == (f'Error from server (Forbidden): pods "anything" is forbidden: User "{ROBOT}" '
                                      'cannot delete resource "pods" in API group "" in the namespace "kube-system"')
        got = run_kubectl(robot, "get", "--raw", "/metrics")
        assert got.stderr.strip() == f'Error from server (Forbidden): forbidden: User "{ROBOT}" cannot get path "/metrics"'
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_bad_kubeconfig_for_is_refused_with_exit_2(tmp_path):
    got = subprocess.run([sys.executable, "-m", "migrator", "sim", "serve", "--kubeconfig", str(tmp_path / "a"),
                          "--kubeconfig-for", "robot", str(tmp_path / "b")], capture_output=True, text=True, timeout=60)
    assert got.returncode == 2
    assert got.stderr.strip() == ("migrator sim serve: --kubeconfig-for 'robot': expected NAMESPACE/SERVICEACCOUNT "
                                  "PATH")


def test_impersonation_with_as_and_who_may_use_it(sim, kubeconfig, tmp_path):
    sim.store.create("serviceaccounts", {"metadata": {"name": "robot", "namespace": "kube-system"}})
    got = run_kubectl(kubeconfig, "-n", "kube-system", "get", "pods", "--as", ROBOT)
    assert got.returncode == 1
    assert got.stderr.strip() == (f'Error from server (Forbidden): pods is forbidden: User "{ROBOT}" cannot list '
                                  'resource "pods" in API group "" in the namespace "kube-system"')
    got = run_kubectl(kubeconfig, "get", "nodes", "--as", "alice", "--as-group", "system:masters")
    assert got.returncode == 0, got.stderr
    robot = sim.write_kubeconfig(tmp_path / "robot", service_account="kube-system/robot")
    got = run_kubectl(robot, "create", "clusterrolebinding", "mine", "--clusterrole", "cluster-admin",
                      "--serviceaccount", "kube-system:robot")
    assert got.returncode == 1
    assert got.stderr.strip() == ('error: failed to create clusterrolebinding: clusterrolebindings.rbac.authorization.k8s.io '
                                  f'is forbidden: User "{ROBOT}" cannot create resource "clusterrolebindings" in API '
                                  'group "rbac.authorization.k8s.io" at the cluster scope')
    got = run_kubectl(robot, "get", "nodes", "--as", "alice")
    assert got.returncode == 1
    assert got.stderr.strip() == (f'Error from server (Forbidden): users "alice" is forbidden: User "{ROBOT}" '
                                  'cannot impersonate resource "users" in API group "" at the cluster scope')
