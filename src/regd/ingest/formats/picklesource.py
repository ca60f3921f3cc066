"""Read a pickle stream's opcode arguments within a byte budget, skipping long payloads unread.

``pickletools.genops`` reads every argument into memory, so a pickle holding a 2 GiB BINBYTES
(a plain-pickled numpy array) would allocate 2 GiB; here a long byte or string argument becomes a
``Skipped`` record and the stream is seeked (or read forward in chunks) past it.
"""

from __future__ import annotations

import io
import pickletools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from regd.ingest.formats.limits import MAX_INLINE_BYTES, FormatError

_LINE_CAP = 64 * 1024
_CHUNK = 64 * 1024
MAX_INFLATE_SKIP = 4 * 1024**3
"""Payload bytes a walk may inflate just to step over them (joblib arrays in a compressed file)."""


@dataclass(eq=False)
class Skipped:
    """A byte or string argument too long to read into memory."""

    kind: str
    length: int
    offset: int


@dataclass(eq=False)
class Opaque:
    """A value the walker does not model (out-of-band buffers, huge longs)."""

    what: str


class PickleSource:
    """A buffered byte source that enforces the walk's budgets and skips without reading when it can.

    ``limit`` bounds the bytes actually parsed. Skipped payloads (array bytes, long strings) cost
    nothing on a seekable file and are bounded only by its size; on a decompressing stream they must
    be inflated, so they draw on ``MAX_INFLATE_SKIP``. Reads ahead in chunks (one Python call per
    opcode through a file wrapper would dominate the walk); ``release`` hands unread bytes back to a
    seekable stream so the next reader starts right.
    """

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.pos = 0
        """Bytes consumed, skipped ones included."""
        self.skipped = 0
        self._buf = b""
        self._off = 0
        try:
            self.seekable = stream.seekable()
        except (AttributeError, OSError):
            self.seekable = False

    def _fill(self, need: int) -> bool:
        """Make at least ``need`` unread bytes available; False at the end of the stream."""
        have = len(self._buf) - self._off
        while have < need:
            chunk = self.stream.read(max(_CHUNK, need - have))
            if not chunk:
                return False
            self._buf = self._buf[self._off :] + chunk
            self._off = 0
            have = len(self._buf)
        return True

    @property
    def walked(self) -> int:
        """Bytes parsed (consumed and not skipped)."""
        return self.pos - self.skipped

    def read(self, n: int) -> bytes:
        if n > self.limit - self.walked:
            raise OverLimit()
        if len(self._buf) - self._off < n and not self._fill(n):
            raise FormatError(f"pickle truncated at byte {self.pos + len(self._buf) - self._off}")
        data = self._buf[self._off : self._off + n]
        self._off += n
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        have = len(self._buf) - self._off
        if n <= have:
            self._off += n
            self.pos += n
            self.skipped += n
            return
        rest = n - have
        if self.seekable:
            here = self.stream.tell()
            end = self.stream.seek(0, io.SEEK_END)
            self.stream.seek(here)
            if here + rest > end:
                raise FormatError(f"pickle truncated: {n} bytes claimed at byte {self.pos}")
            self.stream.seek(here + rest)
        else:
            if self.skipped + n > MAX_INFLATE_SKIP:
                raise OverLimit()
            while rest:
                chunk = self.stream.read(min(rest, 1024 * 1024))
                if not chunk:
                    raise FormatError(f"pickle truncated: {n} bytes claimed at byte {self.pos}")
                rest -= len(chunk)
        self._buf, self._off = b"", 0
        self.pos += n
        self.skipped += n

    def readline(self, skippable: bool = False) -> bytes | None:
        """Read a newline-terminated argument; a longer-than-cap data line is skipped (None)."""
        cap = min(_LINE_CAP, self.limit - self.walked)
        while True:
            nl = self._buf.find(b"\n", self._off, self._off + cap)
            if nl >= 0:
                return self.read(nl + 1 - self._off)
            have = len(self._buf) - self._off
            if have >= cap or not self._fill(have + 1):
                break
        if have < cap:
            raise FormatError(f"pickle: unterminated line argument at byte {self.pos + have}")
        if not skippable:
            if cap < _LINE_CAP:
                raise OverLimit()
            raise FormatError(f"pickle: line argument longer than {_LINE_CAP} bytes at byte {self.pos}")
        while True:  # a long data line: step over it in chunks, keeping none of it
            nl = self._buf.find(b"\n", self._off)
            if nl >= 0:
                self.skip(nl + 1 - self._off)
                return None
            self.skip(len(self._buf) - self._off)
            if not self._fill(1):
                raise FormatError(f"pickle: unterminated line argument at byte {self.pos}")

    def release(self) -> None:
        """Rewind a seekable stream over bytes read ahead but not consumed."""
        unread = len(self._buf) - self._off
        if unread and self.seekable:
            self.stream.seek(-unread, io.SEEK_CUR)
            self._buf, self._off = b"", 0


class OverLimit(Exception):
    """The walk reached its byte budget."""


class TooManyOps(Exception):
    """The walk reached its opcode, stack, mark or memo budget."""


_LENGTH_PREFIX = {
    "string1": ("<B", "str"), "bytes1": ("<B", "bytes"), "unicodestring1": ("<B", "unicode"),
    "long1": ("<B", "long"), "string4": ("<i", "str"), "bytes4": ("<I", "bytes"),
    "unicodestring4": ("<I", "unicode"), "long4": ("<i", "long"), "bytes8": ("<Q", "bytes"),
    "bytearray8": ("<Q", "bytes"), "unicodestring8": ("<Q", "unicode"),
}  # fmt: skip
_FIXED = {"uint1": "<B", "uint2": "<H", "int4": "<i", "uint4": "<I", "uint8": "<Q", "float8": ">d"}


def read_arg(src: PickleSource, name: str) -> Any:
    """Read one opcode argument, skipping long byte payloads instead of loading them."""
    if name in _FIXED:
        code = _FIXED[name]
        return struct.unpack(code, src.read(struct.calcsize(code)))[0]
    if name in _LENGTH_PREFIX:
        code, kind = _LENGTH_PREFIX[name]
        (n,) = struct.unpack(code, src.read(struct.calcsize(code)))
        if n < 0:
            raise FormatError(f"pickle: negative length {n} at byte {src.pos}")
        if n > MAX_INLINE_BYTES:
            start = src.pos
            src.skip(n)
            return Skipped(kind, n, start)
        data = src.read(n)
        if kind == "unicode":
            return data.decode("utf-8", "surrogatepass")
        if kind == "str":
            return data.decode("latin-1")
        if kind == "long":
            return pickletools.decode_long(data)
        return data
    start = src.pos
    line = src.readline(skippable=name in _SKIPPABLE_LINES)
    if line is None:
        return Skipped(name, src.pos - start, start)
    if name == "stringnl_noescape_pair":  # GLOBAL and INST: module and name on two lines
        line += src.readline() or b""
    try:
        # pickletools' own readers parse the newline-terminated (protocol 0) forms.
        return _NEWLINE_READERS[name](io.BytesIO(line))
    except ValueError:
        if name == "decimalnl_long":
            return Opaque("long")
        raise


_SKIPPABLE_LINES = {"stringnl", "unicodestringnl", "decimalnl_long"}
_NEWLINE_READERS: dict[str, Callable[[BinaryIO], Any]] = {
    op.arg.name: op.arg.reader
    for op in pickletools.opcodes
    if op.arg is not None and op.arg.n == pickletools.UP_TO_NEWLINE
}
