"""Calling the CLI in-process: ``run_cli(args)`` gives the exit code and everything it printed."""

from __future__ import annotations

import contextlib
import signal

import structlog

from migrator.cli import main


def run_cli(args: list[str]) -> tuple[int, str]:
    """``migrator ARGS`` in this process: exit code and everything it printed."""
    out, err = _Capture(), _Capture()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exc:  # argparse refusing a flag
                code = int(exc.code or 0)
    finally:
        for s, h in handlers.items():
            signal.signal(s, h)
        structlog.contextvars.clear_contextvars()  # a run binds its run_id and plan for its process
    return code, out.getvalue() + err.getvalue()


class _Capture:
    """A text stream that is not a terminal (so logs are JSON lines and nothing prompts)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)
