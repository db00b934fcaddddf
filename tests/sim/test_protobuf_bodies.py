"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``), as kubectl's typed clients send
them: ``k8s\\x00`` then a ``runtime.Unknown`` wrapping the object's message.

The messages are built here with the protobuf classes of the shipped descriptors, field by field, next
to the JSON a client would send for the same object; the sim must store the same thing for both. The
JSON forms of the apimachinery types follow their Go marshallers (metav1.Time: RFC 3339 in seconds;
MicroTime: microseconds; IntOrString: the int or the string; Quantity: its string; FieldsV1 and
RawExtension: their raw JSON; Go's ``time.Duration.String``). Errors follow kube-apiserver v1.32:
a media type the server cannot decode is a 415 ``UnsupportedMediaType`` Status whose message is
negotiation's ``the body of the request was in an unknown format - accepted media types include:
...``; a custom resource's protobuf body passes negotiation (the CRD handler lists protobuf for the
meta types it returns) and fails decoding: the versioning codec decodes into a fresh ``Unstructured``
without a kind, which the CRD handler's typer refuses (``Object 'Kind' is missing in 'object has no
kind field '``, crdserverscheme), a 400 from handlers/rest.go ``transformDecodeError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from migrator.sim import patch, protobody
from migrator.sim.apiserver import ApiServer
from migrator.sim.registry import install_api, load_crds
from migrator.sim.store import Store
from tests.sim.test_http_wire import AUTH, Conn, request

PB = "Content-Type: application/vnd.kubernetes.protobuf"
JSON = "Content-Type: application/json"
KUBECTL_ACCEPT = "Accept: application/vnd.kubernetes.protobuf, application/json"


def cls(name: str) -> Any:
    found = protobody.message_class(name)
    assert found is not None, name
    return found


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    unknown = cls("k8s.io.apimachinery.pkg.runtime.Unknown")()
    unknown.typeMeta.apiVersion = api_version
    unknown.typeMeta.kind = kind
    unknown.raw = raw
    return protobody.MAGIC + unknown.SerializeToString()


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    store = Store()
    install_api(store, crds=load_crds())
    server = ApiServer(store, token=AUTH.split()[-1]).start()
    yield server
    server.stop()


def post(api: ApiServer, path: str, body: bytes, *headers: str) -> tuple[int, dict[str, str], Any]:
    conn = Conn(api)
    try:
        code, head, data = conn.ask(request("POST", path, AUTH, *headers, body=body))
    finally:
        conn.close()
    return code, head, json.loads(data)


SERVER_SET = ("uid", "resourceVersion", "creationTimestamp")


