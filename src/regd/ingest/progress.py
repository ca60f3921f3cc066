"""The ingest queue as ``daemon.status`` shows it: files pending, bytes hashed, rate.

Updated from hashing threads and read from the event loop; plain int updates under the GIL are
enough here (a momentarily stale figure is fine, a lock on the hot path is not).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from regd.domain import IngestQueue

_RATE_WINDOW_S = 5.0


class IngestTracker:
    """Counts what the pipeline is doing and derives a rate over the last few seconds."""

    def __init__(self) -> None:
        self.pending = 0
        self.active: dict[int, str] = {}
        self.bytes_total = 0
        self.bytes_done = 0
        self.registered = 0
        self.failed = 0
        self.last_error: str | None = None
        self._samples: deque[tuple[float, int]] = deque(maxlen=256)
        self._next = 0

    def begin(self, path: str, size: int) -> tuple[int, Callable[[int], None]]:
        """Start tracking a path; returns its ticket and a callback taking bytes newly hashed."""
        self._next += 1
        ticket = self._next
        self.active[ticket] = path
        self.bytes_total += size

        def advance(delta: int) -> None:
            self.bytes_done += delta
            self._samples.append((time.monotonic(), self.bytes_done))

        return ticket, advance

    def resize(self, ticket: int, path: str, size: int) -> None:
        """Name a tracked path (once resolved) and add its size; callable from the worker thread."""
        if ticket in self.active:
            self.active[ticket] = path  # an existing key: never resizes the dict under a reader
        self.bytes_total += size

    def cancel(self, ticket: int) -> None:
        """Stop tracking a path refused before any work was done; counted neither way."""
        self.active.pop(ticket, None)
        if not self.active:
            self.bytes_done = self.bytes_total = 0

    def end(self, ticket: int, size: int, *, ok: bool, error: str | None = None) -> None:
        self.active.pop(ticket, None)
        self.bytes_total = max(0, self.bytes_total - size)
        self.bytes_done = min(self.bytes_done, self.bytes_total)
        if not self.active:
            self.bytes_done = self.bytes_total = 0
        if ok:
            self.registered += 1
        else:
            self.failed += 1
            self.last_error = error

    def rate(self) -> float:
        now = time.monotonic()
        recent = [(t, b) for t, b in self._samples if now - t <= _RATE_WINDOW_S]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0
        return max(0.0, (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0]))

    def snapshot(self) -> IngestQueue:
        return IngestQueue(
            pending=self.pending + len(self.active),
            active=sorted(self.active.values())[:20],
            bytes_total=self.bytes_total,
            bytes_done=min(self.bytes_done, self.bytes_total),
            rate_bytes_per_s=round(self.rate(), 1),
            registered=self.registered,
            failed=self.failed,
            last_error=self.last_error,
        )
