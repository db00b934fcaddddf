"""The executor: results in the order of the actions, one node's actions in order, nodes side by side;
and every field of every action reaches the cluster port."""

from __future__ import annotations

import dataclasses
import inspect
import threading
import time
import types
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from migrator.cluster import errors as E
from migrator.cluster.port import ClusterPort
from migrator.engine import actions as A
from migrator.execute import Executor


class SlowPort:
    """Records each call per node and how many calls were in flight at once."""

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = {}
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def _call(self, node: str, what: str) -> bool:
        with self._lock:
            self.calls.setdefault(node, []).append(what)
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(0.05)
        with self._lock:
            self.running -= 1
        if node == "node-3" and what.startswith("label"):
            raise E.Conflict("the node changed meanwhile")
        return True

    def cordon_node(self, node: str) -> bool:
        return self._call(node, "cordon")

    def set_node_label(self, node: str, key: str, value: str | None) -> bool:
        return self._call(node, f"label {key}={value}")


def test_nodes_run_side_by_side_while_each_nodes_actions_keep_their_order() -> None:
    port = SlowPort()
    actions: list[A.Action] = []
    for i in range(1, 5):
        actions += [A.Cordon(node=f"node-{i}"), A.LabelNode(node=f"node-{i}", key="k", value=str(i))]
    results = Executor(port).run(actions)  # type: ignore[arg-type]
    assert [r.action for r in results] == actions
    assert [r.ok for r in results] == [True, True, True, True, True, False, True, True]
    assert results[5].error_kind == "Conflict"
    assert all(calls == ["cordon", f"label k={node[-1]}"] for node, calls in port.calls.items())
    assert len(port.calls) == 4 and port.most >= 2


def test_a_single_node_runs_in_order_on_the_calling_thread() -> None:
    port = SlowPort()
    actions = [A.Cordon(node="node-1"), A.LabelNode(node="node-1", key="k", value="v")]
    results = Executor(port).run(actions)  # type: ignore[arg-type]
    assert [r.ok for r in results] == [True, True] and port.most == 1
    assert port.calls == {"node-1": ["cordon", "label k=v"]}


