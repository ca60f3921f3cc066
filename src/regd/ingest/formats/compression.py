"""Stream the decompressed bytes of a joblib file, inflating only as far as the reader pulls.

joblib compresses the whole stream (pickle and array bytes) with zlib, gzip, xz/lzma or bz2; a bomb
costs nothing here because nothing is inflated ahead of the pickle walk, which has its own budget.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import Any, BinaryIO

from regd.ingest.formats.limits import BoundedFile, FormatError

# First bytes of the compressed containers joblib writes.
_COMPRESSIONS = [
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"ZF0x", "joblib-zf"),
    (b"\x5d\x00\x00", "lzma"),
]


def sniff_compression(head: bytes) -> str | None:
    """Name the compression of a joblib file from its first bytes, or None for a raw pickle."""
    for magic, name in _COMPRESSIONS:
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


class _ForwardOnly(io.RawIOBase):
    """Present a decompressing stream as unseekable, so skips read forward instead of seeking to the end."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int | None = -1) -> bytes:
        return self._inner.read(n if n is not None and n >= 0 else 1024 * 1024)

    def readline(self, size: int | None = -1) -> bytes:
        return self._inner.readline(size if size is not None else -1)


class _Inflate(io.RawIOBase):
    """Stream a zlib-compressed file, producing no more than asked for at a time."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._z = zlib.decompressobj()
        self._pending = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int | None = -1) -> bytes:
        n = 1024 * 1024 if n is None or n < 0 else n
        out = bytearray()
        while len(out) < n:
            if not self._pending:
                if self._z.eof:
                    break
                chunk = self._z.unconsumed_tail or self._raw.read(64 * 1024)
                if not chunk:
                    break
                self._pending = self._z.decompress(chunk, n - len(out))
                if not self._pending and not self._z.unconsumed_tail and self._z.eof:
                    break
                continue
            take = self._pending[: n - len(out)]
            self._pending = self._pending[len(take) :]
            out += take
        return bytes(out)

    def readline(self, size: int | None = -1) -> bytes:
        size = 64 * 1024 if size is None or size < 0 else size
        out = bytearray()
        while len(out) < size:
            ch = self.read(1)
            if not ch:
                break
            out += ch
            if ch == b"\n":
                break
        return bytes(out)


def open_pickle_stream(f: BoundedFile, compression: str | None) -> BinaryIO:
    """Return a stream of the decompressed pickle bytes; decompression is pulled only as far as read."""
    if compression is None:
        return f
    if compression == "zlib":
        return _Inflate(f)  # type: ignore[return-value]
    if compression == "gzip":
        return _ForwardOnly(gzip.GzipFile(fileobj=f))  # type: ignore[return-value]
    if compression in ("xz", "lzma"):
        return _ForwardOnly(lzma.LZMAFile(f))  # type: ignore[return-value]
    if compression == "bz2":
        return _ForwardOnly(bz2.BZ2File(f))  # type: ignore[return-value]
    raise FormatError(f"{compression} compression is not supported for scanning")
