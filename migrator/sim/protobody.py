"""Protobuf request bodies (``application/vnd.kubernetes.protobuf``), read as kube-apiserver reads them.

kubectl's typed clients (``kubectl create namespace|configmap|secret|deployment``) send their objects
in Kubernetes' protobuf encoding: the four bytes ``k8s\\x00``, then a ``runtime.Unknown`` message whose
``typeMeta`` names apiVersion and kind and whose ``raw`` holds the object's own message. This module
turns such a body into the object's JSON form, so that it takes the same path as a JSON body
(validation, fieldValidation, admission, storage).

The messages are described by the Kubernetes API's ``generated.proto`` files, shipped here as a
``FileDescriptorSet`` (``kubeproto/descriptors.binpb``; where it comes from: ``kubeproto/SOURCES.md``)
and decoded by the protobuf library. The JSON form follows the proto/JSON correspondence of the Go
types, generically over the descriptors:

- a field's JSON name is its proto name, save where go-to-protobuf named the field after the Go
  field rather than its JSON tag (authentication/v1 ``BoundObjectReference.uID``, JSON ``uid``): there
  it is the parent's OpenAPI property that differs from the proto name in case alone;
- int64 becomes a JSON number, bytes base64, maps objects;
- the apimachinery types whose JSON form is not their message: ``Time`` (RFC 3339, seconds),
  ``MicroTime`` (RFC 3339, microseconds), ``Duration`` (Go's duration string), ``IntOrString``,
  ``Quantity`` (its string), ``FieldsV1`` and ``RawExtension`` (their raw bytes are JSON);
- a field Go embeds inline (``json:",inline"``: ``Volume.volumeSource``, ``Probe.handler``...) has its
  fields spliced into its parent. The descriptors do not say which; the OpenAPI definitions do: a
  message field that the parent's definition lacks while it has all of the field's own fields.
- a field absent from the wire is absent from the JSON. An empty string on the wire is dropped, as
  Go's ``omitempty`` drops it (the Go marshaller writes every non-pointer string, set or not).

A group-version without descriptors, or a body carrying a field the descriptors do not know (a field
newer than them), cannot be read faithfully and is refused with 415 (``Undecodable``) rather than
stored with fields silently lost.
"""

from __future__ import annotations

import base64
import functools
import json
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from migrator.sim import patch
from migrator.sim.errors import BadRequest, UnsupportedMediaType

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME, _MICROTIME, _DURATION, _FIELDS = (_META + n for n in ("Time", "MicroTime", "Duration", "FieldsV1"))
_INTORSTRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_RAW = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"


class Undecodable(Exception):
    """The body is protobuf the sim has no faithful reading of (answered with 415)."""


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    data = resources.files("migrator.sim").joinpath("kubeproto/descriptors.binpb").read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for f in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(f)
    return pool


def message_class(full_name: str) -> type[Message] | None:
    """The generated class for one message of the shipped descriptors, or None."""
    try:
        return message_factory.GetMessageClass(_pool().FindMessageTypeByName(full_name))
    except KeyError:
        return None


def proto_package(api_version: str) -> str:
    """``k8s.io.api.<group's first label, or core>.<version>``: where k8s.io/api keeps a group-version."""
    group, _, version = api_version.rpartition("/")
    return f"k8s.io.api.{group.split('.')[0] if group else 'core'}.{version}"


def decodable(api_version: str) -> bool:
    """Whether the shipped descriptors cover this built-in group-version."""
    path = proto_package(api_version).removeprefix("k8s.io.").replace(".", "/")
    try:
        _pool().FindFileByName(f"k8s.io/{path}/generated.proto")
    except KeyError:
        return False
    return True


def read(body: bytes, kind: str, custom: bool) -> dict[str, Any]:
    """A create or update body sent as protobuf, for a resource of ``kind`` (``custom``: defined by a
    CRD), in its JSON form; the errors kube-apiserver's handlers answer such a body with.

    kube-apiserver's CRD handler lists protobuf among its media types (for the meta types it returns),
    so a custom resource's protobuf body gets past negotiation and fails in decoding: the versioning
    codec decodes into a fresh, kindless ``Unstructured``, which the CRD typer cannot name (a 400 from
    handlers/rest.go ``transformDecodeError``, not a 415)."""
    try:
        return _read(body, kind, custom)
    except Undecodable as exc:
        accepted = "application/json"
        raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types "
                                   f"include: {accepted}", details={"causes": [{"message": str(exc)}]}) from exc
    except ValueError as exc:
        raise BadRequest(f"the object provided is unrecognized (must be of type {kind}): {exc}") from exc


