"""Read small metadata files without letting a hostile one cost unbounded time or memory.

Lock files, sidecars and trainer outputs sit in folders other programs write to. A name there can be a FIFO
(``open`` would block the worker thread forever), a symlink to ``/dev/zero`` (an endless read) or a
multi-gigabyte file; each is refused with an ``OSError`` so callers handle every failure in one ``except``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path


def read_bounded(path: Path, limit: int) -> bytes:
    """Return the bytes of the regular file ``path``, at most ``limit`` of them.

    Raises:
        OSError: unreadable, not a regular file (``EINVAL``), or larger than ``limit`` (``EFBIG``).
    """
    # O_NONBLOCK so that opening a FIFO returns at once; the fstat below then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if info.st_size > limit:
            raise OSError(errno.EFBIG, f"larger than {_human(limit)} ({_human(info.st_size)})", str(path))
        chunks: list[bytes] = []
        remaining = limit + 1  # one byte more than allowed tells a file that grew since fstat
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {_human(limit)}", str(path))
    return data


def _human(size: int) -> str:
    """Render a byte count the way the limits are written in the docs (``1 MiB``)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} bytes"


MAX_YAML_FLOW_DEPTH = 8
_BRACKETS = re.compile(r"[\[\]{}]")


def yaml_flow_depth_ok(text: str, limit: int = MAX_YAML_FLOW_DEPTH) -> bool:
    """Tell whether ``[``/``{`` nest at most ``limit`` deep (quotes ignored: a cheap over-estimate).

    PyYAML's scanner does work proportional to the flow depth for every token, so a file of deeply nested
    ``[[[...]]]`` costs quadratic time: minutes of a worker thread for a few MiB. Locks and hparams nest
    flow collections one or two deep.
    """
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match[0] in "[{":
            depth += 1
            if depth > limit:
                return False
        elif depth:
            depth -= 1
    return True
