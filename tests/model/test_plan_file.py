"""Reading a plan file: every way a file can be unusable is one line naming the file and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migrator.model.plan import PlanError, load_plan
from migrator.model.plan_file import MAX_PLAN_BYTES

EXAMPLE = Path(__file__).resolve().parents[2] / "plans" / "example.yaml"


def refused(path: Path) -> str:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    return text


def test_duplicate_key_is_refused_naming_key_and_lines(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("  tunnel_protocol: vxlan", "  tunnel_port: 4789\n  tunnel_protocol: vxlan")
    plan = tmp_path / "dup.yaml"
    plan.write_text(text)
    lines = text.splitlines()
    first = lines.index("  tunnel_port: 4789") + 1
    second = next(i for i, line in enumerate(lines, 1) if line.startswith("  tunnel_port: 8473"))
    assert f"duplicate key 'tunnel_port' at line {second} (first at line {first})" in refused(plan)


def test_duplicate_key_in_a_flow_mapping(tmp_path: Path) -> None:
    plan = tmp_path / "dup.yaml"
    plan.write_text("nodes: {exclude: [a], exclude: [b]}\n")
    assert "duplicate key 'exclude' at line 1" in refused(plan)


def test_same_key_in_different_mappings_is_fine(tmp_path: Path) -> None:
    plan = tmp_path / "ok.yaml"
    plan.write_text(EXAMPLE.read_text())  # namespace appears in several sections
    assert load_plan(plan).name == "example"


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "is empty"),
    (b"# only a comment\n\n", "is empty"),
    (b"\xff\xfe\x00\x01garbage", "not UTF-8 text (byte 0xff at offset 0)"),
    (b"name: [unclosed\n", "not valid YAML (line 2, column 1:"),
    (b"name: a\x00b\n", "not valid YAML"),
])
def test_unusable_content(tmp_path: Path, content: bytes, expected: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_bytes(content)
    assert expected in refused(plan)


def test_directory_and_missing_file(tmp_path: Path) -> None:
    assert "is a directory" in refused(tmp_path)
    assert "not found" in refused(tmp_path / "missing.yaml")


def test_plan_over_the_size_cap_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nodes"] = {"names": [f"node-{i:06d}" for i in range(MAX_PLAN_BYTES // 12)]}
    plan = tmp_path / "big.yaml"
    plan.write_text(yaml.safe_dump(data))
    assert plan.stat().st_size > MAX_PLAN_BYTES
    assert "larger than the 1024 KiB limit" in refused(plan)
