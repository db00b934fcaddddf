"""Structured logging: JSON lines for machines, readable lines on a terminal.

Logs go to stderr, so that stdout carries only a command's output (a status table, JSON, the
``sim serve`` ready line). Event names are dotted (``node.drain.progress``); the runner binds
``run_id``, and each node's lines carry ``node``, ``phase`` and ``attempt``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
LIST_CAP = 5


def _cap_lists(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    for key, value in list(event.items()):
        if isinstance(value, (list, tuple)) and len(value) > LIST_CAP:
            event[key] = list(value[:LIST_CAP]) + [f"(+{len(value) - LIST_CAP} more)"]
    return event


def configure(*, fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    """Set up structlog once per process. ``fmt``: auto (console on a TTY), json or console."""
    out = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not out.isatty())
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _cap_lists,
    ]
    processors.append(structlog.processors.JSONRenderer() if use_json
                      else structlog.dev.ConsoleRenderer(colors=out.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )


def quiet() -> None:
    """Only warnings and errors, on stderr (for the simulated cluster inside demos and tests)."""
    configure(fmt="console", level="warning")
