"""kubectl's typed ``create`` commands against the sim: they send their objects as protobuf
(``Content-Type: application/vnd.kubernetes.protobuf``, ``Accept: application/vnd.kubernetes.protobuf,
application/json``) and read the JSON answers.

Expected outputs from kubectl's source (kubectl/pkg/cmd/create): each prints ``<resource>[.<group>]/<name>
created`` and exits 0. On a 415, client-go 1.32 falls back to JSON only for a CBOR request (behind
the ClientsAllowCBOR gate, rest/client.go ``UnsupportedMediaType``): for protobuf it returns the
Status, and ``kubectl create`` prints ``error: failed to create <what>: <message>`` and exits 1.
"""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.kubectl


def test_create_namespace_configmap_secret_deployment_and_rbac(sim, kubectl):
    commands = {
        ("create", "namespace", "x"): "namespace/x created",
        ("create", "configmap", "c", "--from-literal=a=b"): "configmap/c created",
        ("create", "secret", "generic", "s", "--from-literal=k=v"): "secret/s created",
        ("create", "deployment", "d", "--image=nginx"): "deployment.apps/d created",
        ("create", "deployment", "none", "--image=nginx", "--replicas=0"): "deployment.apps/none created",
        ("create", "clusterrole", "reader", "--verb=get,list", "--resource=pods"):
            "clusterrole.rbac.authorization.k8s.io/reader created",
        ("create", "rolebinding", "read", "--clusterrole=reader", "--serviceaccount=default:app"):
            "rolebinding.rbac.authorization.k8s.io/read created",
    }
    for args, printed in commands.items():
        done = kubectl(*args)
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, printed, ""), args
    store = sim.store
    assert store.get("namespaces", None, "x")["status"]["phase"] == "Active"
    assert store.get("configmaps", "default", "c")["data"] == {"a": "b"}
    assert store.get("secrets", "default", "s")["data"] == {"k": base64.b64encode(b"v").decode()}
    d = store.get("apps/deployments", "default", "d")
    assert d["spec"]["replicas"] == 1 and d["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    assert [(c["name"], c["image"]) for c in d["spec"]["template"]["spec"]["containers"]] == [("nginx", "nginx")]
    assert d["metadata"]["labels"] == {"app": "d"} and "uid" in d["metadata"] and d["metadata"]["uid"]
    assert store.get("apps/deployments", "default", "none")["spec"]["replicas"] == 0   # an explicit zero stays
    role = store.get("rbac.authorization.k8s.io/clusterroles", None, "reader")
    assert role["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]
    binding = store.get("rbac.authorization.k8s.io/rolebindings", "default", "read")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "app", "namespace": "default"}]
    listed = kubectl("get", "configmap", "c", "-o", "jsonpath={.data.a}")
    assert (listed.returncode, listed.stdout) == (0, "b")


def test_a_kind_the_sim_cannot_decode_fails_with_the_415_message(sim, kubectl):
    done = kubectl("create", "job", "j", "--image=busybox")
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: failed to create job: the body of the request was in an unknown "
                                   "format - accepted media types include: application/json")
    assert sim.store.try_get("batch/jobs", "default", "j") is None