class HeldEvents:
    """A port whose Events are held until released, and whose probe dials meet at a barrier
    (two dials of one round must be in flight at once, or the barrier breaks)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []
        self.cordoned: list[str] = []
        self.meet = threading.Barrier(2, timeout=5)

    def emit_node_event(self, node: str, *, reason: str, message: str, type: str) -> None:
        assert self.release.wait(5), "the Event was never released"
        self.sent.append(reason)

    def cordon_node(self, node: str) -> bool:
        self.cordoned.append(node)
        return True

    def proxy_get(self, namespace: str, pod: str, port: int, path: str, query: dict[str, str]) -> str:
        self.meet.wait()
        return '{"responses": ["a", "b", "c"]}'


def test_events_go_beside_the_turn_and_close_sends_those_still_queued() -> None:
    port = HeldEvents()
    executor = Executor(port)  # type: ignore[arg-type]
    actions = [A.EmitEvent(node="node-1", reason="MigrationCordoned", message="m"), A.Cordon(node="node-1")]
    results = executor.run(actions)
    assert [r.action.kind for r in results] == ["cordon"], "the turn has the cordon's result, not the Event's"
    assert port.cordoned == ["node-1"] and port.sent == [], "the cordon did not wait for the Event"
    closing = threading.Thread(target=executor.close)
    closing.start()
    closing.join(0.1)
    assert closing.is_alive(), "close waits for the Event still queued"
    port.release.set()
    closing.join(5)
    assert port.sent == ["MigrationCordoned"]


def test_a_probe_rounds_checks_are_dialled_side_by_side() -> None:
    checks = tuple(A.ProbeCheck(name=f"c{i}", namespace="p", pod="probe", pod_port=8080, host=f"10.0.0.{i}",
                                port=8080, tries=3) for i in range(2))
    executor = Executor(HeldEvents())  # type: ignore[arg-type]
    result = executor.run_one(A.RunProbes(node="node-1", purpose="gate", checks=checks, threshold=0.66))
    assert dict(result.detail) == {"c0": "ok 3/3", "c1": "ok 3/3"}
    executor.close()


# --------------------------------------------------------------------------------------------
# Every field of every action reaches the port.
# --------------------------------------------------------------------------------------------

#: The action types, read from the union so a new one is covered without touching this test.
ACTIONS: tuple[type[BaseModel], ...] = get_args(get_args(A.Action)[0])
#: Inherited ``node`` where it only groups one node's actions and folds results back.
_GROUPING = "groups one node's actions and folds the result back into the node's record"
#: Fields the port legitimately does not get, keyed (model, field), with the reason.
NOT_SENT: dict[tuple[str, str], str] = {
    **{(cls.__name__, "kind"): "the discriminator; the handler is chosen by the action's type"
       for cls in ACTIONS},
    **{(name, "node"): _GROUPING
       for name in ("EnsureNodeConfig", "DeleteNodeConfig", "EvictPod", "DeletePod", "PatchConfigMap",
                    "RestartDaemonSet", "DeleteObject", "ApplyObject", "PatchObject", "WriteFile", "RunProbes")},
    ("DeletePod", "reason"): "audit and metrics only",
    ("CreatePod", "purpose"): "what the engine does with the pod; the port only creates it",
    ("RunProbes", "purpose"): "labels the probe metric",
    ("RunProbes", "threshold"): "judges the answers; nothing to send",
    ("ProbeCheck", "name"): "names the check's outcome in the result's detail",
    ("ProbeCheck", "expect"): "judges the answer (a policy verdict); nothing to send",
    ("ProbeCheck", "target"): "names the target in a policy check's outcome; nothing to send",
}
#: Fields whose value follows from another field (a validator keeps them equal).
DERIVED: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("CreatePod", "node"): lambda values: values["pod"]["node_name"],   # the pod is pinned to the node
}
#: Values with a format the executor parses, as (distinctive, other).
FORMATTED: dict[tuple[str, str], tuple[Any, Any]] = {
    ("RestartDaemonSet", "restarted_at"): ("2031-07-09T11:22:33Z", "2032-08-10T12:23:34Z"),
}
#: What the recording port answers besides True.
ANSWERS: dict[str, Any] = {"proxy_get": '{"responses": ["probe-pod"]}'}


class RecordingPort:
    """Records every call by the argument names of ``ClusterPort``; a call the port's
    signature would not accept raises ``TypeError``, as it would against a real adapter."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Callable[..., Any]:
        signature = inspect.signature(getattr(ClusterPort, name))

        def record(*args: Any, **kwargs: Any) -> Any:
            arguments = signature.bind(self, *args, **kwargs).arguments
            self.calls.append((name, {k: v for k, v in arguments.items() if k != "self"}))
            return ANSWERS.get(name, True)
        return record


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, alone or as ``tuple[Model, ...]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is tuple:
        return next((a for a in get_args(annotation) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return None


def _leaves(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(model name, field name, path) of every field holding data rather than a model."""
    found = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{model.__name__}.{name}"
        inner = _model_in(info.annotation)
        found += _leaves(inner, path + ":") if inner else [(model.__name__, name, path)]
    return found


def _sample(owner: str, name: str, info: FieldInfo, path: str, variant: int, vary: str | None) -> Any:
    """A distinctive non-default value for one field: variant 0, or another one (variant 1)."""
    annotation, default = info.annotation, info.default
    if (owner, name) in FORMATTED:
        return FORMATTED[owner, name][variant]
    inner = _model_in(annotation)
    if inner is not None:
        values = _build(inner, vary, path + ":")
        return values if get_origin(annotation) is not tuple else (values,)
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    origin, args = get_origin(annotation), get_args(annotation)
    tag = f"v{variant}-{path}"
    if annotation is bool:
        return (not default if isinstance(default, bool) else True) ^ bool(variant)
    if annotation is int:
        return 4000 + 2 * (zlib.crc32(path.encode()) % 1000) + variant
    if annotation is float:
        return 0.25 + variant / 2
    if annotation is str:
        return tag
    if origin is Literal:
        choices = [c for c in args if c != default] + [c for c in args if c == default]
        return choices[variant % len(choices)]
    if origin is dict:
        return {f"k-{tag}": f"{tag}"}
    if origin is tuple and args[0] is str:
        return (f"{tag}-a", f"{tag}-b")
    if origin is tuple and get_origin(args[0]) is tuple:
        return ((f"{tag}-host", f"{tag}-mount"),)
    raise NotImplementedError(f"{path}: teach _sample to build a {annotation!r}")


def _build(model: type[BaseModel], vary: str | None = None, prefix: str = "") -> dict[str, Any]:
    """Values for every field of ``model``: variant 0 everywhere, variant 1 at the path ``vary``."""
    values = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{model.__name__}.{name}"
        values[name] = _sample(model.__name__, name, info, path, int(path == vary), vary)
    for (owner, name), derive in DERIVED.items():
        if owner == model.__name__:
            values[name] = derive(values)
    return values


def _at(values: dict[str, Any], path: str) -> Any:
    """The value at a leaf path such as ``CreatePod.pod:PodRequest.labels``."""
    value: Any = values
    for step in path.split(":"):
        value = value[step.split(".", 1)[1]]
        if isinstance(value, tuple) and value and isinstance(value[0], dict):
            value = value[0]
    return value


def _atoms(value: Any) -> set[str]:
    """Every scalar inside a value, as text (dict keys included; datetimes as RFC 3339)."""
    if isinstance(value, BaseModel):
        value = dict(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return set().union(*(_atoms(k) | _atoms(v) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        return set().union(*(_atoms(v) for v in value))
    if isinstance(value, datetime):
        return {value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {str(value)}


def _reach(action: A.Action, output_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """What executing ``action`` hands the port, plus the files it writes."""
    port = RecordingPort()
    output_dir.mkdir()
    result = Executor(port, output_dir=output_dir).run_one(action)  # type: ignore[arg-type]
    assert result.ok, f"{action.kind} failed: {result.message}"
    written = [("write-file", {"path": f.relative_to(output_dir).as_posix(), "content": f.read_text()})
               for f in sorted(output_dir.rglob("*")) if f.is_file()]
    return port.calls + written


@pytest.mark.parametrize("cls", ACTIONS, ids=lambda cls: cls.__name__)
def test_every_field_of_an_action_reaches_the_port(cls: type[BaseModel], tmp_path: Path) -> None:
    """Each field's distinctive value shows up in the port call's arguments, and changing that
    field alone changes the call (which is how a flag or a dropped optional shows)."""
    values = _build(cls)
    calls = _reach(A.ACTION_ADAPTER.validate_python(values), tmp_path / "base")
    sent = _atoms([arguments for _, arguments in calls])
    missing, ignored = [], []
    for index, (owner, name, path) in enumerate(_leaves(cls)):
        if (owner, name) in NOT_SENT or (owner, name) in DERIVED:
            continue
        value = _at(values, path)
        if not isinstance(value, bool) and not _atoms(value) <= sent:
            missing.append(f"{path}={value!r}")
        varied = A.ACTION_ADAPTER.validate_python(_build(cls, vary=path))
        if _reach(varied, tmp_path / f"vary-{index}") == calls:
            ignored.append(path)
    assert missing == [], f"never reached the port: {missing}; calls: {calls}"
    assert ignored == [], f"changing these changes nothing the port gets: {ignored}; calls: {calls}"


def test_the_list_of_fields_not_sent_names_real_fields() -> None:
    fields = {(owner, name) for cls in ACTIONS for owner, name, _ in _leaves(cls)}
    assert set(NOT_SENT) - fields == set() and set(DERIVED) - fields == set()


def test_an_action_type_without_a_handler_is_a_clear_error() -> None:
    class Reboot(A._Action):
        kind: Literal["reboot"] = "reboot"

    with pytest.raises(TypeError, match="no handler for Reboot"):
        Executor(RecordingPort()).run_one(Reboot(node="node-1"))  # type: ignore[arg-type]
