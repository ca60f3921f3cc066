"""Walk protobuf wire format straight off disk, seeking over the fields nobody asked for.

ONNX and TensorFlow files are protobuf messages that can be gigabytes long (weights inline); the
protobuf libraries parse the whole message into memory. This walker yields each field's number and
either its scalar value or the byte span of its payload, so a reader descends only where it needs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from regd.ingest.formats.limits import BoundedFile, FormatError

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
MAX_FIELDS = 20_000_000
"""Fields visited per file: every field costs Python time even when its payload is skipped."""
_WINDOW = 64 * 1024


@dataclass(frozen=True, slots=True)
class Field:
    """One field: ``value`` for scalars, ``offset``/``length`` (absolute) for length-delimited payloads."""

    number: int
    wire: int
    value: int = 0
    offset: int = 0
    length: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.length


class ProtoFile:
    """Random access to a protobuf file through a small read window."""

    def __init__(self, f: BoundedFile) -> None:
        self.f = f
        self.size = f.size
        self._buf = b""
        self._buf_start = 0
        self._fields = 0

    def _window(self, pos: int, n: int) -> bytes:
        """Return up to ``n`` bytes at ``pos`` (fewer only at the end of the file)."""
        rel = pos - self._buf_start
        if rel < 0 or rel + n > len(self._buf):
            self.f.seek(pos)
            self._buf = self.f.read(max(n, _WINDOW))
            self._buf_start = pos
            rel = 0
        return self._buf[rel : rel + n]

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        """Decode a varint at ``pos`` that must end before ``end``; return (value, next pos)."""
        data = self._window(pos, min(10, end - pos))
        result = 0
        for i, byte in enumerate(data):
            result |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                return result, pos + i + 1
        raise FormatError(f"protobuf: truncated or overlong varint at offset {pos}")

    def fields(self, start: int, end: int) -> Iterator[Field]:
        """Yield the fields of the message occupying ``[start, end)``."""
        if end > self.size:
            raise FormatError(f"protobuf: message ends at {end}, past the {self.size}-byte file")
        pos = start
        while pos < end:
            self._fields += 1
            if self._fields > MAX_FIELDS:
                raise FormatError(f"protobuf: more than {MAX_FIELDS} fields")
            tag, pos = self.varint(pos, end)
            number, wire = tag >> 3, tag & 7
            if number == 0:
                raise FormatError(f"protobuf: field number 0 at offset {pos}")
            if wire == VARINT:
                value, pos = self.varint(pos, end)
                yield Field(number, wire, value=value)
            elif wire == LEN:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise FormatError(
                        f"protobuf: field {number} claims {length} bytes at offset {pos}, only {end - pos} left"
                    )
                yield Field(number, wire, offset=pos, length=length)
                pos += length
            elif wire in (FIXED64, FIXED32):
                size = 8 if wire == FIXED64 else 4
                if size > end - pos:
                    raise FormatError(f"protobuf: truncated fixed field at offset {pos}")
                value = int.from_bytes(self._window(pos, size), "little")
                yield Field(number, wire, value=value)
                pos += size
            else:
                raise FormatError(f"protobuf: unsupported wire type {wire} at offset {pos}")

    def bytes(self, field: Field, cap: int, what: str) -> bytes:
        """Read a length-delimited payload no longer than ``cap``."""
        if field.wire != LEN:
            raise FormatError(f"protobuf: {what} has wire type {field.wire}, expected bytes")
        if field.length > cap:
            raise FormatError(f"protobuf: {what} is {field.length} bytes, more than {cap}")
        if field.length <= _WINDOW:
            return self._window(field.offset, field.length)
        return self.f.read_at(field.offset, field.length, what)

    def string(self, field: Field, what: str, cap: int = 64 * 1024, keep: int | None = None) -> str:
        """Read a string payload; with ``keep``, a longer one is cut instead of refused."""
        if keep is not None and field.wire == LEN and field.length > keep:
            head = Field(field.number, field.wire, offset=field.offset, length=keep)
            return self.bytes(head, keep, what).decode("utf-8", errors="replace") + "…"
        return self.bytes(field, cap, what).decode("utf-8", errors="replace")

    def ints(self, field: Field, what: str, limit: int = 64) -> list[int]:
        """Decode a repeated integer field occurrence: one varint, or a packed run of them."""
        if field.wire == VARINT:
            return [field.value]
        if field.wire != LEN:
            raise FormatError(f"protobuf: {what} has wire type {field.wire}")
        out: list[int] = []
        pos = field.offset
        while pos < field.end:
            if len(out) >= limit:
                raise FormatError(f"protobuf: {what} has more than {limit} values")
            value, pos = self.varint(pos, field.end)
            out.append(value)
        return out


def signed64(value: int) -> int:
    """Reinterpret a varint as a two's-complement int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def expect(field: Field, wire: int, what: str) -> None:
    """Raise FormatError when ``field`` does not have the wire type its schema says."""
    if field.wire != wire:
        raise FormatError(f"protobuf: {what} has wire type {field.wire}, expected {wire}")