def comparable(obj: dict[str, Any], name: str) -> Any:
    """An object less what the server sets for each write alone, its name replaced by NAME."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in SERVER_SET}
    meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in meta.get("managedFields", [])]
    return json.loads(json.dumps({**obj, "metadata": meta}).replace(name, "NAME"))


# ------------------------------------------------------------------ the same object, JSON and protobuf
def configmap(name: str) -> tuple[dict[str, Any], bytes]:
    as_json = {"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "labels": {"tier": "db"}, "annotations": {"a": "1"}},
               "data": {"run.json": '{"x": 1}'}, "binaryData": {"blob": "AAEC/w=="}, "immutable": False}
    msg = cls("k8s.io.api.core.v1.ConfigMap")()
    msg.metadata.name = name
    msg.metadata.labels["tier"] = "db"
    msg.metadata.annotations["a"] = "1"
    msg.data["run.json"] = '{"x": 1}'
    msg.binaryData["blob"] = b"\x00\x01\x02\xff"
    msg.immutable = False   # a pointer field set to false stays false
    return as_json, envelope("v1", "ConfigMap", msg.SerializeToString())


def secret(name: str) -> tuple[dict[str, Any], bytes]:
    as_json = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
               "data": {"k": "dg=="}}
    msg = cls("k8s.io.api.core.v1.Secret")()
    msg.metadata.name = name
    msg.type = "Opaque"
    msg.data["k"] = b"v"
    return as_json, envelope("v1", "Secret", msg.SerializeToString())


def deployment(name: str) -> tuple[dict[str, Any], bytes]:
    as_json = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": {
        "replicas": 0,
        "selector": {"matchLabels": {"app": "web"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
            "volumes": [{"name": "cache", "emptyDir": {"sizeLimit": "1Gi"}},
                        {"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}],
            "containers": [{
                "name": "web", "image": "nginx:1.27",
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}}],
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
            }]}}}}
    msg = cls("k8s.io.api.apps.v1.Deployment")()
    msg.metadata.name = name
    spec = msg.spec
    spec.replicas = 0
    spec.selector.matchLabels["app"] = "web"
    spec.strategy.type = "RollingUpdate"
    spec.strategy.rollingUpdate.maxSurge.type = 1
    spec.strategy.rollingUpdate.maxSurge.strVal = "25%"
    spec.strategy.rollingUpdate.maxUnavailable.type = 0
    spec.strategy.rollingUpdate.maxUnavailable.intVal = 1
    spec.template.metadata.labels["app"] = "web"
    pod = spec.template.spec
    cache = pod.volumes.add()
    cache.name = "cache"
    cache.volumeSource.emptyDir.sizeLimit.string = "1Gi"
    cfg = pod.volumes.add()
    cfg.name = "cfg"
    cfg.volumeSource.configMap.localObjectReference.name = "settings"
    cfg.volumeSource.configMap.defaultMode = 420
    c = pod.containers.add()
    c.name, c.image = "web", "nginx:1.27"
    port = c.ports.add()
    port.containerPort, port.protocol = 8080, "TCP"
    env = c.env.add()
    env.name = "MODE"
    env.valueFrom.configMapKeyRef.localObjectReference.name = "settings"
    env.valueFrom.configMapKeyRef.key = "mode"
    c.resources.requests["cpu"].string = "100m"
    c.resources.requests["memory"].string = "64Mi"
    c.readinessProbe.handler.httpGet.path = "/healthz"
    c.readinessProbe.handler.httpGet.port.type = 1
    c.readinessProbe.handler.httpGet.port.strVal = "http"
    c.readinessProbe.periodSeconds = 5
    return as_json, envelope("apps/v1", "Deployment", msg.SerializeToString())


def namespace(name: str) -> tuple[dict[str, Any], bytes]:
    msg = cls("k8s.io.api.core.v1.Namespace")()
    msg.metadata.name = name
    msg.metadata.creationTimestamp.SetInParent()   # what Go writes for a zero time.Time
    # Go's marshaller writes every non-pointer string, set or not: "" is Go's unset
    msg.metadata.generateName = msg.metadata.namespace = msg.metadata.uid = msg.metadata.resourceVersion = ""
    msg.status.phase = ""
    msg.spec.SetInParent()
    return ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "creationTimestamp": None},
             "spec": {}, "status": {}}, envelope("v1", "Namespace", msg.SerializeToString()))


CASES = {
    "configmap": ("/api/v1/namespaces/default/configmaps", "configmaps", configmap),
    "secret": ("/api/v1/namespaces/default/secrets", "secrets", secret),
    "deployment": ("/apis/apps/v1/namespaces/default/deployments", "apps/deployments", deployment),
    "namespace": ("/api/v1/namespaces", "namespaces", namespace),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_protobuf_body_is_stored_as_the_same_object_sent_as_json(api, case):
    path, resource, build = CASES[case]
    as_json, _ = build(f"{case}-json")
    _, as_pb = build(f"{case}-pb")
    code, _, _ = post(api, path, json.dumps(as_json).encode(), JSON)
    assert code == 201
    code, head, answer = post(api, path, as_pb, PB, KUBECTL_ACCEPT)
    assert code == 201, answer
    assert head["content-type"] == "application/json"   # answered in JSON although protobuf came first
    ns = None if resource == "namespaces" else "default"
    from_json = api.store.get(resource, ns, f"{case}-json")
    from_pb = api.store.get(resource, ns, f"{case}-pb")
    assert answer["metadata"]["name"] == f"{case}-pb"
    assert comparable(from_pb, f"{case}-pb") == comparable(from_json, f"{case}-json")


def test_the_decoded_deployment_is_the_json_a_client_would_send():
    as_json, as_pb = deployment("d")
    assert protobody.decode(as_pb) == as_json


def test_apimachinery_types_take_their_go_json_form():
    meta = cls("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta")()
    meta.name = "e"
    meta.creationTimestamp.seconds = 1_700_000_000
    meta.creationTimestamp.nanos = 500   # metav1.Time keeps whole seconds
    entry = meta.managedFields.add()
    entry.manager, entry.operation, entry.fieldsType = "kubectl", "Update", "FieldsV1"
    entry.fieldsV1.Raw = b'{"f:data":{".":{}}}'
    entry.time.seconds = 0
    event = cls("k8s.io.api.core.v1.Event")()
    event.metadata.CopyFrom(meta)
    event.eventTime.seconds = 1_700_000_000
    event.eventTime.nanos = 123_456_789
    event.count = 3
    assert protobody.to_json(event) == {
        "metadata": {"name": "e", "creationTimestamp": "2023-11-14T22:13:20Z",
                     "managedFields": [{"manager": "kubectl", "operation": "Update", "fieldsType": "FieldsV1",
                                        "fieldsV1": {"f:data": {".": {}}}, "time": "1970-01-01T00:00:00Z"}]},
        "eventTime": "2023-11-14T22:13:20.123456Z", "count": 3}
    revision = cls("k8s.io.api.apps.v1.ControllerRevision")()
    revision.revision = 2**40   # int64: a JSON number, not a string
    revision.data.raw = b'{"spec":{"template":{"metadata":{"labels":{"a":"b"}}}}}'
    assert protobody.to_json(revision) == {
        "data": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}}, "revision": 2**40}


@pytest.mark.parametrize("ns, text", [(0, "0s"), (1, "1ns"), (1_500, "1.5µs"), (1_500_000, "1.5ms"),
                                      (4_000_000_000, "4s"), (90_000_000_000, "1m30s"),
                                      (4_518_918_273_645, "1h15m18.918273645s"), (-2_000_000_000, "-2s")])
def test_durations_print_as_go_prints_them(ns, text):
    assert protobody.go_duration(ns) == text


def test_the_inline_fields_are_the_ones_go_embeds():
    """Go's ``json:",inline"`` embeddings among the shipped types, read off the OpenAPI definitions."""
    found = set()
    for name in ("Volume", "PersistentVolumeSpec", "Probe", "EphemeralContainer", "ConfigMapKeySelector",
                 "SecretKeySelector", "ConfigMapEnvSource", "SecretEnvSource", "ConfigMapVolumeSource",
                 "ConfigMapProjection", "SecretProjection", "Container", "PodSpec", "ObjectReference"):
        desc = cls(f"k8s.io.api.core.v1.{name}").DESCRIPTOR
        found |= {f"{name}.{f}" for f in protobody._inline_fields(desc)}
    assert found == {"Volume.volumeSource", "PersistentVolumeSpec.persistentVolumeSource", "Probe.handler",
                     "EphemeralContainer.ephemeralContainerCommon", "ConfigMapKeySelector.localObjectReference",
                     "SecretKeySelector.localObjectReference", "ConfigMapEnvSource.localObjectReference",
                     "SecretEnvSource.localObjectReference", "ConfigMapVolumeSource.localObjectReference",
                     "ConfigMapProjection.localObjectReference", "SecretProjection.localObjectReference"}


