"""The garbage collector while a run loop turns: fewer, cheaper pauses.

CPython's cycle collector stops every thread of the process while it runs: the loop, the
watch threads filling the cache, the threads sending actions and dialling probes. With its
default thresholds (a young collection every 700 net allocations, the oldest generation
once a quarter of it is new) a run holding a large cluster in its watch cache collected the
oldest generation every few seconds, each time going over every tracked object: in a
1,000-node run, 14 full collections of about 470,000 objects, up to 370 ms each, 3.9-4.7 s
of pauses in all, during which every node in flight waited. Yet a run makes almost no
cyclic garbage (about 3,600 objects freed by the collector in that run; reference counting
frees the rest at once).

So while a run loop turns, a young collection waits for ``YOUNG`` net allocations instead
of 700. The older generations keep their ratios, so they follow proportionally less often:
the same run then made 0-1 full collections and 0.7-1.2 s of pauses in all (``bench.loop``
prints them). The little cyclic garbage lives a little longer; nothing else changes. The
thresholds the process had are put back when the loop ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Net allocations between two young collections while a run loop turns (CPython's default: 700).
YOUNG = 50_000


@contextmanager
def fewer_collections(young: int = YOUNG) -> Iterator[None]:
    """Young collections every ``young`` net allocations inside the block (never fewer
    allocations than the process already had), the previous thresholds restored after it."""
    before = gc.get_threshold()
    gc.set_threshold(max(young, before[0]), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
