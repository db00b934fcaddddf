"""kubectl's authorization and token commands against the simulated cluster: ``kubectl auth can-i``
(a SelfSubjectAccessReview; ``--list``: a SelfSubjectRulesReview), ``kubectl create token`` (a
TokenRequest, the ``token`` subresource of a ServiceAccount) and ``kubectl auth whoami`` (a
SelfSubjectReview). kubectl 1.32 sends each of these bodies as protobuf.

Expected output is kubectl's (k8s.io/kubectl pkg/cmd/auth/cani.go: ``yes``, or ``no`` with exit code
1, ``--list`` as a table of the compacted rules; pkg/cmd/create/create_token.go: the bare token, no
newline; pkg/cmd/auth/whoami.go: an ATTRIBUTE/VALUE table) over kube-apiserver's answers: RBAC's
bootstrap policy (cluster-admin for system:masters; system:basic-user's self reviews for every
authenticated user) and a ServiceAccount's user name and groups (``system:serviceaccount:NS:NAME``;
``system:serviceaccounts``, ``system:serviceaccounts:NS``, ``system:authenticated``).
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_kubectl

pytestmark = pytest.mark.kubectl

ROBOT = "system:serviceaccount:team:robot"


@pytest.fixture
def team(sim, kubeconfig):
    """Namespace ``team`` with ServiceAccount ``robot``, which may get and list its pods."""
    for args in (["create", "namespace", "team"], ["-n", "team", "create", "serviceaccount", "robot"],
                 ["-n", "team", "create", "role", "pod-reader", "--verb=get,list", "--resource=pods"],
                 ["-n", "team", "create", "rolebinding", "robot-reads-pods", "--role=pod-reader",
                  "--serviceaccount=team:robot"]):
        got = run_kubectl(kubeconfig, *args)
        assert got.returncode == 0, got.stderr
    return kubeconfig


def rows(table: str) -> list[list[str]]:
    """A kubectl table's rows, cell by cell (columns are at least three spaces apart)."""
    return [re.split(r"\s{3,}", line) for line in table.splitlines()]


def test_can_i_answers_yes_or_no_for_the_user_and_for_whom_it_impersonates(team):
    for verb, resource in (("get", "pods"), ("delete", "nodes")):   # the admin: system:masters
        got = run_kubectl(team, "auth", "can-i", verb, resource)
        assert (got.returncode, got.stdout) == (0, "yes\n"), got.stderr
    for verb, expected in (("list", (0, "yes\n")), ("get", (0, "yes\n")), ("delete", (1, "no\n"))):
        got = run_kubectl(team, "-n", "team", "auth", "can-i", verb, "pods", "--as", ROBOT)
        assert (got.returncode, got.stdout) == expected, (verb, got.stderr)
    got = run_kubectl(team, "-n", "shop", "auth", "can-i", "get", "pods", "--as", ROBOT)
    assert (got.returncode, got.stdout) == (1, "no\n")   # a Role binds in its own namespace only
    got = run_kubectl(team, "auth", "can-i", "create", "selfsubjectaccessreviews.authorization.k8s.io", "--as", ROBOT)
    assert (got.returncode, got.stdout) == (0, "yes\n")   # system:basic-user
    got = run_kubectl(team, "auth", "can-i", "get", "/healthz", "--as", ROBOT)
    assert (got.returncode, got.stdout) == (0, "yes\n")   # system:public-info-viewer
    got = run_kubectl(team, "auth", "can-i", "get", "/metrics", "--as", ROBOT)
    assert (got.returncode, got.stdout) == (1, "no\n")


def test_can_i_list_prints_the_rules_that_apply_in_the_namespace(team):
    got = run_kubectl(team, "-n", "team", "auth", "can-i", "--list", "--as", ROBOT)
    assert got.returncode == 0, got.stderr
    table = rows(got.stdout)
    assert table[0] == ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
    assert ["pods", "[]", "[]", "[get list]"] in table
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in table
    assert ["", "[/healthz]", "[]", "[get]"] in table
    assert not [r for r in table if r[0].startswith("*")]
    got = run_kubectl(team, "-n", "shop", "auth", "can-i", "--list", "--as", ROBOT)
    assert ["pods", "[]", "[]", "[get list]"] not in rows(got.stdout)
    admin = rows(run_kubectl(team, "auth", "can-i", "--list").stdout)
    assert ["*.*", "[]", "[]", "[*]"] in admin and ["", "[*]", "[]", "[*]"] in admin   # cluster-admin


def test_create_token_prints_a_token_that_authenticates_as_the_service_account(team):
    got = run_kubectl(team, "-n", "team", "create", "token", "robot")
    assert got.returncode == 0, got.stderr
    token = got.stdout
    assert token and token.strip() == token and " " not in token
    got = run_kubectl(team, "--token", token, "auth", "whoami")
    assert got.returncode == 0, got.stderr
    table = rows(got.stdout)
    assert table[0] == ["ATTRIBUTE", "VALUE"]
    assert ["Username", ROBOT] in table
    assert ["Groups", "[system:serviceaccounts system:serviceaccounts:team system:authenticated]"] in table
    got = run_kubectl(team, "--token", token, "-n", "team", "get", "pods")
    assert (got.returncode, got.stderr.strip()) == (0, "No resources found in team namespace.")
    got = run_kubectl(team, "--token", token, "-n", "team", "delete", "pod", "x")
    assert got.stderr.strip() == (f'Error from server (Forbidden): pods "x" is forbidden: User "{ROBOT}" cannot '
                                  'delete resource "pods" in API group "" in the namespace "team"')
    got = run_kubectl(team, "-n", "team", "create", "token", "nobody")
    assert (got.returncode, got.stderr.strip()) == (
        1, 'error: failed to create token: serviceaccounts "nobody" not found')