def test_every_shipped_message_has_the_fields_of_its_v1_32_definition():
    """The descriptors against the OpenAPI definitions of the version the sim serves: a field the
    descriptors lack would make kubectl's bodies carrying it a 415; one the definitions lack would
    be stored although kube-apiserver does not know it."""
    pool = protobody._pool()
    differences = {}
    for fdp in descriptor_pb2.FileDescriptorSet.FromString(
            resources.files("migrator.sim").joinpath("kubeproto/descriptors.binpb").read_bytes()).file:
        for desc in pool.FindFileByName(fdp.name).message_types_by_name.values():
            definition = patch.definitions().get("io.k8s." + desc.full_name.removeprefix("k8s.io."))
            if definition is None or desc.full_name in PROTO_SHAPED:
                continue
            names = set()
            for f in desc.fields:
                names |= ({g.name for g in f.message_type.fields} if f.name in protobody._inline_fields(desc)
                          else {protobody.json_names(desc).get(f.name, f.name)})
            # apiVersion and kind of a top-level object travel in runtime.Unknown, not in its message
            props = set(definition.get("properties", {})) - ({"apiVersion", "kind"} - {f.name for f in desc.fields})
            if names != props:
                differences[desc.full_name] = (sorted(names - props), sorted(props - names))
    assert differences == {"k8s.io.api.apps.v1.StatefulSetSpec": ([], ["ordinals"])}


