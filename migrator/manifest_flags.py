"""Checks of the values ``migrator manifests`` puts into Kubernetes objects, before any is printed.

Each check returns the problem as text (what is wrong and what to pass instead) or ``""``, so the
command can refuse with one line naming the flag. The rules are the API server's and the
controllers', written out here so a bad value is refused when the manifests are printed rather
than when they are applied (or, for a schedule, every week at 3 a.m.):

* ``cron_problem``: the CronJob controller's schedule syntax (robfig/cron's standard parser, as
  Kubernetes validates ``spec.schedule``): five fields — minute 0-59, hour 0-23, day of month
  1-31, month 1-12 or JAN-DEC, day of week 0-6 or SUN-SAT — each ``*``, ``?``, a value, a range
  ``a-b``, a step ``*/s``, ``a/s`` or ``a-b/s``, or a comma list of those; or one of the macros
  ``@yearly @annually @monthly @weekly @daily @midnight @hourly``. A ``TZ=``/``CRON_TZ=`` prefix
  is refused as Kubernetes does (the CronJob's ``timeZone`` field says the zone).
* ``dns_label_problem``: an RFC 1123 label (namespaces): at most 63 of ``a-z 0-9 -``, alphanumeric
  at both ends.
* ``image_problem``: an image reference as the container runtime parses it
  (``[registry[:port]/]path[:tag][@algorithm:hex]``, lower-case path, at most 255 characters of name).
* ``ocm_duration_problem`` and ``ocm_count_problem``: the forms OCM's rollout strategy accepts
  (``90m``, ``2h``, ``360s``; ``3`` or ``10%``), from its CRD's patterns.
"""

from __future__ import annotations

import re

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names for lowest..)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS), ("day of week", 0, 6, _WEEKDAYS))

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_IMAGE = re.compile(rf"^(?P<name>{_NAME})(?::[\w][\w.-]{{0,127}})?"
                    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")
_OCM_DURATION = re.compile(r"^[0-9]+[hms]$")
_OCM_COUNT = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
_OCM_GROUP = re.compile(r"^[a-zA-Z0-9][-A-Za-z0-9_.]{0,61}[a-zA-Z0-9]$")


def _value(text: str, lowest: int, highest: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        number = int(text)
        return number if lowest <= number <= highest else None
    if names and text.lower() in names:
        return lowest + names.index(text.lower())
    return None


def _field_problem(text: str, name: str, lowest: int, highest: int, names: tuple[str, ...]) -> str:
    span = f"{lowest}-{highest}" + (f" or {names[0].upper()}-{names[-1].upper()}" if names else "")
    for item in text.split(","):
        head, slash, step = item.partition("/")
        if slash and not (step.isdigit() and int(step) >= 1):
            return f"{name} {item!r}: the step after / must be a whole number of at least 1"
        if head in ("*", "?"):
            continue
        low_text, dash, high_text = head.partition("-")
        low = _value(low_text, lowest, highest, names)
        high = _value(high_text, lowest, highest, names) if dash else low
        if low is None or high is None:
            return f"{name} {item!r}: values must be within {span}"
        if low > high:
            return f"{name} {item!r}: the range starts after it ends"
    return ""


def cron_problem(schedule: str) -> str:
    """Why ``schedule`` is not a schedule a Kubernetes CronJob accepts, or ``""``."""
    text = schedule.strip()
    if not text:
        return "empty schedule"
    if re.match(r"^(CRON_)?TZ=", text):
        return "a time zone prefix is not allowed in a CronJob schedule; write the schedule in the cluster's zone"
    if text.startswith("@"):
        return "" if text.lower() in MACROS else f"unknown macro {text!r}; use one of {' '.join(MACROS)}"
    fields = text.split()
    if len(fields) != 5:
        return f"{len(fields)} fields; a schedule has 5 (minute hour day-of-month month day-of-week)"
    for field, (name, lowest, highest, names) in zip(fields, _FIELDS, strict=True):
        problem = _field_problem(field, name, lowest, highest, names)
        if problem:
            return problem
    return ""


def dns_label_problem(text: str) -> str:
    if len(text) > 63:
        return f"{len(text)} characters; at most 63"
    if not _DNS_LABEL.match(text):
        return "not an RFC 1123 label (lower-case letters, digits and '-', starting and ending alphanumeric)"
    return ""


def image_problem(text: str) -> str:
    match = _IMAGE.match(text)
    if match is None:
        return ("not an image reference; write [registry[:port]/]path[:tag][@sha256:digest] with a lower-case "
                "path, e.g. ghcr.io/migrator/migrator:0.1.0")
    if len(match.group("name")) > 255:
        return "the image name is longer than 255 characters"
    return ""


def ocm_duration_problem(text: str) -> str:
    return "" if _OCM_DURATION.match(text) else "write a whole number of h, m or s, e.g. 90m, 2h or 360s"


def ocm_count_problem(text: str) -> str:
    return "" if _OCM_COUNT.match(text) else "write a number of clusters (e.g. 2) or a percentage (e.g. 10%)"


def group_problem(text: str) -> str:
    return "" if _OCM_GROUP.match(text) else ("not a decision group name (2-63 of letters, digits, '-', '_', '.', "
                                               "starting and ending alphanumeric)")
