"""Scalar types of the plan: durations, ports, label keys, Kubernetes names, clock times.

Each is an ``Annotated`` type whose validator turns an operator's YAML spelling into a typed
value with an error message that says what a valid value looks like; the JSON schema shows
the accepted spelling (e.g. durations as ``"10m"``), not the Python type.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

_DURATION_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(value: Any) -> timedelta:
    """``"1h30m"``, ``"10m"``, ``"45s"`` (or a timedelta) to a positive-or-zero timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('must be a duration string such as "30s", "10m" or "1h30m"')
    match = _DURATION_RE.match(value.strip())
    if not value.strip() or not match:
        raise ValueError(f'{value!r} is not a duration; write e.g. "30s", "10m" or "1h30m"')
    hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The inverse of ``parse_duration`` (whole seconds)."""
    total = int(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + \
        (f"{seconds}s" if seconds else "")
    return text or "0s"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+h)?(\d+m)?(\d+s)?$",
                    "examples": ["30s", "10m", "1h30m"]}),
]
Port = Annotated[int, Field(ge=1, le=65535)]
_LABEL_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_DNS_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
PERCENT_RE = re.compile(r"^(\d{1,3})%$")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_label_key(key: str) -> str:
    """Return ``key`` if it is a valid Kubernetes label key, else raise ``ValueError``."""
    if not _LABEL_KEY_RE.match(key) or len(key) > 316:
        raise ValueError(f"{key!r} is not a valid label key (prefix/name, name ≤ 63 chars)")
    return key


def _check_name(name: str) -> str:
    if not _DNS_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')")
    return name


LabelKey = Annotated[str, BeforeValidator(lambda v: check_label_key(v) if isinstance(v, str) else v)]
K8sName = Annotated[str, BeforeValidator(lambda v: _check_name(v) if isinstance(v, str) else v)]


def _clock_time(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError('YAML read this as a number; quote the time, e.g. "02:00"')
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]