def test_a_field_named_after_its_go_field_takes_its_json_name():
    """go-to-protobuf names a field by its ``protobuf`` tag; BoundObjectReference's UID is ``uID`` there
    and ``uid`` in JSON (k8s.io/api authentication/v1 types.go). The proto field of that name lies
    in the descriptors, and the decoded TokenRequest has the JSON name."""
    desc = cls("k8s.io.api.authentication.v1.BoundObjectReference").DESCRIPTOR
    assert (desc.fields_by_name["uID"].number, protobody.json_names(desc)) == (4, {"uID": "uid"})
    msg = cls("k8s.io.api.authentication.v1.TokenRequest")()
    msg.spec.audiences.append("https://kubernetes.default.svc.cluster.local")
    msg.spec.expirationSeconds = 3600
    ref = msg.spec.boundObjectRef
    ref.kind, ref.apiVersion, ref.name, ref.uID = "Pod", "v1", "web", "0d1c0ffee"
    assert protobody.decode(envelope("authentication.k8s.io/v1", "TokenRequest", msg.SerializeToString())) == {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": 3600,
                 "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "0d1c0ffee"}}}


#: apimachinery types whose JSON form is not their message (converted by ``protobody._SPECIAL``)
PROTO_SHAPED = {"k8s.io.apimachinery.pkg.apis.meta.v1." + n for n in ("Time", "MicroTime", "Duration", "FieldsV1")} | {
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString", "k8s.io.apimachinery.pkg.api.resource.Quantity",
    "k8s.io.apimachinery.pkg.runtime.RawExtension"}


def status_of(code: int, answer: dict[str, Any]) -> tuple[int, str, str]:
    assert answer["kind"] == "Status" and answer["status"] == "Failure" and answer["code"] == code
    return code, answer["reason"], answer["message"]


UNSUPPORTED = ("the body of the request was in an unknown format - accepted media types include: "
               "application/json")


def test_a_group_version_without_descriptors_is_a_415(api):
    pdb = ('{"apiVersion":"policy/v1","kind":"PodDisruptionBudget","metadata":{"name":"p"},'
           '"spec":{"minAvailable":1}}')
    unknown = cls("k8s.io.apimachinery.pkg.runtime.Unknown")()
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = "policy/v1", "PodDisruptionBudget"
    unknown.raw = b"\x0a\x03\x0a\x01p"   # metadata{name: "p"} as policy/v1 would encode it
    code, _, answer = post(api, "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                           protobody.MAGIC + unknown.SerializeToString(), PB)
    assert status_of(code, answer) == (415, "UnsupportedMediaType", UNSUPPORTED)
    assert api.store.try_get("policy/poddisruptionbudgets", "default", "p") is None
    code, _, _ = post(api, "/apis/policy/v1/namespaces/default/poddisruptionbudgets", pdb.encode(), JSON)
    assert code == 201   # the same object as JSON is accepted


def test_a_field_newer_than_the_descriptors_is_a_415_not_a_silent_loss(api):
    msg = cls("k8s.io.api.core.v1.ConfigMap")()
    msg.metadata.name = "newer"
    raw = msg.SerializeToString() + b"\xa2\x06\x01x"   # field 100, length-delimited: unknown to v1.32
    code, _, answer = post(api, "/api/v1/namespaces/default/configmaps", envelope("v1", "ConfigMap", raw), PB)
    assert status_of(code, answer) == (415, "UnsupportedMediaType", UNSUPPORTED)
    assert "newer than" in answer["details"]["causes"][0]["message"]
    assert api.store.try_get("configmaps", "default", "newer") is None


def test_a_custom_resources_protobuf_body_is_a_400_from_the_decoder(api):
    body = envelope("cilium.io/v2", "CiliumNodeConfig", b"\x0a\x03\x0a\x01c")
    code, _, answer = post(api, "/apis/cilium.io/v2/namespaces/kube-system/ciliumnodeconfigs", body, PB)
    assert status_of(code, answer) == (
        400, "BadRequest", 'CiliumNodeConfig in version "v2" cannot be handled as a CiliumNodeConfig: '
        "Object 'Kind' is missing in 'object has no kind field '")
    assert api.store.try_get("cilium.io/ciliumnodeconfigs", "kube-system", "c") is None


def test_a_body_without_the_protobuf_prefix_is_a_400(api):
    code, _, answer = post(api, "/api/v1/namespaces/default/configmaps", b'{"kind":"ConfigMap"}', PB)
    assert status_of(code, answer)[:2] == (400, "BadRequest")
    assert "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]" in \
        answer["message"]
