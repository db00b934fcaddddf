"""``migrator/sim/crds/SOURCES.md`` says where every CRD the simulator serves comes from: each file
shipped there is listed, and its bytes and sha256 are the ones recorded, so a copy edited by hand
(or a file added without its provenance) fails here."""

from __future__ import annotations

import hashlib

import yaml

from migrator.sim.registry import CRD_DIR

SOURCES = CRD_DIR / "SOURCES.md"


def recorded() -> dict[str, dict[str, str]]:
    """file name -> its row, from every table in SOURCES.md whose header has file, bytes and sha256."""
    rows: dict[str, dict[str, str]] = {}
    header: list[str] | None = None
    for line in SOURCES.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif set(cells) <= {"---"}:
            continue
        elif {"file", "bytes", "sha256"} <= set(header):
            row = dict(zip(header, cells, strict=True))
            assert row["file"] not in rows, f"{row['file']} is listed twice"
            rows[row["file"]] = row
    return rows


def test_every_shipped_crd_matches_its_recorded_bytes_and_sha256() -> None:
    rows = recorded()
    shipped = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert sorted(rows) == shipped
    for name in shipped:
        data = (CRD_DIR / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(rows[name]["bytes"]), rows[name]["sha256"]), name


def test_the_cilium_bgp_and_lb_ipam_crds_serve_the_versions_sources_md_names() -> None:
    def served(name: str) -> list[tuple[str, bool]]:
        crd = yaml.safe_load((CRD_DIR / name).read_text(encoding="utf-8"))
        return [(v["name"], v["storage"]) for v in crd["spec"]["versions"] if v["served"]]

    for kind in ("clusterconfigs", "peerconfigs", "advertisements", "nodeconfigoverrides", "nodeconfigs"):
        assert served(f"ciliumbgp{kind}.yaml") == [("v2", True), ("v2alpha1", False)], kind
    assert served("ciliumloadbalancerippools.yaml") == [("v2", True), ("v2alpha1", False)]
    assert served("ciliuml2announcementpolicies.yaml") == [("v2alpha1", True)]
    assert not (CRD_DIR / "ciliumbgppeeringpolicies.yaml").exists()
