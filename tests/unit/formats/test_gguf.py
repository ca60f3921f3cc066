"""GGUF: key-values, tensor infos, alignment, quantised sizes, and counts that lie."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from regd.ingest.formats import read_file
from regd.ingest.formats.gguf import GGML_TYPES
from tests.modelfiles import gguf_header, write_gguf


def test_reads_key_values_and_tensors(tmp_path):
    tensors = {"tok.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "norm": np.ones(5, np.float16)}
    kv = {"x.words": ["a", "b", "c"] * 10, "x.ints": list(range(100)), "x.flag": True, "x.ratio": 0.25, "x.text": "hi"}
    path = write_gguf(tmp_path / "m.gguf", tensors, kv, quantized=True)
    info = read_file(path)
    data = path.read_bytes()

    assert info.format == "gguf" and info.warnings == []
    meta = info.metadata
    assert meta["gguf_version"] == 3
    assert meta["alignment"] == 32
    assert meta["architecture"] == "llama"
    assert meta["name"] == "regd-test-model"
    assert meta["data_offset"] % 32 == 0
    kv_read = meta["kv"]
    assert kv_read["llama.context_length"] == 2048
    assert kv_read["x.flag"] is True and kv_read["x.ratio"] == 0.25 and kv_read["x.text"] == "hi"
    assert kv_read["x.words"] == {"type": "STRING", "len": 30, "head": ["a", "b", "c", "a", "b", "c", "a", "b"]}
    assert kv_read["x.ints"]["len"] == 100 and kv_read["x.ints"]["head"] == list(range(8))

    by_name = {t.name: t for t in info.tensors}
    assert by_name["tok.weight"].dtype == "F32" and by_name["tok.weight"].shape == [3, 4]
    assert by_name["norm"].dtype == "F16" and by_name["norm"].shape == [5]
    for name, array in tensors.items():
        t = by_name[name]
        assert data[t.offset : t.offset + t.nbytes] == array.tobytes()
    q8 = by_name["q8.weight"]
    assert (q8.dtype, q8.shape, q8.nbytes) == ("Q8_0", [2, 32], 68)
    assert data[q8.offset + 2 : q8.offset + 34] == bytes(range(32))
    assert info.signature.extra == {"architecture": "llama"}
    assert [s.name for s in info.signature.tensors] == [t.name for t in info.tensors]


def test_custom_alignment(tmp_path):
    path = write_gguf(tmp_path / "m.gguf", {"a": np.ones(3, np.float32), "b": np.ones(7, np.float32)}, alignment=64)
    info = read_file(path)
    assert info.warnings == []
    assert info.metadata["alignment"] == 64
    assert all((t.offset - info.metadata["data_offset"]) % 64 == 0 for t in info.tensors)


def test_big_endian_files(tmp_path):
    import gguf

    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_uint32("x.n", 7)
    writer.add_tensor("w", np.arange(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = read_file(path)
    assert info.warnings == []
    assert info.metadata["byte_order"] == "big"
    assert info.metadata["kv"]["x.n"] == 7
    (t,) = info.tensors
    assert (t.name, t.shape) == ("w", [4])
    assert path.read_bytes()[t.offset : t.offset + t.nbytes] == np.arange(4, dtype=">f4").tobytes()


def test_type_table_matches_the_gguf_package():
    from gguf.constants import GGML_QUANT_SIZES

    ours = {code: (block, size) for code, (_, block, size) in GGML_TYPES.items()}
    theirs = {t.value: sizes for t, sizes in GGML_QUANT_SIZES.items()}
    assert {k: v for k, v in theirs.items() if k in ours} == {k: v for k, v in ours.items() if k in theirs}
    assert {GGML_TYPES[t.value][0] for t in GGML_QUANT_SIZES if t.value in GGML_TYPES} == {
        t.name for t in GGML_QUANT_SIZES if t.value in GGML_TYPES
    }


def _kv_string(key: str, value: bytes, claimed: int | None = None) -> bytes:
    raw_key = key.encode()
    length = len(value) if claimed is None else claimed
    return struct.pack("<Q", len(raw_key)) + raw_key + struct.pack("<IQ", 8, length) + value


def _tensor_info(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    raw = name.encode()
    return (
        struct.pack("<Q", len(raw))
        + raw
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", ggml_type, offset)
    )


LIES = {
    "billions of tensors": gguf_header(3, 3_000_000_000, 0) + b"\0" * 64,
    "billions of key-values": gguf_header(3, 0, 3_000_000_000) + b"\0" * 64,
    "counts past the file": gguf_header(3, 1000, 1000) + b"\0" * 64,
    "string length lie": gguf_header(3, 0, 1) + _kv_string("k", b"abc", claimed=2**62),
    "array length lie": gguf_header(3, 0, 1)
    + struct.pack("<Q", 1)
    + b"k"
    + struct.pack("<IIQ", 9, 4, 2**61)
    + b"\0" * 16,
    "string array length lie": gguf_header(3, 0, 1)
    + struct.pack("<Q", 1)
    + b"k"
    + struct.pack("<IIQ", 9, 8, 10**9)
    + b"\0" * 16,
    "unknown value type": gguf_header(3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99) + b"\0" * 16,
    "arrays nested without end": gguf_header(3, 0, 1)
    + struct.pack("<Q", 1)
    + b"k"
    + struct.pack("<I", 9)
    + struct.pack("<IQ", 9, 1) * 200,
    "bad alignment": gguf_header(3, 0, 1) + struct.pack("<Q", 17) + b"general.alignment" + struct.pack("<II", 4, 3),
    "version 1": gguf_header(1, 0, 0),
    "version 99": gguf_header(99, 0, 0),
    "too many dims": gguf_header(3, 1, 0) + _tensor_info("t", [1] * 40) + b"\0" * 64,
    "unknown ggml type": gguf_header(3, 1, 0) + _tensor_info("t", [4], ggml_type=4) + b"\0" * 64,
    "tensor past the end": gguf_header(3, 1, 0) + _tensor_info("t", [1024]) + b"\0" * 64,
    "unaligned tensor offset": gguf_header(3, 1, 0) + _tensor_info("t", [1], offset=3) + b"\0" * 64,
    "row not a block multiple": gguf_header(3, 1, 0) + _tensor_info("t", [33], ggml_type=8) + b"\0" * 128,
    "huge dims": gguf_header(3, 1, 0) + _tensor_info("t", [2**40, 2**40]) + b"\0" * 64,
    "just the magic": b"GGUF",
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_lying_headers_give_format_errors(tmp_path, bounded, case):
    path = tmp_path / "bad.gguf"
    path.write_bytes(LIES[case])
    info = bounded(read_file, path)
    assert info.format == "gguf"
    assert [w.code for w in info.warnings] == ["format_error"], info.warnings


def test_every_truncation_is_reported(tmp_path, bounded):
    path = write_gguf(tmp_path / "m.gguf", kv={"x.words": ["w"] * 50})
    data = path.read_bytes()
    end = max(t.offset + t.nbytes for t in read_file(path).tensors)  # the writer pads after the last tensor
    cut = tmp_path / "cut.gguf"
    for size in [*range(0, end, 13), end - 1]:
        cut.write_bytes(data[:size])
        info = bounded(read_file, cut)
        assert info.format == "gguf"
        assert any(w.code == "format_error" for w in info.warnings), size


def test_extension_without_magic(tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"not a gguf file at all")
    info = read_file(path)
    assert info.format == "gguf" and info.warnings[0].code == "format_error"
