"""Read a safetensors header: an 8-byte length, a JSON table of tensors, then their raw bytes."""

from __future__ import annotations

import struct
from pathlib import Path

from regd.domain import TensorFingerprint
from regd.ingest.formats.info import FormatInfo, add_counts, tensor_signature
from regd.ingest.formats.limits import (
    MAX_DIMS,
    MAX_NAME,
    MAX_SAFETENSORS_HEADER,
    MAX_TENSORS,
    BoundedFile,
    FormatError,
    bounded,
    load_json,
    numel,
)

# Bits per element: sub-byte float formats (F4, F6_*) are packed.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8,
    "U16": 16, "I16": 16, "F16": 16, "BF16": 16,
    "U32": 32, "I32": 32, "F32": 32,
    "U64": 64, "I64": 64, "F64": 64,
    "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip


def read_safetensors(path: Path) -> FormatInfo:
    """Read the tensor table and ``__metadata__`` of a safetensors file."""
    info = FormatInfo(format="safetensors")
    with BoundedFile.open(path) as f:
        try:
            info.tensors, meta = _read_header(f)
        except FormatError as exc:
            info.format_error(str(exc))
            return info
    if meta:
        info.metadata["safetensors_metadata"] = bounded(meta)
    info.signature = tensor_signature(info.tensors)
    add_counts(info)
    return info


def _read_header(f: BoundedFile) -> tuple[list[TensorFingerprint], dict[str, str]]:
    (length,) = struct.unpack("<Q", f.read_exact(8, "safetensors header length"))
    if length > MAX_SAFETENSORS_HEADER:
        raise FormatError(f"safetensors header claims {length} bytes, more than {MAX_SAFETENSORS_HEADER}")
    if length > f.size - 8:
        raise FormatError(f"safetensors header claims {length} bytes but the file has {f.size - 8} after the length")
    header = load_json(f.read_exact(length, "safetensors header"), "safetensors header")
    if not isinstance(header, dict):
        raise FormatError("safetensors header is not a JSON object")
    data_start = 8 + length
    data_size = f.size - data_start
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise FormatError("safetensors __metadata__ is not an object")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"safetensors header lists {len(header)} tensors, more than {MAX_TENSORS}")
    tensors = [_tensor(name, entry, data_start, data_size) for name, entry in header.items()]
    tensors.sort(key=lambda t: (t.offset or 0, t.name))
    return tensors, meta


def _tensor(name: str, entry: object, data_start: int, data_size: int) -> TensorFingerprint:
    if len(name) > MAX_NAME:
        raise FormatError("safetensors tensor name too long")
    if not isinstance(entry, dict):
        raise FormatError(f"safetensors tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise FormatError(f"safetensors tensor {name!r}: unknown dtype {str(dtype)[:32]!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_DIMS
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise FormatError(f"safetensors tensor {name!r}: bad shape")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
    ):
        raise FormatError(f"safetensors tensor {name!r}: bad data_offsets")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise FormatError(
            f"safetensors tensor {name!r}: data_offsets {offsets} outside the {data_size}-byte data section"
        )
    bits = numel(shape) * DTYPE_BITS[dtype]
    expected = (bits + 7) // 8
    if end - begin != expected:
        raise FormatError(f"safetensors tensor {name!r}: {end - begin} bytes for {dtype}{shape}, expected {expected}")
    return TensorFingerprint(name=name, dtype=dtype, shape=list(shape), offset=data_start + begin, nbytes=end - begin)
