"""Settle detection: when has a writer finished with a file or a model directory?

A path is complete when no event has touched it for its quiet window AND what ``stat`` says
(size and mtime of a file; every file of a directory) is unchanged across that window. Pure
logic over a clock the caller passes in, so the rules are tested without sleeping.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

Snapshot = Hashable
"""What must hold still: ``(size, mtime_ns, inode)`` of a file, or a directory's file list with sizes."""


@dataclass
class Pending:
    """A path waiting to settle."""

    path: Path
    kind: str
    """``file`` or ``dir``."""
    quiet_s: float
    last_event: float
    first_event: float
    snapshot: Snapshot | None = None
    context: object = None
    """The caller's (the watch root this path belongs to)."""
    checks: int = 0
    extra_wait_until: float = 0.0
    """A model directory expecting late companions waits at least until then."""


@dataclass
class Settler:
    """Tracks pending paths; ``due`` says which have been quiet long enough to be checked."""

    pending: dict[Path, Pending] = field(default_factory=dict)

    def touch(
        self, path: Path, kind: str, quiet_s: float, now: float, snapshot: Snapshot | None, context: object = None
    ) -> Pending:
        """An event touched ``path``: (re)start its quiet window from the state it is in now."""
        p = self.pending.get(path)
        if p is None:
            p = Pending(path, kind, quiet_s, now, now, snapshot=snapshot, context=context)
            self.pending[path] = p
        else:
            p.last_event = now
            p.quiet_s = quiet_s
            p.snapshot = snapshot
            p.kind = kind
        return p

    def forget(self, path: Path) -> None:
        self.pending.pop(path, None)

    def forget_under(self, directory: Path) -> list[Path]:
        """Drop pending files inside a directory that turned out to be one model."""
        gone = [p for p in self.pending if p != directory and directory in p.parents]
        for p in gone:
            del self.pending[p]
        return gone

    def due(self, now: float) -> list[Pending]:
        """Pending paths whose quiet window has passed (to be stat-checked now)."""
        return [p for p in self.pending.values() if now - p.last_event >= p.quiet_s and now >= p.extra_wait_until]

    def next_deadline(self) -> float | None:
        """When the earliest pending path becomes due (None when nothing is pending)."""
        if not self.pending:
            return None
        return min(max(p.last_event + p.quiet_s, p.extra_wait_until) for p in self.pending.values())

    def check(self, p: Pending, snapshot: Snapshot | None, now: float) -> bool:
        """Compare a fresh snapshot with the one taken at the last event: True when the path is complete.

        A changed snapshot (the writer touched it without an event reaching us, or the event is
        still in flight) opens another window; a vanished path (None) is dropped.
        """
        p.checks += 1
        if snapshot is None:
            self.forget(p.path)
            return False
        if p.snapshot is not None and p.snapshot == snapshot:
            self.forget(p.path)
            return True
        p.snapshot = snapshot
        p.last_event = now
        return False


def file_snapshot(path: Path) -> Snapshot | None:
    """``(size, mtime_ns, inode)`` of a regular file, or None when it is gone or not a file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def file_state(path: Path) -> tuple[Snapshot | None, int | None]:
    """``file_snapshot`` and when the file last changed: the later of its mtime and ctime (ns).

    ctime too because a writer may set mtime back (``cp -p``, ``tar``) but never ctime: every write,
    rename or chmod moves it to now.
    """
    try:
        st = os.stat(path)
    except OSError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, None
    return (st.st_size, st.st_mtime_ns, st.st_ino), max(st.st_mtime_ns, st.st_ctime_ns)


def dir_snapshot(path: Path, list_files: Callable[[Path], list[str]]) -> Snapshot | None:
    """Every file of a model directory with its size and mtime, or None when it is gone."""
    try:
        rels = list_files(path)
    except (OSError, ValueError):
        return None
    out = []
    for rel in rels:
        try:
            st = os.stat(path / rel)
        except OSError:
            continue
        out.append((rel, st.st_size, st.st_mtime_ns))
    return tuple(out)
