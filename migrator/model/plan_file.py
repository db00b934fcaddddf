"""Reading a plan file: bytes to a YAML document, strictly, with one-line errors.

The plan's meaning is ``model/plan.py``; this module owns only the file. It refuses, naming the
file and what to do: a path that is not a regular file (missing, a directory), a file larger
than ``MAX_PLAN_BYTES`` (read no further than that, so a huge file costs no memory), text that
is not UTF-8, an empty file, YAML that does not parse (with its line and column), and a mapping
that names the same key twice (YAML would silently keep the last one, so a reviewer could read
one value while the tool runs another).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

MAX_PLAN_BYTES = 1024 * 1024  # 1 MiB: a plan naming 5,000 nodes is ~100 KiB; a ConfigMap holds 1 MiB


class PlanFileError(ValueError):
    """The plan file cannot be read as one YAML document; the message says why and what to do."""


class _DuplicateKey(Exception):
    """A mapping names one key twice (raised from inside the loader)."""


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:  # an unhashable key: SafeLoader's own error says so below
                continue
            if first is not None:
                raise _DuplicateKey(f"duplicate key {key!r} at line {line} (first at line {first}); "
                                    "keep one of them")
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what, and where (line:column)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return f"{where}{what}"
    return " ".join(str(exc).split())


def read_plan_document(path: str | Path) -> Any:
    """The YAML document in the plan file ``path``. Raises ``PlanFileError``."""
    file = Path(path)
    try:
        info = file.stat()
    except FileNotFoundError as exc:
        raise PlanFileError(f"plan file {file}: not found; pass an existing --plan path") from exc
    except OSError as exc:
        raise PlanFileError(f"plan file {file}: cannot be read ({exc.strerror}); check the --plan path") from exc
    if stat.S_ISDIR(info.st_mode):
        raise PlanFileError(f"plan file {file}: is a directory; pass the plan's YAML file as --plan")
    if not stat.S_ISREG(info.st_mode):
        raise PlanFileError(f"plan file {file}: not a regular file; pass the plan's YAML file as --plan")
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanFileError(f"plan file {file}: cannot be read ({exc.strerror}); check its permissions") from exc
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanFileError(f"plan file {file}: larger than the {MAX_PLAN_BYTES // 1024} KiB limit for a plan; "
                            "select nodes with nodes.selector rather than listing them all")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PlanFileError(f"plan file {file}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                            "a plan is a YAML text file (see plans/example.yaml)") from exc
    if not text.strip() or all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines()):
        raise PlanFileError(f"plan file {file}: is empty; write a plan (copy plans/example.yaml)")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise PlanFileError(f"plan file {file}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PlanFileError(f"plan file {file}: not valid YAML ({_yaml_problem(exc)}); fix the syntax") from exc
