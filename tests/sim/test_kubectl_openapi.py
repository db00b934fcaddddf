"""kubectl's schema-driven commands against one ``migrator sim serve``: ``apply -f`` (created,
unchanged, configured), ``--validate=strict`` and ``warn`` with an unknown field, ``explain`` on a
built-in and on a CRD field, and ``apply --server-side`` with its conflicts.

The expected texts come from the Kubernetes documentation and source: kubectl 1.32 validates
server-side when the OpenAPI v3 PATCH operation of the kind lists ``fieldValidation`` (cli-runtime
query_param_verifier_v3.go) and sends ``fieldValidation=Strict``; kube-apiserver refuses a
create with ``<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error:
unknown field "<path>"`` (handlers/rest.go transformDecodeError) and a patch with the strict
decoding error alone (handlers/patch.go); an apply conflict reads ``Apply failed with 1
conflict: conflict with "<manager>": <path>`` (fieldmanager internal/conflict.go) and an
applied field the schema lacks ``failed to create typed patch object (<ns>/<name>; <gvk>):
<path>: field not declared in schema`` (structuredmerge.go).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.sim.test_sim_serve import ROOT, read_line

pytestmark = pytest.mark.kubectl
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ``migrator sim serve`` for the module; its kubeconfig."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    kubeconfig = tmp_path_factory.mktemp("openapi") / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-m", "migrator", "sim", "serve", "--nodes", "2", "--seed", "5",
                             "--time-scale", "10", "--kubeconfig", str(kubeconfig)],
                            cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert "sim cluster ready" in read_line(proc, timeout=60)
        yield kubeconfig
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


@pytest.fixture
def kubectl(served: Path, tmp_path: Path) -> Kubectl:
    # kubectl keeps its discovery and OpenAPI caches under $HOME/.kube: one per test run
    env = {**os.environ, "KUBECONFIG": str(served), "HOME": str(served.parent)}
    return lambda *args: subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, timeout=60,
                                        check=False)


def manifest(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def deployment(name: str, replicas: int = 1, extra_spec: str = "", extra_container: str = "") -> str:
    """A Deployment manifest; ``extra_*`` are lines added under ``spec`` and under its container."""
    return "\n".join([
        "apiVersion: apps/v1", "kind: Deployment", f"metadata: {{name: {name}, namespace: default}}", "spec:",
        f"  replicas: {replicas}", *([f"  {extra_spec}"] if extra_spec else []),
        f"  selector: {{matchLabels: {{app: {name}}}}}", "  template:",
        f"    metadata: {{labels: {{app: {name}}}}}", "    spec:", "      containers:", "      - name: web",
        "        image: nginx:1.27", *([f"        {extra_container}"] if extra_container else []), ""])


def test_apply_creates_then_leaves_unchanged_then_configures(kubectl: Kubectl, tmp_path: Path) -> None:
    text = """\
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: settings
          namespace: default
        data:
          mode: "{mode}"
        """
    first = manifest(tmp_path, "cm.yaml", text.format(mode="a"))
    created = kubectl("apply", "-f", first)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "configmap/settings created"
    again = kubectl("apply", "-f", first)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "configmap/settings unchanged"
    changed = kubectl("apply", "-f", manifest(tmp_path, "cm2.yaml", text.format(mode="b")))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "configmap/settings configured"
    got = kubectl("get", "configmap", "settings", "-o", "jsonpath={.data.mode}")
    assert got.stdout == "b"


def test_apply_of_a_custom_resource_merges_its_changes_and_validates_against_the_crd(kubectl: Kubectl,
                                                                                      tmp_path: Path) -> None:
    # No strategic merge patch for custom resources: kubectl falls back to a JSON merge patch.
    text = """\
        apiVersion: cilium.io/v2
        kind: CiliumNodeConfig
        metadata:
          name: cilium-default
          namespace: kube-system
        spec:
          nodeSelector:
            matchLabels: {{io.cilium.migration/cilium-default: "true"}}
          defaults:
            write-cni-conf-when-ready: /host/etc/cni/net.d/05-cilium.conflist
            {extra}
        """
    created = kubectl("apply", "-f", manifest(tmp_path, "cnc.yaml", text.format(extra="")))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "ciliumnodeconfig.cilium.io/cilium-default created"
    changed = kubectl("apply", "-f", manifest(tmp_path, "cnc2.yaml", text.format(extra='cni-exclusive: "false"')))
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.strip() == "ciliumnodeconfig.cilium.io/cilium-default configured"
    got = kubectl("-n", "kube-system", "get", "ciliumnodeconfig", "cilium-default", "-o", "jsonpath={.spec.defaults}")
    assert json.loads(got.stdout) == {"write-cni-conf-when-ready": "/host/etc/cni/net.d/05-cilium.conflist",
                                      "cni-exclusive": "false"}
    unknown = text.format(extra="").replace("  defaults:", "  colour: blue\n          defaults:")
    refused = kubectl("apply", "-f", manifest(tmp_path, "cnc3.yaml", unknown))
    assert refused.returncode == 1
    assert 'strict decoding error: unknown field "spec.colour"' in refused.stderr


def test_strict_validation_refuses_an_unknown_field_on_create_and_on_patch(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = manifest(tmp_path, "bad.yaml", deployment("strict", extra_spec="colour: blue"))
    refused = kubectl("apply", "--validate=strict", "-f", bad)
    assert refused.returncode == 1
    assert (f'Error from server (BadRequest): error when creating "{bad}": Deployment in version "v1" cannot be '
            'handled as a Deployment: strict decoding error: unknown field "spec.colour"') in refused.stderr
    assert "NotFound" in kubectl("get", "deployment", "strict").stderr   # nothing was written

    default = kubectl("apply", "-f", bad)   # kubectl's default validation is strict as well
    assert default.returncode == 1 and 'unknown field "spec.colour"' in default.stderr

    good = kubectl("apply", "-f", manifest(tmp_path, "good.yaml", deployment("strict")))
    assert good.returncode == 0, good.stderr
    nested = manifest(tmp_path, "nested.yaml", deployment("strict", extra_container="size: large"))
    patched = kubectl("apply", "-f", nested)
    assert patched.returncode == 1
    assert (f'error when patching "{nested}": strict decoding error: '
            'unknown field "spec.template.spec.containers[0].size"') in patched.stderr


def test_warn_validation_drops_the_unknown_field_and_says_so(kubectl: Kubectl, tmp_path: Path) -> None:
    warned = kubectl("apply", "--validate=warn", "-f",
                     manifest(tmp_path, "warn.yaml", deployment("warned", extra_spec="colour: blue")))
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: unknown field "spec.colour"' in warned.stderr
    assert warned.stdout.strip() == "deployment.apps/warned created"
    spec = kubectl("get", "deployment", "warned", "-o", "jsonpath={.spec}")
    assert '"replicas":1' in spec.stdout and "colour" not in spec.stdout


def test_explain_prints_the_schema_description_of_a_built_in_field(kubectl: Kubectl) -> None:
    explained = kubectl("explain", "pod.spec.containers")
    assert explained.returncode == 0, explained.stderr
    out = explained.stdout
    assert "KIND:       Pod" in out and "VERSION:    v1" in out
    assert "FIELD: containers <[]Container>" in out
    # the PodSpec API reference's words for the field
    assert "List of containers belonging to the pod." in " ".join(out.split())
    assert "image\t<string>" in out and "name\t<string> -required-" in out


def test_explain_prints_a_custom_resource_field_from_its_crd(kubectl: Kubectl) -> None:
    explained = kubectl("explain", "ciliumnodeconfigs.spec")
    assert explained.returncode == 0, explained.stderr
    out = explained.stdout
    assert "GROUP:      cilium.io" in out and "KIND:       CiliumNodeConfig" in out and "VERSION:    v2" in out
    # the CRD's own description of spec and of its two required fields
    assert "Spec is the desired Cilium configuration overrides for a given node" in out
    assert "defaults\t<map[string]string> -required-" in out
    assert "nodeSelector\t<Object> -required-" in out


def test_server_side_apply_creates_conflicts_and_forces(kubectl: Kubectl, tmp_path: Path) -> None:
    two = manifest(tmp_path, "two.yaml", deployment("owned", replicas=2))
    created = kubectl("apply", "--server-side", "-f", two)
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "deployment.apps/owned serverside-applied"
    assert kubectl("apply", "--server-side", "-f", two).returncode == 0   # the same manager again: no conflict

    three = manifest(tmp_path, "three.yaml", deployment("owned", replicas=3))
    conflict = kubectl("apply", "--server-side", "--field-manager=rollout-bot", "-f", three)
    assert conflict.returncode == 1
    assert 'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas' in conflict.stderr
    assert "--force-conflicts" in conflict.stderr
    assert kubectl("get", "deployment", "owned", "-o", "jsonpath={.spec.replicas}").stdout == "2"

    forced = kubectl("apply", "--server-side", "--field-manager=rollout-bot", "--force-conflicts", "-f", three)
    assert forced.returncode == 0, forced.stderr
    assert kubectl("get", "deployment", "owned", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    managers = kubectl("get", "deployment", "owned", "--show-managed-fields", "-o",
                       r"jsonpath={range .metadata.managedFields[*]}{.manager}/{.operation}{' '}{end}")
    assert managers.stdout.split() == ["kubectl/Apply", "rollout-bot/Apply"]
    # kubectl no longer owns replicas: applying its old manifest again now conflicts with the new owner
    back = kubectl("apply", "--server-side", "-f", two)
    assert 'conflict with "rollout-bot": .spec.replicas' in back.stderr


def test_server_side_apply_refuses_a_field_the_schema_lacks(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = manifest(tmp_path, "ssa-bad.yaml", deployment("typed", extra_spec="colour: blue"))
    refused = kubectl("apply", "--server-side", "-f", bad)
    assert refused.returncode == 1
    assert ("failed to create typed patch object (default/typed; apps/v1, Kind=Deployment): "
            ".spec.colour: field not declared in schema") in refused.stderr
