"""safetensors: the header table, offsets into the data section, and headers that lie."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from regd.ingest.formats import read_file
from tests.modelfiles import default_tensors, safetensors_bytes, write_safetensors


def test_reads_every_tensor_with_absolute_offsets(tmp_path):
    tensors = default_tensors()
    path = write_safetensors(tmp_path / "m.safetensors", tensors, metadata={"format": "pt", "note": "x" * 5000})
    info = read_file(path)
    data = path.read_bytes()

    assert info.format == "safetensors"
    assert info.warnings == []
    by_name = {t.name: t for t in info.tensors}
    assert set(by_name) == set(tensors)
    dtypes = {"embed.weight": "F32", "layer.0.bias": "F16", "layer.0.steps": "I64", "scalar": "I32"}
    for name, array in tensors.items():
        t = by_name[name]
        assert t.dtype == dtypes[name]
        assert t.shape == list(array.shape)
        assert t.file == ""
        assert t.fingerprint is None
        assert data[t.offset : t.offset + t.nbytes] == array.tobytes()
    assert [t.offset for t in info.tensors] == sorted(t.offset for t in info.tensors)
    assert info.signature is not None
    assert {(s.name, s.dtype, tuple(s.shape)) for s in info.signature.tensors} == {
        (t.name, t.dtype, tuple(t.shape)) for t in info.tensors
    }
    assert info.metadata["safetensors_metadata"]["format"] == "pt"
    assert len(info.metadata["safetensors_metadata"]["note"]) < 1100  # long strings are cut
    assert info.metadata["tensor_count"] == 4
    assert info.metadata["param_count"] == 12 + 3 + 6 + 1


def test_empty_file_of_tensors_is_fine(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(safetensors_bytes({}))
    info = read_file(path)
    assert info.format == "safetensors" and info.warnings == [] and info.tensors == []


def _tensor_header(**entry):
    base = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    base.update(entry)
    return {"t": base}


LIES = {
    "length past the end": safetensors_bytes({"t": 1}, length=10_000),
    "4 GiB header claim": safetensors_bytes(b"{", length=4 * 1024**3),
    "header over the cap": safetensors_bytes(b"{}", length=200 * 1024**2),
    "u64 max length": struct.pack("<Q", 2**64 - 1) + b"{}",
    "shorter than the length field": b"\x05\x00\x00",
    "not json": safetensors_bytes(b"{not json at all"),
    "json array": safetensors_bytes([1, 2, 3]),
    "unknown dtype": safetensors_bytes(_tensor_header(dtype="F33"), b"\0" * 8),
    "negative dim": safetensors_bytes(_tensor_header(shape=[-2]), b"\0" * 8),
    "offsets past the data": safetensors_bytes(_tensor_header(data_offsets=[0, 8]), b"\0" * 4),
    "offsets reversed": safetensors_bytes(_tensor_header(data_offsets=[8, 0]), b"\0" * 8),
    "size disagrees with shape": safetensors_bytes(_tensor_header(shape=[3]), b"\0" * 8),
    "billions of elements": safetensors_bytes(_tensor_header(shape=[2**40, 2**40]), b"\0" * 8),
    "metadata not an object": safetensors_bytes({"__metadata__": [1]}),
    "entry not an object": safetensors_bytes({"t": "F32"}),
    "deeply nested json": safetensors_bytes(b"[" * 100_000 + b"]" * 100_000),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_lying_headers_give_format_errors(tmp_path, bounded, case):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(LIES[case])
    info = bounded(read_file, path)
    assert info.format == "safetensors"
    assert [w.code for w in info.warnings] == ["format_error"], info.warnings
    assert info.tensors == []


def test_every_truncation_is_reported(tmp_path, bounded):
    data = write_safetensors(tmp_path / "m.safetensors").read_bytes()
    header_end = 8 + struct.unpack("<Q", data[:8])[0]
    cut = tmp_path / "cut.safetensors"
    for size in [*range(0, header_end + 1, 7), header_end + 1, len(data) - 1]:
        cut.write_bytes(data[:size])
        info = bounded(read_file, cut)
        assert info.format == "safetensors"
        assert any(w.code == "format_error" for w in info.warnings), size


def test_header_metadata_values_are_kept_json_able(tmp_path):
    path = write_safetensors(tmp_path / "m.safetensors", {"a": np.zeros(1, np.float32)}, metadata={"k": "v"})
    info = read_file(path)
    json.dumps(info.metadata)
