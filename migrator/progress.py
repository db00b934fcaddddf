"""Live progress on a terminal: one line that says where the run stands, redrawn on change.

Off a terminal the structured log lines are the progress report, so nothing is drawn.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime
from typing import Any, TextIO

from migrator.model.checkpoint import Checkpoint
from migrator.model.states import NodePhase


class Progress:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self._last = ""
        self._cp: Checkpoint | None = None
        self.unavailable_since: datetime | None = None

    @classmethod
    def for_stream(cls, stream: TextIO = sys.stderr) -> Progress | None:
        return cls(stream) if stream.isatty() else None

    def line(self, cp: Checkpoint) -> str:
        counts = cp.counts()
        done = counts.get(NodePhase.DONE, 0)
        records = map(cp.by_name.__getitem__, cp.in_run_order(cp.census.in_flight))
        flying = [f"{r.name}:{r.phase.value.lower()}" for r in records if r.phase is not NodePhase.PENDING]
        shown = ", ".join(flying[:4]) + (f" +{len(flying) - 4}" if len(flying) > 4 else "")
        outage = "" if self.unavailable_since is None else \
            f"  API server unavailable since {self.unavailable_since.strftime('%H:%M:%SZ')}"
        return (f"[{time.monotonic() - self.started:6.1f}s] {cp.run_phase.value.lower():10} "
                f"{done}/{len(cp.nodes)} done  {shown}{outage}")

    def unavailable(self, since: datetime | None) -> None:
        """Say the API server has been unavailable since ``since`` (None: it is back)."""
        self.unavailable_since = since
        if self._cp is not None:
            self.update(self._cp)

    def update(self, cp: Checkpoint, reason: Any = None) -> None:
        self._cp = cp
        text = self.line(cp)
        if text != self._last:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self._last = text

    def close(self) -> None:
        if self._last:
            self.stream.write("\n")
            self.stream.flush()
