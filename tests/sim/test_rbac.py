"""RBAC in the simulated API server, over real HTTPS: who may do what, and the 403s it answers.

Expected messages are kube-apiserver's (``responsewriters.forbiddenMessage`` wrapped by
``apierrors.NewForbidden``: ``<resource>[.<group>] ["<name>"] is forbidden: User "U" cannot VERB
resource "R" in API group "G" in the namespace "NS"`` / ``at the cluster scope``; ``forbidden: User
"U" cannot VERB path "/P"`` for a non-resource URL). Rule matching follows ``rbac/v1`` helpers.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator

import pytest

from migrator.sim.apiserver import ApiServer
from migrator.sim.registry import install_api
from migrator.sim.store import Store

ADMIN = "admin-token"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
SA_USER = "system:serviceaccount:team:robot"


@pytest.fixture
def api() -> Iterator[ApiServer]:
    store = Store()
    install_api(store)
    for ns in ("team", "other"):
        store.create("namespaces", {"metadata": {"name": ns}})
    store.create("serviceaccounts", {"metadata": {"name": "robot", "namespace": "team"}})
    store.create("pods", {"metadata": {"name": "web", "namespace": "team"},
                          "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
    server = ApiServer(store, token=ADMIN).start()
    yield server
    server.stop()


def call(api: ApiServer, method: str, path: str, body: object = None, *, token: str = ADMIN,
         headers: list[tuple[str, str]] = (), content_type: str = "application/json") -> tuple[int, dict]:
    ctx = ssl.create_default_context(cadata=(api.ca_pem or b"").decode())
    host, port = api.url.removeprefix("https://").split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
    try:
        conn.putrequest(method, path)
        data = json.dumps(body).encode() if body is not None else b""
        for name, value in [("Authorization", f"Bearer {token}"), ("Content-Type", content_type),
                            ("Content-Length", str(len(data))), *headers]:
            conn.putheader(name, value)
        conn.endheaders(data)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}
    finally:
        conn.close()


def token_for(api: ApiServer, namespace: str = "team", name: str = "robot") -> str:
    code, answer = call(api, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", {"spec": {}})
    assert code == 201, answer
    return answer["status"]["token"]


def bind(api: ApiServer, rules: list[dict], *, namespace: str | None = None, subject: dict | None = None,
         name: str = "grant") -> None:
    subject = subject or {"kind": "ServiceAccount", "name": "robot", "namespace": "team"}
    kind = "Role" if namespace else "ClusterRole"
    where = f"{RBAC}/namespaces/{namespace}" if namespace else RBAC
    assert call(api, "POST", f"{where}/{kind.lower()}s", {"metadata": {"name": name}, "rules": rules})[0] == 201
    assert call(api, "POST", f"{where}/{kind.lower()}bindings", {
        "metadata": {"name": name}, "subjects": [subject],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}})[0] == 201


def test_a_service_account_with_no_binding_gets_kube_apiservers_403s(api):
    token = token_for(api)
    code, status = call(api, "GET", "/api/v1/nodes", token=token)
    assert code == 403
    assert status["message"] == ('nodes is forbidden: User "system:serviceaccount:team:robot" cannot list resource '
                                 '"nodes" in API group "" at the cluster scope')
    assert status["reason"] == "Forbidden" and status["details"] == {"kind": "nodes"}
    code, status = call(api, "PATCH", "/api/v1/namespaces/team/pods/web", {}, token=token,
                        content_type="application/merge-patch+json")
    assert (code, status["message"]) == (403, f'pods "web" is forbidden: User "{SA_USER}" cannot patch resource '
                                               '"pods" in API group "" in the namespace "team"')
    assert status["details"] == {"name": "web", "kind": "pods"}
    code, status = call(api, "POST", "/api/v1/namespaces/team/pods/web/eviction", {}, token=token)
    assert status["message"] == (f'pods "web" is forbidden: User "{SA_USER}" cannot create resource '
                                 '"pods/eviction" in API group "" in the namespace "team"')
    code, status = call(api, "GET", "/apis/apps/v1/namespaces/team/deployments?watch=true", token=token)
    assert status["message"] == (f'deployments.apps is forbidden: User "{SA_USER}" cannot watch resource '
                                 '"deployments" in API group "apps" in the namespace "team"')
    assert status["details"] == {"group": "apps", "kind": "deployments"}
    code, status = call(api, "DELETE", "/api/v1/namespaces/team", token=token)
    assert status["message"] == (f'namespaces "team" is forbidden: User "{SA_USER}" cannot delete resource '
                                 '"namespaces" in API group "" in the namespace "team"')
    code, status = call(api, "DELETE", "/api/v1/namespaces/team/configmaps", token=token)
    assert "cannot deletecollection resource" in status["message"]
    assert [e.code for e in api.requests.entries if e.user == SA_USER] == [403] * 6


def test_discovery_is_every_authenticated_users_and_other_paths_are_not(api):
    token = token_for(api)
    for path in ("/version", "/api", "/apis", "/api/v1", "/apis/apps/v1", "/openapi/v3"):
        assert call(api, "GET", path, token=token)[0] == 200, path
    code, status = call(api, "POST", "/version", {}, token=token)
    assert (code, status["message"]) == (403, f'forbidden: User "{SA_USER}" cannot post path "/version"')
    assert call(api, "GET", "/version", token="nobody")[0] == 401


def test_cluster_role_rules_match_verbs_groups_resources_subresources_and_names(api):
    token = token_for(api)
    bind(api, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["web"]},
               {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]},
               {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["list"]},
               {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}])
    assert call(api, "GET", "/api/v1/namespaces/team/pods/web", token=token)[0] == 200
    assert call(api, "GET", "/api/v1/namespaces/team/pods/other", token=token)[0] == 403
    assert call(api, "GET", "/api/v1/namespaces/team/pods", token=token)[0] == 403   # names: never a list
    assert call(api, "GET", "/api/v1/namespaces/team/pods?fieldSelector=metadata.name%3Dweb", token=token)[0] == 403
    assert call(api, "GET", "/api/v1/namespaces/team/pods/web/status", token=token)[0] == 200
    assert call(api, "GET", "/apis/apps/v1/daemonsets", token=token)[0] == 200
    assert call(api, "GET", "/apis/apps/v1/namespaces/team/daemonsets/x", token=token)[0] == 403
    assert call(api, "POST", "/api/v1/namespaces/other/configmaps", {"metadata": {"name": "c"}}, token=token)[0] == 201


def test_a_role_binding_grants_in_its_namespace_only_and_unqualified_accounts_are_its_own(api):
    token = token_for(api)
    bind(api, [{"apiGroups": [""], "resources": ["configmaps", "namespaces"], "verbs": ["get", "list"]}],
         namespace="team", subject={"kind": "ServiceAccount", "name": "robot"})
    assert call(api, "GET", "/api/v1/namespaces/team/configmaps", token=token)[0] == 200
    assert call(api, "GET", "/api/v1/namespaces/team", token=token)[0] == 200    # a namespace is in itself
    assert call(api, "GET", "/api/v1/namespaces/other/configmaps", token=token)[0] == 403
    assert call(api, "GET", "/api/v1/configmaps", token=token)[0] == 403          # all namespaces: cluster scope


def test_group_subjects_and_user_subjects(api):
    token = token_for(api)
    bind(api, [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
         subject={"kind": "Group", "name": "system:serviceaccounts:team"})
    assert call(api, "GET", "/api/v1/nodes", token=token)[0] == 200
    alice = api.add_user("alice")
    assert call(api, "GET", "/api/v1/nodes", token=alice)[0] == 403
    bind(api, [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}],
         subject={"kind": "User", "name": "alice"}, name="alice")
    assert call(api, "GET", "/api/v1/nodes", token=alice)[0] == 200
    assert call(api, "GET", "/api/v1/nodes", token=api.add_user("root", ("system:masters",)))[0] == 200


def test_rbac_changes_take_effect_at_once_and_a_missing_role_is_named(api):
    token = token_for(api)
    assert call(api, "POST", f"{RBAC}/clusterrolebindings", {
        "metadata": {"name": "dangling"}, "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "team"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"}})[0] == 201
    code, status = call(api, "GET", "/api/v1/nodes", token=token)
    assert status["message"].endswith('cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "reader" not found')
    assert call(api, "POST", f"{RBAC}/clusterroles", {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]})[0] == 201
    assert call(api, "GET", "/api/v1/nodes", token=token)[0] == 200
    assert call(api, "DELETE", f"{RBAC}/clusterrolebindings/dangling")[0] == 200
    assert call(api, "GET", "/api/v1/nodes", token=token)[0] == 403


def test_an_aggregated_cluster_role_takes_the_rules_of_the_roles_it_selects(api):
    token = token_for(api)
    assert call(api, "POST", f"{RBAC}/clusterroles", {
        "metadata": {"name": "nodes-part", "labels": {"agg": "yes"}},
        "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]})[0] == 201
    bind(api, [], name="aggregate")
    assert call(api, "GET", "/api/v1/nodes", token=token)[0] == 403
    assert call(api, "PUT", f"{RBAC}/clusterroles/aggregate", {
        "metadata": {"name": "aggregate"}, "rules": [],
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "yes"}}]}})[0] == 200
    assert call(api, "GET", "/api/v1/nodes", token=token)[0] == 200


def test_token_request_issues_tokens_valid_while_the_account_exists(api):
    code, answer = call(api, "POST", "/api/v1/namespaces/team/serviceaccounts/robot/token",
                        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    assert code == 201 and answer["kind"] == "TokenRequest" and answer["spec"]["expirationSeconds"] == 3600
    token = answer["status"]["token"]
    assert call(api, "GET", "/api", token=token)[0] == 200
    assert call(api, "POST", "/api/v1/namespaces/team/serviceaccounts/ghost/token", {"spec": {}})[0] == 404
    code, status = call(api, "POST", "/api/v1/namespaces/team/serviceaccounts/robot/token",
                        {"spec": {"expirationSeconds": 10}})
    assert code == 422 and "may not specify a duration less than 10 minutes" in status["message"]
    assert call(api, "POST", "/api/v1/namespaces/team/serviceaccounts/robot/token", {"spec": {}},
                token=token)[0] == 403
    assert call(api, "DELETE", "/api/v1/namespaces/team/serviceaccounts/robot")[0] == 200
    assert call(api, "GET", "/api", token=token)[0] == 401


def test_impersonation_needs_the_impersonate_verb(api):
    as_robot = [("Impersonate-User", SA_USER)]
    code, status = call(api, "GET", "/api/v1/nodes", headers=as_robot)
    assert code == 403 and status["message"].startswith(f'nodes is forbidden: User "{SA_USER}" cannot list')
    code, answer = call(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {}, headers=as_robot)
    assert answer["status"]["userInfo"] == {"username": SA_USER, "groups": [
        "system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"]}
    alice = api.add_user("alice")
    code, status = call(api, "GET", "/api/v1/nodes", token=alice, headers=[("Impersonate-User", "bob")])
    assert (code, status["message"]) == (403, 'users "bob" is forbidden: User "alice" cannot impersonate resource '
                                               '"users" in API group "" at the cluster scope')
    code, status = call(api, "GET", "/api/v1/nodes", token=alice, headers=as_robot)
    assert status["message"] == ('serviceaccounts "robot" is forbidden: User "alice" cannot impersonate resource '
                                 '"serviceaccounts" in API group "" in the namespace "team"')
    code, answer = call(api, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {},
                        headers=[("Impersonate-User", "bob"), ("Impersonate-Group", "g1"), ("Impersonate-Group", "g2")])
    assert answer["status"]["userInfo"]["groups"] == ["g1", "g2", "system:authenticated"]


def test_self_access_and_rules_reviews_answer_for_the_caller(api):
    token = token_for(api)
    bind(api, [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}], namespace="team")
    review = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"

    def can(verb: str, resource: str, namespace: str, **more) -> bool:
        code, answer = call(api, "POST", review, {"spec": {"resourceAttributes": {
            "verb": verb, "resource": resource, "namespace": namespace, **more}}}, token=token)
        assert code == 201 and answer["kind"] == "SelfSubjectAccessReview", answer
        return answer["status"]["allowed"]

    assert can("list", "pods", "team") and not can("list", "pods", "other") and not can("delete", "pods", "team")
    code, answer = call(api, "POST", review, {"spec": {"nonResourceAttributes": {"verb": "get", "path": "/apis"}}},
                        token=token)
    assert answer["status"]["allowed"] is True
    assert call(api, "POST", review, {"spec": {}}, token=token)[0] == 422
    code, answer = call(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                        {"spec": {"namespace": "team"}}, token=token)
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]} in answer["status"]["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} \
        in answer["status"]["nonResourceRules"]
    assert answer["status"]["incomplete"] is False


def test_discovery_advertises_the_reviews_and_token_requests(api):
    _, authz = call(api, "GET", "/apis/authorization.k8s.io/v1")
    assert {(r["name"], tuple(r["verbs"])) for r in authz["resources"]} == {
        ("selfsubjectaccessreviews", ("create",)), ("selfsubjectrulesreviews", ("create",))}
    _, core = call(api, "GET", "/api/v1")
    token = next(r for r in core["resources"] if r["name"] == "serviceaccounts/token")
    assert token["verbs"] == ["create"] and (token["group"], token["kind"]) == ("authentication.k8s.io", "TokenRequest")