def _read(body: bytes, kind: str, custom: bool) -> dict[str, Any]:
    envelope = _envelope(body)
    api_version, sent_kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind or kind
    if custom:
        raise BadRequest(f"{sent_kind} in version {json.dumps(api_version.rpartition('/')[2])} cannot be handled "
                         f"as a {kind}: Object 'Kind' is missing in 'object has no kind field '")
    return _object(envelope, api_version, sent_kind)


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf body: ValueError for a body that is not one, ``Undecodable`` for
    one the sim cannot read faithfully."""
    envelope = _envelope(body)
    return _object(envelope, envelope.typeMeta.apiVersion, envelope.typeMeta.kind)


def _envelope(body: bytes) -> Any:
    if not body.startswith(MAGIC):
        raise ValueError(f"provided data does not appear to be a protobuf message, expected prefix "
                         f"[{' '.join(str(b) for b in MAGIC)}]")
    unknown_cls = message_class(_UNKNOWN)
    assert unknown_cls is not None
    try:
        return unknown_cls.FromString(body[len(MAGIC):])
    except DecodeError as exc:
        raise ValueError(f"invalid runtime.Unknown: {exc}") from exc


def _object(envelope: Any, api_version: str, kind: str) -> dict[str, Any]:
    if not kind:
        raise ValueError("Object 'Kind' is missing in the protobuf body")
    cls = message_class(f"{proto_package(api_version)}.{kind}")
    if cls is None:
        raise Undecodable(f"the simulated cluster has no protobuf description of {kind} in "
                          f"{api_version or 'an unnamed version'}: send it as JSON")
    try:
        msg = cls.FromString(envelope.raw)
    except DecodeError as exc:
        raise ValueError(f"invalid {kind}: {exc}") from exc
    clean = cls()
    clean.CopyFrom(msg)
    clean.DiscardUnknownFields()
    if clean.ByteSize() != msg.ByteSize():
        raise Undecodable(f"the {kind} carries fields newer than the simulated cluster's protobuf description "
                          f"of {api_version}: send it as JSON")
    return {"apiVersion": api_version, "kind": kind, **to_json(msg)}


def to_json(msg: Message) -> Any:
    """One message in its Kubernetes JSON form."""
    desc = msg.DESCRIPTOR
    special = _SPECIAL.get(desc.full_name)
    if special is not None:
        return special(msg)
    inline, names = _inline_fields(desc), json_names(desc)
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.type == FieldDescriptor.TYPE_STRING and not fd.is_repeated and value == "":
            continue
        converted = _field(fd, value)
        if fd.name in inline and isinstance(converted, dict):
            out.update(converted)
        else:
            out[names.get(fd.name, fd.name)] = converted
    return out


def _field(fd: FieldDescriptor, value: Any) -> Any:
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        value_fd = fd.message_type.fields_by_name["value"]
        return {k: _scalar(value_fd, v) for k, v in value.items()}
    if fd.is_repeated:
        return [_scalar(fd, v) for v in value]
    return _scalar(fd, value)


def _scalar(fd: FieldDescriptor, value: Any) -> Any:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return to_json(value)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def _properties(desc: Descriptor) -> dict[str, Any] | None:
    """The OpenAPI properties of a message's type, None for a type without a definition."""
    definition = patch.definitions().get("io.k8s." + desc.full_name.removeprefix("k8s.io."))
    return None if definition is None else definition.get("properties", {})


@functools.cache
def json_names(desc: Descriptor) -> dict[str, str]:
    """The fields whose JSON name is not their proto name: proto name -> the one OpenAPI property
    of the message's type that differs from it in case alone."""
    props = _properties(desc)
    if props is None:
        return {}
    out = {}
    for fd in desc.fields:
        same = [p for p in props if p.lower() == fd.name.lower()]
        if fd.name not in props and len(same) == 1:
            out[fd.name] = same[0]
    return out


@functools.cache
def _inline_fields(desc: Descriptor) -> frozenset[str]:
    """The message fields Go embeds inline: missing from the parent's OpenAPI definition, which has
    every field of the embedded message instead."""
    props = _properties(desc)
    if props is None:
        return frozenset()
    return frozenset(
        fd.name for fd in desc.fields
        if fd.name not in props and fd.message_type is not None and not fd.message_type.GetOptions().map_entry
        and all(f.name in props for f in fd.message_type.fields))


def _time(msg: Any) -> str | None:
    if not msg.HasField("seconds"):
        return None   # the zero time.Time: JSON null
    return datetime.fromtimestamp(msg.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _microtime(msg: Any) -> str | None:
    if not msg.HasField("seconds"):
        return None
    stamp = datetime.fromtimestamp(msg.seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{msg.nanos // 1000:06d}Z"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1h2m3.5s``, ``1.5ms``, ``0s``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-" if ns < 0 else ""), abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _decimal(value: int, size: int) -> str:
    whole, frac = divmod(value, size)
    digits = str(frac).rjust(len(str(size)) - 1, "0").rstrip("0") if frac else ""
    return f"{whole}.{digits}" if digits else str(whole)


def _raw_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise Undecodable("an embedded object is not JSON") from exc


_SPECIAL: dict[str, Any] = {
    _TIME: _time,
    _MICROTIME: _microtime,
    _DURATION: lambda m: go_duration(m.duration),
    _INTORSTRING: lambda m: m.strVal if m.type == 1 else m.intVal,
    _QUANTITY: lambda m: m.string,
    _FIELDS: lambda m: _raw_json(m.Raw),
    _RAW: lambda m: _raw_json(m.raw),
}
