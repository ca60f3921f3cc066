"""Dispatch by magic and extension; no input, however hostile, escapes read_file as an exception."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regd.ingest.formats import FormatInfo, detect, read_file
from tests.modelfiles import (
    FIXTURES,
    HDF5_MAGIC,
    write_gguf,
    write_joblib,
    write_keras,
    write_onnx,
    write_pickle,
    write_safetensors,
    write_skops,
    write_torch_zip,
)

EXTENSIONS = [
    ".safetensors",
    ".gguf",
    ".onnx",
    ".pt",
    ".pth",
    ".ckpt",
    ".bin",
    ".keras",
    ".h5",
    ".pkl",
    ".joblib",
    ".skops",
    ".dat",
]


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("model.safetensors", b"", "safetensors"),
        ("weights.dat", b'\x07\x00\x00\x00\x00\x00\x00\x00{"a":1}', "safetensors"),
        ("model.bin", b"GGUF\x03\x00\x00\x00", "gguf"),
        ("model.gguf", b"nope", "gguf"),
        ("model.onnx", b"\x08\x07", "onnx"),
        ("model.h5", HDF5_MAGIC, "keras-h5"),
        ("data.hdf5", HDF5_MAGIC, "keras-h5"),
        ("blob.dat", HDF5_MAGIC, "unknown"),
        ("model.pt", b"\x80\x02\x8a\x0a", "pytorch"),
        ("model.bin", b"\x80\x02}q\x00", "pytorch"),
        ("model.pkl", b"\x80\x04\x95", "pickle"),
        ("anything.dat", b"\x80\x04\x95", "pickle"),
        ("model.joblib", b"\x80\x04\x95", "joblib"),
        ("model.pkl", b"\x78\x9c\x01\x02", "joblib"),
        ("model.pkl.gz", b"\x1f\x8b", "joblib"),
        ("model.pkl", b"(dp0\n", "pickle"),
        ("MLmodel", b"flavors:", "mlflow"),
        ("saved_model.pb", b"\x08\x01", "tensorflow-savedmodel"),
        ("notes.txt", b"hello", "unknown"),
        ("model.bin", b"\x00\x01", "unknown"),
    ],
)
def test_detect(tmp_path, name, head, expected):
    path = tmp_path / name
    path.write_bytes(head)
    assert detect(path, head[:16], len(head)) == expected


def test_zip_members_decide(tmp_path):
    assert read_file(write_torch_zip(tmp_path / "a.zip")).format == "pytorch"
    assert read_file(write_keras(tmp_path / "a.zip")).format == "keras"
    assert read_file(write_skops(tmp_path / "b.zip")).format == "skops"
    assert read_file(write_torch_zip(tmp_path / "weights.keras")).format == "pytorch"


def test_unknown_format_warning(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("hello")
    info = read_file(path)
    assert info.format == "unknown"
    assert [w.code for w in info.warnings] == ["unknown_format"]


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "gone.safetensors")


def test_directory_is_an_os_error(tmp_path):
    with pytest.raises(OSError):
        read_file(tmp_path)


def test_a_fifo_is_not_opened(tmp_path, bounded):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    info = bounded(read_file, fifo)
    assert info.format == "unknown" and info.warnings[0].code == "unknown_format"


def test_results_are_json_able(tmp_path):
    paths = [
        write_safetensors(tmp_path / "a.safetensors", metadata={"k": "v"}),
        write_gguf(tmp_path / "a.gguf", kv={"x.f": float("nan"), "x.l": ["a"] * 100}),
        write_onnx(tmp_path / "a.onnx"),
        write_torch_zip(tmp_path / "a.pt"),
        write_keras(tmp_path / "a.keras"),
        write_skops(tmp_path / "a.skops"),
        write_joblib(tmp_path / "a.joblib"),
        write_pickle(tmp_path / "a.pkl", ["os:system"]),
        *sorted(FIXTURES.glob("tiny*")),
    ]
    for path in paths:
        info = read_file(path)
        json.dumps(info.metadata, allow_nan=False)
        assert isinstance(info, FormatInfo)


@functools.cache
def _samples() -> dict[str, bytes]:
    """Real files of every format, built once, for the mutation fuzzer."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="regd-fuzz-"))
    builders = {
        ".safetensors": write_safetensors, ".gguf": write_gguf, ".onnx": write_onnx, ".pt": write_torch_zip,
        ".keras": write_keras, ".skops": write_skops, ".joblib": write_joblib,
        ".pkl": lambda p: write_pickle(p, ["os:system", "numpy:dtype"], call=("os:system", ("true",))),
    }  # fmt: skip
    samples = {ext: build(root / f"m{ext}").read_bytes() for ext, build in builders.items()}
    samples[".ckpt"] = (FIXTURES / "tiny_lightning.ckpt").read_bytes()
    samples[".pth"] = (FIXTURES / "tiny_torch_legacy.pt").read_bytes()
    return samples


def _read_bytes(bounded, tmp_path: Path, ext: str, data: bytes) -> FormatInfo:
    path = tmp_path / f"fuzz{ext}"
    path.write_bytes(data)
    info = bounded(read_file, path)
    assert isinstance(info, FormatInfo)
    json.dumps(info.metadata, allow_nan=False)
    return info


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(ext=st.sampled_from(EXTENSIONS), data=st.binary(max_size=512))
def test_random_bytes_never_raise(tmp_path, bounded, ext, data):
    _read_bytes(bounded, tmp_path, ext, data)


@FUZZ
@given(
    ext=st.sampled_from(
        [".safetensors", ".gguf", ".onnx", ".pt", ".keras", ".skops", ".joblib", ".pkl", ".ckpt", ".pth"]
    ),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.floats(0.05, 1.0),
)
def test_mutated_real_files_never_raise(tmp_path, bounded, ext, flips, cut):
    data = bytearray(_samples()[ext])
    for where, value in flips:
        data[int(where * len(data))] = value
    _read_bytes(bounded, tmp_path, ext, bytes(data[: max(1, int(len(data) * cut))]))
