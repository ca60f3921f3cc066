"""Bounds every reader obeys, and a file wrapper that never allocates more than the file holds.

A model file is untrusted input: its header may claim a 4 GiB JSON blob, a billion tensors or a
member that inflates to a terabyte. Readers check every claimed size against these caps and
against the bytes actually present *before* allocating, and raise ``FormatError`` on a lie.
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any, BinaryIO

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

MAX_SAFETENSORS_HEADER = 100 * MiB
"""The safetensors format itself refuses larger headers."""
MAX_JSON_FILE = 16 * MiB
"""config.json, *.index.json, Keras config.json, skops schema.json."""
MAX_YAML_FILE = 4 * MiB
"""MLmodel, conda.yaml, python_env.yaml."""
MAX_TEXT_FILE = 1 * MiB
"""requirements.txt and similar small companions."""
MAX_PICKLE_BYTES = 256 * MiB
"""A pickle stream longer than this is not walked to the end (and says so)."""
MAX_PICKLE_OPS = 10_000_000
"""Opcodes walked per stream: keeps a pathological pickle to seconds, not minutes."""
MAX_INLINE_BYTES = 64 * KiB
"""Byte/string arguments longer than this are skipped over, never read into memory."""
MAX_TENSORS = 1_000_000
MAX_DIMS = 64
MAX_NAME = 64 * KiB
"""A tensor or key name longer than this is a lie, not a name."""
MAX_DEPTH = 32
"""Nesting of protobuf messages, JSON trees, pickled containers."""
MAX_ZIP_MEMBERS = 200_000
MAX_ZIP_MEMBER_READ = 256 * MiB
"""The largest member a reader decompresses (data.pkl, config.json ...)."""
MAX_ZIP_RATIO = 200
"""Compression ratios above this on a member we decompress mean a zip bomb."""
MAX_DIR_FILES = 10_000
"""Files read by ``read_directory``; the rest are listed in a warning."""

MAX_META_STRING = 1024
MAX_META_ITEMS = 64
MAX_META_HEAD = 8
MAX_META_KEYS = 256
MAX_META_NODES = 4096


class FormatError(Exception):
    """A file that is malformed, truncated or lying about its sizes."""


class BoundedFile(io.RawIOBase):
    """Read a file without ever allocating past its real end.

    ``BufferedReader.read(n)`` and ``FileIO.read(n)`` allocate ``n`` bytes before reading, so a
    header claiming 4 GiB turns into a 4 GiB allocation; here every read is clamped to what remains.
    """

    def __init__(self, raw: BinaryIO, size: int | None = None) -> None:
        self._raw = raw
        self.size = os.fstat(raw.fileno()).st_size if size is None else size

    @classmethod
    def open(cls, path: Path) -> BoundedFile:
        """Open ``path`` for bounded reading."""
        return cls(open(path, "rb"))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._raw.tell(), io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            # A header's offset pointing before the start: a lie, not an I/O error (EINVAL).
            raise FormatError(f"seek to {base + offset}, before the start of the file")
        return self._raw.seek(base + offset)

    def read(self, n: int | None = -1) -> bytes:
        remaining = max(0, self.size - self._raw.tell())
        if n is None or n < 0 or n > remaining:
            n = remaining
        return self._raw.read(n)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        remaining = max(0, self.size - self._raw.tell())
        if size is None or size < 0 or size > remaining:
            size = remaining
        return self._raw.readline(size)

    def close(self) -> None:
        self._raw.close()
        super().close()

    def read_exact(self, n: int, what: str) -> bytes:
        """Read exactly ``n`` bytes or raise FormatError naming ``what``."""
        if n < 0:
            raise FormatError(f"{what}: negative length {n}")
        pos = self._raw.tell()
        if n > self.size - pos:
            raise FormatError(f"{what}: {n} bytes claimed at offset {pos}, only {self.size - pos} left")
        data = self._raw.read(n)
        if len(data) != n:
            raise FormatError(f"{what}: truncated at offset {pos}")
        return data

    def read_at(self, offset: int, n: int, what: str) -> bytes:
        """Read exactly ``n`` bytes at ``offset``."""
        if offset < 0 or offset > self.size:
            raise FormatError(f"{what}: offset {offset} outside the file ({self.size} bytes)")
        self._raw.seek(offset)
        return self.read_exact(n, what)


def contained(root: Path, relpath: str) -> Path | None:
    """Return ``root / relpath`` when it stays inside ``root`` once symlinks are resolved, else None."""
    parts = Path(relpath).parts
    if not parts or Path(relpath).is_absolute() or ".." in parts:
        return None
    full = root / relpath
    try:
        target = Path(os.path.realpath(full))
        inside = target.is_relative_to(Path(os.path.realpath(root)))
    except (OSError, RuntimeError, ValueError):
        return None
    return full if inside else None


def read_capped(path: Path, cap: int, what: str) -> bytes:
    """Read a whole small file, refusing one larger than ``cap``."""
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise FormatError(f"{what}: larger than {cap} bytes")
    return data


def load_json(data: bytes, what: str) -> Any:
    """Parse JSON bytes, turning any failure into FormatError."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise FormatError(f"{what}: invalid JSON ({str(exc)[:200]})") from None


def read_json_file(path: Path, what: str, cap: int = MAX_JSON_FILE) -> Any:
    """Read and parse a small JSON file."""
    return load_json(read_capped(path, cap, what), what)


def bounded(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Return a JSON-able copy of ``value`` with long strings, lists and dicts cut short.

    A shared node budget keeps a tree with shared branches (YAML aliases, pickle memo) from
    expanding exponentially.
    """
    if budget is None:
        budget = [MAX_META_NODES]
    budget[0] -= 1
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**63 else str(value)[:MAX_META_STRING]
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_META_STRING else value[:MAX_META_STRING] + "…"
    if isinstance(value, (bytes, bytearray)):
        return {"type": "bytes", "len": len(value)}
    if depth >= MAX_DEPTH // 4 or budget[0] <= 0:
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (key, item) in enumerate(value.items()):
            if i >= MAX_META_KEYS or budget[0] <= 0:
                out["…"] = f"{len(value) - i} more keys"
                break
            out[str(key)[:MAX_META_STRING]] = bounded(item, depth + 1, budget)
        return out
    if isinstance(value, (list, tuple)):
        if len(value) <= MAX_META_ITEMS:
            return [bounded(v, depth + 1, budget) for v in value]
        return {
            "type": "list",
            "len": len(value),
            "head": [bounded(v, depth + 1, budget) for v in value[:MAX_META_HEAD]],
        }
    return str(value)[:MAX_META_STRING]


def numel(shape: list[int]) -> int:
    """Multiply out a shape."""
    total = 1
    for dim in shape:
        total *= dim
    return total
