"""``deploy/``: the kustomize base and overlays are what ``migrator manifests`` prints (one source
of truth: ``python -m migrator.manifests`` writes them), ``kubectl kustomize`` renders each
overlay to exactly the command's objects, and the API server accepts both (server-side dry run
against the simulated cluster)."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess

import pytest
import yaml

from migrator.cli import main
from migrator.manifests import OVERLAYS, ROOT, deploy_files

DEPLOY = ROOT / "deploy"


def command_output(plan: str, kind: str, nodes: int | None) -> list[dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["manifests", "--plan", str(ROOT / plan), f"--{kind}", *(["--nodes", str(nodes)] if nodes else [])])
    assert code == 0
    return list(yaml.safe_load_all(out.getvalue()))


def canonical(docs: list[dict]) -> list[str]:
    return sorted(yaml.safe_dump(d, sort_keys=True) for d in docs)


def test_deploy_directory_is_current():
    stale = [path for path, text in deploy_files().items()
             if not (DEPLOY / path).is_file() or (DEPLOY / path).read_text(encoding="utf-8") != text]
    assert not stale, f"deploy/ is out of date ({', '.join(stale)}): run `python -m migrator.manifests`"


@pytest.mark.kubectl
def test_kustomize_renders_each_overlay_to_the_commands_objects():
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    for overlay, (plan, kind, nodes) in OVERLAYS.items():
        rendered = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True,
                                  text=True, timeout=60, check=False)
        assert rendered.returncode == 0, rendered.stderr
        assert canonical(list(yaml.safe_load_all(rendered.stdout))) == canonical(command_output(plan, kind, nodes))


@pytest.mark.kubectl
def test_both_overlays_pass_a_server_side_dry_run(kubectl, tmp_path):
    for overlay in OVERLAYS:
        # kubectl's default validation: strict field validation by the API server (its OpenAPI)
        applied = kubectl("apply", "--dry-run=server", "-k", str(DEPLOY / "overlays" / overlay))
        assert applied.returncode == 0, applied.stderr
        kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
        assert {"serviceaccount", "clusterrole.rbac.authorization.k8s.io", "configmap"} <= kinds, applied.stdout
        assert all(line.endswith("(server dry run)") for line in applied.stdout.splitlines()), applied.stdout
        workload = "job.batch" if overlay == "run" else "cronjob.batch"
        assert workload in kinds
    # the dry run is a real check (one cluster for all of it): a Job the API server rejects fails it
    job = next(d for d in command_output("plans/example.yaml", "job", 6) if d["kind"] == "Job")
    job["spec"]["activeDeadlineSeconds"] = "soon"
    path = tmp_path / "bad-job.yaml"
    path.write_text(yaml.safe_dump(job))
    refused = kubectl("apply", "--dry-run=server", "-f", str(path))
    assert refused.returncode != 0 and "activeDeadlineSeconds" in refused.stderr, (refused.stdout, refused.stderr)
    # and so is a misspelt field, which strict validation names
    job["spec"]["activeDeadlineSeconds"] = 60
    job["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    path.write_text(yaml.safe_dump(job))
    refused = kubectl("apply", "--dry-run=server", "-f", str(path))
    assert refused.returncode != 0 and 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in \
        refused.stderr, (refused.stdout, refused.stderr)
