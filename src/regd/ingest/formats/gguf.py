"""Read a GGUF header (v2, v3; either byte order): key-values, tensor infos, data section start.

Shapes are reported outermost-first like numpy's (GGUF stores ``ne`` innermost-first), so a
tensor reads the same here as in the safetensors file it was converted from.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from regd.domain import Signature, TensorFingerprint, TensorSpec
from regd.ingest.formats.info import FormatInfo, add_counts
from regd.ingest.formats.limits import (
    MAX_DEPTH,
    MAX_META_HEAD,
    MAX_META_KEYS,
    MAX_META_STRING,
    MAX_NAME,
    MAX_TENSORS,
    BoundedFile,
    FormatError,
    bounded,
)

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_KV = 1_000_000
MAX_STRING = 256 * 1024 * 1024
MAX_ARRAY_ELEMENTS = 16_000_000
"""Variable-sized array elements walked per file: a real vocabulary has a few hundred thousand."""
MAX_TENSOR_DIMS = 8  # ggml uses 4; a little slack for future versions

# ggml type id -> (name, elements per block, bytes per block); ids 4, 5, 31-33, 36-38 were retired.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}  # fmt: skip

# value type id -> (name, struct code); 8 string and 9 array are variable-sized.
VALUE_TYPES: dict[int, tuple[str, str]] = {
    0: ("UINT8", "B"), 1: ("INT8", "b"), 2: ("UINT16", "H"), 3: ("INT16", "h"), 4: ("UINT32", "I"),
    5: ("INT32", "i"), 6: ("FLOAT32", "f"), 7: ("BOOL", "?"), 8: ("STRING", ""), 9: ("ARRAY", ""),
    10: ("UINT64", "Q"), 11: ("INT64", "q"), 12: ("FLOAT64", "d"),
}  # fmt: skip
STRING, ARRAY = 8, 9
# A key-value takes at least key length (8) + type (4) + 1 byte; a tensor info name length (8) +
# n_dims (4) + type (4) + offset (8). Checked against the file size before looping over counts.
MIN_KV_BYTES = 13
MIN_TENSOR_INFO_BYTES = 24


def read_gguf(path: Path) -> FormatInfo:
    """Read the key-values and tensor table of a GGUF file."""
    info = FormatInfo(format="gguf")
    with BoundedFile.open(path) as f:
        try:
            _Reader(f, info).read()
        except FormatError as exc:
            info.format_error(str(exc))
        except (struct.error, UnicodeDecodeError, RecursionError) as exc:
            info.format_error(f"gguf: {exc}")
    return info


class _Reader:
    def __init__(self, f: BoundedFile, info: FormatInfo) -> None:
        self.f = f
        self.info = info
        self.endian = "<"
        self.elements = 0

    def unpack(self, code: str, what: str) -> Any:
        size = struct.calcsize(code)
        return struct.unpack(self.endian + code, self.f.read_exact(size, what))[0]

    def string(self, what: str, cap: int = MAX_STRING, keep: int | None = None) -> str:
        """Read a length-prefixed string, keeping at most ``keep`` bytes of it in memory."""
        length = self.unpack("Q", what)
        if length > cap:
            raise FormatError(f"gguf {what}: string of {length} bytes")
        if keep is None or length <= keep:
            return self.f.read_exact(length, what).decode("utf-8", errors="replace")
        head = self.f.read_exact(keep, what).decode("utf-8", errors="replace")
        self.skip(length - keep, what)
        return head + "…"

    def skip(self, n: int, what: str) -> None:
        if n > self.f.size - self.f.tell():
            raise FormatError(f"gguf {what}: {n} bytes claimed past the end of the file")
        self.f.seek(n, 1)

    def read(self) -> None:
        if self.f.read_exact(4, "gguf magic") != MAGIC:
            raise FormatError("gguf: bad magic")
        raw_version = self.f.read_exact(4, "gguf version")
        version = struct.unpack("<I", raw_version)[0]
        if version not in (2, 3) and struct.unpack(">I", raw_version)[0] in (2, 3):
            self.endian = ">"
            version = struct.unpack(">I", raw_version)[0]
        if version not in (2, 3):
            raise FormatError(f"gguf: unsupported version {version}")
        n_tensors = self.unpack("Q", "tensor count")
        n_kv = self.unpack("Q", "key-value count")
        left = self.f.size - self.f.tell()
        if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
            raise FormatError(f"gguf: {n_tensors} tensors / {n_kv} key-values exceed the caps")
        if n_tensors * MIN_TENSOR_INFO_BYTES + n_kv * MIN_KV_BYTES > left:
            raise FormatError(f"gguf: {n_tensors} tensors and {n_kv} key-values cannot fit in {left} bytes")
        meta = self.info.metadata
        meta["gguf_version"] = version
        if self.endian == ">":
            meta["byte_order"] = "big"
        kv: dict[str, Any] = {}
        alignment = DEFAULT_ALIGNMENT
        for _ in range(n_kv):
            key = self.string("key", MAX_NAME)
            vtype = self.unpack("I", "value type")
            value = self.value(vtype, key, 0)
            if key == "general.alignment":
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0 or value & (value - 1):
                    raise FormatError(f"gguf: general.alignment {value!r} is not a power of two")
                alignment = value
            if len(kv) < MAX_META_KEYS:
                kv[key] = value
        infos = [self.tensor_info() for _ in range(n_tensors)]
        header_end = self.f.tell()
        data_start = -(-header_end // alignment) * alignment
        meta["alignment"] = alignment
        meta["data_offset"] = data_start
        meta["kv"] = kv
        if isinstance(kv.get("general.architecture"), str):
            meta["architecture"] = kv["general.architecture"]
        if isinstance(kv.get("general.name"), str):
            meta["name"] = kv["general.name"]
        self.info.tensors = [self.locate(i, data_start, alignment) for i in infos]
        extra = {"architecture": meta["architecture"]} if "architecture" in meta else {}
        specs = [TensorSpec(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in self.info.tensors]
        self.info.signature = Signature(tensors=specs, extra=extra) if specs or extra else None
        add_counts(self.info)

    def value(self, vtype: int, key: str, depth: int) -> Any:
        if vtype not in VALUE_TYPES:
            raise FormatError(f"gguf key {key!r}: unknown value type {vtype}")
        if vtype == STRING:
            return self.string(f"value of {key!r}", keep=MAX_META_STRING)
        if vtype == ARRAY:
            return self.array(key, depth)
        return bounded(self.unpack(VALUE_TYPES[vtype][1], f"value of {key!r}"))

    def array(self, key: str, depth: int) -> dict[str, Any]:
        if depth >= MAX_DEPTH:
            raise FormatError(f"gguf key {key!r}: arrays nested too deep")
        etype = self.unpack("I", f"array type of {key!r}")
        count = self.unpack("Q", f"array length of {key!r}")
        if etype not in VALUE_TYPES:
            raise FormatError(f"gguf key {key!r}: unknown array element type {etype}")
        left = self.f.size - self.f.tell()
        code = VALUE_TYPES[etype][1]
        size = struct.calcsize(code) if code else 8  # strings and arrays take at least 8 bytes each
        if count * size > left:
            raise FormatError(f"gguf key {key!r}: array of {count} elements cannot fit in {left} bytes")
        head: list[Any] = []
        if not code:
            self.elements += count
            if self.elements > MAX_ARRAY_ELEMENTS:
                raise FormatError(f"gguf: more than {MAX_ARRAY_ELEMENTS} variable-sized array elements")
        if code:
            # Fixed-size elements: read the head, seek over the rest.
            n = min(count, MAX_META_HEAD)
            raw = self.f.read_exact(n * size, f"array of {key!r}")
            head = [bounded(v) for v in struct.unpack(f"{self.endian}{n}{code}", raw)]
            self.skip((count - n) * size, f"array of {key!r}")
        elif etype == STRING:
            n = min(count, MAX_META_HEAD)
            head = [self.string(f"array of {key!r}", keep=MAX_META_STRING) for _ in range(n)]
            self.skip_strings(count - n, key)
        else:
            for i in range(count):
                item = self.value(etype, key, depth + 1)
                if i < MAX_META_HEAD:
                    head.append(item)
        return {"type": VALUE_TYPES[etype][0], "len": count, "head": head}

    def skip_strings(self, count: int, key: str) -> None:
        """Step over ``count`` length-prefixed strings, parsing lengths from 1 MiB reads (vocabularies are big)."""
        code = self.endian + "Q"
        buf, off = b"", 0
        for _ in range(count):
            if len(buf) - off < 8:
                buf, off = buf[off:] + self.f.read(1 << 20), 0
                if len(buf) < 8:
                    raise FormatError(f"gguf key {key!r}: string array truncated")
            (length,) = struct.unpack_from(code, buf, off)
            off += 8
            if length > MAX_STRING:
                raise FormatError(f"gguf key {key!r}: string of {length} bytes")
            if len(buf) - off >= length:
                off += length
            else:
                self.skip(length - (len(buf) - off), f"array of {key!r}")
                buf, off = b"", 0
        if len(buf) - off:
            self.f.seek(off - len(buf), 1)  # hand back what was read ahead

    def tensor_info(self) -> tuple[str, list[int], int, int]:
        name = self.string("tensor name", MAX_NAME)
        n_dims = self.unpack("I", f"n_dims of {name!r}")
        if n_dims > MAX_TENSOR_DIMS:
            raise FormatError(f"gguf tensor {name!r}: {n_dims} dimensions")
        dims = [self.unpack("Q", f"dims of {name!r}") for _ in range(n_dims)]
        ggml_type = self.unpack("I", f"type of {name!r}")
        offset = self.unpack("Q", f"offset of {name!r}")
        return name, dims, ggml_type, offset

    def locate(self, raw: tuple[str, list[int], int, int], data_start: int, alignment: int) -> TensorFingerprint:
        name, dims, ggml_type, offset = raw
        if ggml_type not in GGML_TYPES:
            raise FormatError(f"gguf tensor {name!r}: unknown ggml type {ggml_type}")
        type_name, block, block_bytes = GGML_TYPES[ggml_type]
        count = 1
        for d in dims:
            count *= d
        if dims and dims[0] % block:
            raise FormatError(
                f"gguf tensor {name!r}: {dims[0]} elements per row is not a multiple of {type_name}'s block {block}"
            )
        nbytes = count // block * block_bytes
        if offset % alignment:
            raise FormatError(f"gguf tensor {name!r}: offset {offset} not aligned to {alignment}")
        start = data_start + offset
        if start + nbytes > self.f.size:
            raise FormatError(
                f"gguf tensor {name!r}: bytes {start}..{start + nbytes} past the end of the {self.f.size}-byte file"
            )
        return TensorFingerprint(name=name, dtype=type_name, shape=list(reversed(dims)), offset=start, nbytes=nbytes)
