"""Write a kubeconfig that points kubectl and the ``kubernetes`` client at a simulated cluster."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def write_kubeconfig(path: str | Path, url: str, token: str, *, context: str = "sim",
                     namespace: str = "default", ca_pem: bytes | None = None, user: str | None = None) -> Path:
    """Write (atomically, mode 0600) a kubeconfig with one cluster, user and context; the user is
    named ``user`` (default ``<context>-admin``)."""
    path = Path(path)
    user = user or f"{context}-admin"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": _cluster(url, ca_pem)}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user,
                                                   "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def _cluster(url: str, ca_pem: bytes | None) -> dict[str, str]:
    cluster = {"server": url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return cluster
