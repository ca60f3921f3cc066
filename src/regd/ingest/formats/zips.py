"""Open zip-based model files (PyTorch, Keras, skops) defensively: bombs are refused before inflating."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from typing import BinaryIO

from regd.ingest.formats.limits import (
    MAX_ZIP_MEMBER_READ,
    MAX_ZIP_MEMBERS,
    MAX_ZIP_RATIO,
    BoundedFile,
    FormatError,
    MiB,
)

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_LOCAL_HEADER = struct.Struct("<4s5H3I2H")
# What zipfile raises on corrupt input, besides OSError for real I/O trouble. RuntimeError also covers
# its subclass raised for an unsupported compression method.
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, RuntimeError, EOFError,
    ValueError, OverflowError, struct.error, KeyError,
)  # fmt: skip


def open_zip(f: BoundedFile) -> zipfile.ZipFile:
    """Open ``f`` as a zip after checking its central directory's claims against the file size."""
    try:
        # zipfile would build a ZipInfo per claimed entry; check the count and size it will read first.
        end = zipfile._EndRecData(f)  # type: ignore[attr-defined]  # stable since Python 2
    except _ZIP_ERRORS as exc:
        raise FormatError(f"zip: unreadable end record ({exc})") from None
    if end is None:
        raise FormatError("zip: no end of central directory record (truncated?)")
    entries, cd_size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > MAX_ZIP_MEMBERS:
        raise FormatError(f"zip: {entries} entries, more than {MAX_ZIP_MEMBERS}")
    if cd_size > f.size:
        raise FormatError(f"zip: central directory of {cd_size} bytes in a {f.size}-byte file")
    f.seek(0)
    try:
        archive = zipfile.ZipFile(f)
    except _ZIP_ERRORS as exc:
        raise FormatError(f"zip: {exc}") from None
    for info in archive.infolist():
        if info.header_offset + _LOCAL_HEADER.size > f.size or info.compress_size > f.size:
            raise FormatError(f"zip: member {info.filename!r} claims bytes past the end of the file")
    return archive


def check_member(info: zipfile.ZipInfo, cap: int = MAX_ZIP_MEMBER_READ) -> None:
    """Refuse to inflate a member whose declared size or compression ratio is out of bounds."""
    if info.file_size > cap:
        raise FormatError(f"zip member {info.filename!r}: {info.file_size} bytes, more than {cap}")
    inflating = info.compress_type != zipfile.ZIP_STORED and info.file_size > MiB
    if inflating and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        raise FormatError(
            f"zip member {info.filename!r}: {info.compress_size} bytes inflating to {info.file_size} (zip bomb?)"
        )
    if info.flag_bits & 0x1:
        raise FormatError(f"zip member {info.filename!r} is encrypted")


def read_member(archive: zipfile.ZipFile, name: str, cap: int = MAX_ZIP_MEMBER_READ) -> bytes:
    """Read one member whole, never inflating more than ``cap`` bytes whatever its header says."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise FormatError(f"zip: no member {name!r}") from None
    check_member(info, cap)
    try:
        with archive.open(info) as member:
            data = member.read(cap + 1)
    except _ZIP_ERRORS as exc:
        raise FormatError(f"zip member {name!r}: {exc}") from None
    if len(data) > cap:
        raise FormatError(f"zip member {name!r} inflates past {cap} bytes")
    return data


def data_offset(f: BoundedFile, info: zipfile.ZipInfo) -> int:
    """Return the absolute offset of a member's (stored) bytes, read from its local header."""
    header = f.read_at(info.header_offset, _LOCAL_HEADER.size, f"local header of {info.filename!r}")
    fields = _LOCAL_HEADER.unpack(header)
    if fields[0] != ZIP_MAGIC:
        raise FormatError(f"zip: bad local header for {info.filename!r}")
    name_len, extra_len = fields[-2], fields[-1]
    start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if start + info.compress_size > f.size:
        raise FormatError(f"zip member {info.filename!r}: data runs past the end of the file")
    return start


class SubFile(io.RawIOBase):
    """A read-only window ``[start, start + length)`` of a bounded file, seekable within itself."""

    def __init__(self, f: BoundedFile, start: int, length: int) -> None:
        self._f = f
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._length - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        self._f.seek(self._start + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        left = max(0, self._length - self._pos)
        size = left if size is None or size < 0 else min(size, left)
        self._f.seek(self._start + self._pos)
        data = self._f.readline(size)
        self._pos += len(data)
        return data


def member_stream(f: BoundedFile, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> BinaryIO:
    """Stream a member: straight from the file when stored, through a capped inflater otherwise."""
    check_member(info, MAX_ZIP_MEMBER_READ)
    if info.compress_type == zipfile.ZIP_STORED:
        return SubFile(f, data_offset(f, info), info.file_size)  # type: ignore[return-value]
    return io.BytesIO(read_member(archive, info.filename))


def is_zip(head: bytes) -> bool:
    """Tell whether the first bytes start a zip archive."""
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC))
