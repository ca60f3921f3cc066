"""Fuzz the format readers: mutated real files and hand-built hostile headers, through ``read_file``.

``tests/unit/formats/test_dispatch.py`` flips a few bytes of each format; this goes further:
byte-level mutations that target headers (interesting integers at length fields, splices between
formats, truncations), and structure-aware generators for safetensors headers, GGUF key/values and
tensor infos, pickle opcode streams, zip archives (torch, Keras, skops) and protobuf (ONNX). Each case:

* ``read_file`` returns a ``FormatInfo`` (no exception), within ``CASE_SECONDS``;
* its metadata is strict JSON and its tensors are sane (non-negative offsets and sizes within the file);
* no ``reader failed`` warning: that is the dispatcher's safety net catching an exception a reader
  did not foresee, i.e. a reader bug, even though the daemon survives it;
* peak Python allocation stays under ``PEAK_BYTES`` (a lying length must not be allocated).

A sample of the mutated files is then registered through a real daemon: every one registers or is
refused with a contract code, and the daemon keeps serving.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import tempfile
import threading
import time
import tracemalloc
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regd.ingest.formats import FormatInfo, read_file
from tests.hardening.crashlib import CONTRACT_CODES
from tests.modelfiles import (
    FIXTURES,
    gguf_header,
    pickle_bytes,
    safetensors_bytes,
    savedmodel_pb,
    torch_pickle,
    write_gguf,
    write_joblib,
    write_keras,
    write_mlflow_dir,
    write_onnx,
    write_pickle,
    write_safetensors,
    write_skops,
    write_torch_zip,
)

EXAMPLES = int(os.environ.get("REGD_FUZZ_EXAMPLES", "300"))
CASE_SECONDS = 5.0
"""Every case takes milliseconds; this only catches a reader that loops or walks a lie."""
PEAK_BYTES = 64 << 20
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


@functools.cache
def samples() -> dict[str, bytes]:
    """One real file per format (name -> bytes), built once; the name's extension drives detection."""
    root = Path(tempfile.mkdtemp(prefix="regd-fuzz-formats-"))
    rng = np.random.default_rng(0)
    built = {
        "model.safetensors": write_safetensors(root / "a.safetensors", metadata={"format": "pt", "note": "x" * 40}),
        "model.gguf": write_gguf(root / "a.gguf", kv={"x.f": 1.5, "x.l": ["a", "b"], "x.b": True}, quantized=True),
        "model.onnx": write_onnx(root / "a.onnx"),
        "model.pt": write_torch_zip(root / "a.pt", {"w": rng.standard_normal((3, 4)).astype(np.float32)}),
        "model.ckpt": FIXTURES / "tiny_lightning.ckpt",
        "legacy.pth": FIXTURES / "tiny_torch_legacy.pt",
        "model.keras": write_keras(root / "a.keras", "functional"),
        "model.skops": write_skops(root / "a.skops"),
        "model.joblib": write_joblib(root / "a.joblib"),
        "zlib.joblib": write_joblib(root / "z.joblib", compress="zlib"),
        "model.pkl": write_pickle(root / "a.pkl", ["os:system", "numpy:dtype"], call=("os:system", ("true",))),
        "old.pkl": write_pickle(root / "o.pkl", ["collections:OrderedDict"], protocol=0),
        "MLmodel": write_mlflow_dir(root / "mlflow") / "MLmodel",
    }
    out = {name: Path(path).read_bytes() for name, path in built.items()}
    out["saved_model.pb"] = savedmodel_pb()
    return out


def read_bounded(path: Path) -> tuple[FormatInfo, float, int]:
    """``read_file`` in a thread with a deadline; returns (info, seconds, peak traced bytes)."""
    result: list[Any] = []

    def target() -> None:
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            result.append(read_file(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            result.append(exc)
        finally:
            result.append(time.perf_counter() - t0)
            result.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(CASE_SECONDS * 4)
    if thread.is_alive():
        pytest.fail(f"read_file({path.name}) still running after {CASE_SECONDS * 4} s")
    info, seconds, peak = result
    if isinstance(info, BaseException):
        raise AssertionError(f"read_file raised {type(info).__name__}: {info}") from info  # noqa: TRY004
    return info, seconds, peak


TALLY: dict[str, Any] = {}
"""This test's cases, by detected format, and the slowest and the largest peak (for REGD_FUZZ_REPORT)."""


@pytest.fixture(autouse=True)
def _report(request):  # type: ignore[no-untyped-def]
    TALLY.clear()
    TALLY.update(cases=0, formats=Counter(), slowest_ms=0.0, peak_mib=0.0, format_errors=0)
    yield
    report = os.environ.get("REGD_FUZZ_REPORT")
    if report and TALLY["cases"]:
        with open(report, "a") as f:
            f.write(json.dumps({"test": request.node.name, **TALLY}) + "\n")


def check(tmp_path: Path, name: str, data: bytes) -> FormatInfo:
    path = tmp_path / name
    path.write_bytes(data)
    info, seconds, peak = read_bounded(path)
    TALLY["cases"] += 1
    TALLY["formats"][info.format] += 1
    TALLY["format_errors"] += info.has_warning("format_error")
    TALLY["slowest_ms"] = max(TALLY["slowest_ms"], seconds * 1000)
    TALLY["peak_mib"] = max(TALLY["peak_mib"], peak / (1 << 20))
    assert isinstance(info, FormatInfo)
    assert seconds < CASE_SECONDS, f"{name}: {seconds:.1f} s for {len(data)} bytes"
    assert peak < PEAK_BYTES + 4 * len(data), f"{name}: peak {peak >> 20} MiB allocated for {len(data)} bytes"
    json.dumps(info.metadata, allow_nan=False)
    failed = [w.message for w in info.warnings if "reader failed" in w.message]
    assert not failed, failed
    for t in info.tensors:
        if t.offset is not None:
            assert 0 <= t.offset and t.nbytes is not None and 0 <= t.nbytes and t.offset + t.nbytes <= len(data), t
    return info


# ----------------------------------------------------------------------------- byte-level mutations

INTERESTING = [0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               2**63 - 1, 2**63, 2**64 - 1]  # fmt: skip


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    buf = bytearray(data)
    names = list(samples())
    for _ in range(draw(st.integers(1, 6))):
        n = len(buf)
        # headers are where the lies matter: half the edits land in the first 512 bytes
        at = draw(st.integers(0, max(0, min(n, 512) - 1)) | st.integers(0, max(0, n - 1)))
        op = draw(st.sampled_from(["flip", "int", "int", "truncate", "extend", "splice", "dup", "delete", "zero"]))
        if op == "flip" and n:
            buf[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "int":
            value = draw(st.sampled_from(INTERESTING + [n, n + 1, n - 1 if n else 0, n * 2]))
            width, fmt = draw(st.sampled_from([(1, "<B"), (2, "<H"), (4, "<I"), (8, "<Q")]))
            buf[at : at + width] = struct.pack(fmt, value % (1 << (8 * width)))
        elif op == "truncate":
            del buf[at:]
        elif op == "extend":
            buf += draw(st.binary(max_size=64))
        elif op == "splice":
            other = samples()[draw(st.sampled_from(names))]
            start = draw(st.integers(0, max(0, len(other) - 1)))
            buf[at:at] = other[start : start + draw(st.integers(1, 256))]
        elif op == "dup" and n:
            buf[at:at] = buf[at : at + draw(st.integers(1, 128))]
        elif op == "delete":
            del buf[at : at + draw(st.integers(1, 64))]
        elif op == "zero":
            buf[at : at + draw(st.integers(1, 64))] = bytes(min(64, max(0, n - at)))
    return bytes(buf)


@FUZZ
@given(data=st.data())
def test_mutated_real_files_of_every_format(tmp_path, data):
    name = data.draw(st.sampled_from(sorted(samples())))
    payload = data.draw(mutations(samples()[name]))
    check(tmp_path, name, payload)


# ----------------------------------------------------------------------------- structure-aware headers

DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "U64", "C64",
          "", "f32", "F32 ", None, 7]  # fmt: skip
DIM = st.integers(0, 8) | st.sampled_from([-1, 2**31, 2**32 + 1, 2**63 - 1, 2**64, 10**30]) | st.just("3") | st.none()


@st.composite
def safetensors_files(draw: st.DrawFn) -> bytes:
    tensors: dict[str, Any] = {}
    offset = 0
    for i in range(draw(st.integers(0, 6))):
        shape = draw(st.lists(DIM, max_size=draw(st.sampled_from([3, 3, 70]))))
        size = draw(st.integers(0, 64) | st.sampled_from([2**40, -4]))
        begin = draw(st.sampled_from([offset, offset, 0, offset + 1, -1, 2**64]))
        entry = {"dtype": draw(st.sampled_from(DTYPES)), "shape": shape, "data_offsets": [begin, begin + size]}
        if draw(st.integers(0, 9)) == 0:
            entry = draw(st.sampled_from([{}, [], "x", {"dtype": "F32"}, {**entry, "extra": 1}, {**entry, "data_offsets": [1]}]))
        tensors[draw(st.sampled_from([f"t{i}", "", "x" * 70000, "__metadata__", "a.b"]))] = entry
        offset += max(size, 0) if isinstance(size, int) and size < 2**32 else 0
    if draw(st.booleans()):
        tensors["__metadata__"] = draw(st.dictionaries(st.text(max_size=5), st.text(max_size=10) | st.integers() | st.none(), max_size=4)
                                       | st.sampled_from([[], "x", None, {"k": {"deep": [1]}}]))  # fmt: skip
    header = json.dumps(tensors).encode()
    header = draw(st.sampled_from([header, header + b" " * 7, header[:-1], header.replace(b"{", b"[", 1), b"\xff" + header]))
    length = draw(st.sampled_from([None, None, 0, 1, 2**63, 2**64 - 1, len(header) + 1, 100 << 20]))
    return safetensors_bytes(header, draw(st.binary(max_size=256)), length=length)


GGUF_TYPES = list(range(14)) + [14, 255, 2**31]


def _gguf_string(draw: st.DrawFn) -> bytes:
    text = draw(st.text(max_size=12)).encode()
    return struct.pack("<Q", draw(st.sampled_from([len(text), len(text), 2**63, len(text) + 100]))) + text


def _gguf_value(draw: st.DrawFn, kind: int, depth: int = 0) -> bytes:
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    if kind in sizes:
        return draw(st.binary(min_size=sizes[kind], max_size=sizes[kind]))
    if kind == 8:
        return _gguf_string(draw)
    if kind == 9 and depth < 3:
        inner = draw(st.sampled_from(GGUF_TYPES))
        count = draw(st.integers(0, 4) | st.sampled_from([2**32, 2**63, 2**64 - 1]))
        body = b"".join(_gguf_value(draw, inner, depth + 1) for _ in range(min(count, 4)))
        return struct.pack("<IQ", inner % 2**32, count) + body
    return draw(st.binary(max_size=16))


@st.composite
def gguf_files(draw: st.DrawFn) -> bytes:
    n_kv = draw(st.integers(0, 5))
    n_tensors = draw(st.integers(0, 4))
    out = bytearray(gguf_header(draw(st.sampled_from([1, 2, 3, 3, 3, 4, 0, 2**31])),
                                draw(st.sampled_from([n_tensors, n_tensors, 2**63, 2**64 - 1])),
                                draw(st.sampled_from([n_kv, n_kv, 2**40, 2**64 - 1]))))  # fmt: skip
    for _ in range(n_kv):
        kind = draw(st.sampled_from(GGUF_TYPES))
        key = draw(st.sampled_from([b"general.alignment", b"general.name", b"general.architecture", b"llama.context_length"]))
        out += struct.pack("<Q", len(key)) + key + struct.pack("<I", kind % 2**32) + _gguf_value(draw, kind)
    for i in range(n_tensors):
        name = f"t{i}".encode()
        dims = draw(st.lists(st.integers(0, 8) | st.sampled_from([2**32, 2**63, 2**64 - 1]), max_size=5))
        n_dims = draw(st.sampled_from([len(dims), len(dims), 2**31, 70]))
        out += struct.pack("<Q", len(name)) + name + struct.pack("<I", n_dims % 2**32)
        out += b"".join(struct.pack("<Q", d % 2**64) for d in dims)
        out += struct.pack("<IQ", draw(st.sampled_from([0, 1, 8, 12, 30, 40, 2**31])), draw(st.sampled_from([0, 32, 7, 2**63])))
    out += draw(st.binary(max_size=512))
    return bytes(out)


OPCODES = [b"(", b")", b"]", b"}", b"t", b"l", b"d", b"e", b"u", b"s", b"a", b"R", b"b", b"0", b"1", b"2", b"N", b"\x88",
           b"\x89", b"\x85", b"\x86", b"\x87", b"\x93", b"\x94", b"\x81", b"\x92", b"Q", b".", b"c", b"i", b"\x95"]  # fmt: skip
ARGS = {
    b"K": lambda d: bytes([d(st.integers(0, 255))]),
    b"M": lambda d: struct.pack("<H", d(st.integers(0, 65535))),
    b"J": lambda d: struct.pack("<i", d(st.integers(-(2**31), 2**31 - 1))),
    b"\x8a": lambda d: bytes([d(st.integers(0, 255))]) + d(st.binary(max_size=8)),  # LONG1
    b"\x8b": lambda d: struct.pack("<i", d(st.sampled_from([0, 4, -1, 2**31 - 1]))) + d(st.binary(max_size=8)),  # LONG4
    b"\x8c": lambda d: bytes([d(st.integers(0, 255))]) + d(st.binary(max_size=12)),  # SHORT_BINUNICODE
    b"X": lambda d: struct.pack("<I", d(st.sampled_from([0, 3, 2**31, 2**32 - 1]))) + d(st.binary(max_size=12)),
    b"\x8d": lambda d: struct.pack("<Q", d(st.sampled_from([0, 3, 2**63]))) + d(st.binary(max_size=12)),  # BINUNICODE8
    b"B": lambda d: struct.pack("<I", d(st.sampled_from([0, 3, 2**31, 2**32 - 1]))) + d(st.binary(max_size=12)),
    b"C": lambda d: bytes([d(st.integers(0, 255))]) + d(st.binary(max_size=12)),
    b"\x95": lambda d: struct.pack("<Q", d(st.sampled_from([0, 8, 2**63, 2**64 - 1]))),  # FRAME
    b"h": lambda d: bytes([d(st.integers(0, 255))]),  # BINGET
    b"j": lambda d: struct.pack("<I", d(st.integers(0, 2**32 - 1))),  # LONG_BINGET
    b"q": lambda d: bytes([d(st.integers(0, 255))]),
    b"r": lambda d: struct.pack("<I", d(st.integers(0, 2**32 - 1))),
    b"c": lambda d: d(st.sampled_from([b"os\nsystem\n", b"torch._utils\n_rebuild_tensor_v2\n", b"\n\n", b"a" * 300 + b"\n"])),
    b"G": lambda d: d(st.binary(min_size=8, max_size=8)),
    b"I": lambda d: d(st.sampled_from([b"1\n", b"99999999999999999999999\n", b"x\n", b"01\n"])),
    b"\x80": lambda d: bytes([d(st.integers(0, 7))]),
}


@st.composite
def pickle_streams(draw: st.DrawFn) -> bytes:
    out = bytearray(b"\x80" + bytes([draw(st.integers(0, 6))]) if draw(st.booleans()) else b"")
    for _ in range(draw(st.integers(0, 60))):
        op = draw(st.sampled_from(OPCODES + list(ARGS)))
        out += op + (ARGS[op](draw) if op in ARGS else b"")
    if draw(st.booleans()):
        out += b"(" * draw(st.sampled_from([10, 1000, 100_000]))
    return bytes(out + draw(st.sampled_from([b".", b"", b"\x00"])))


@st.composite
def zip_archives(draw: st.DrawFn) -> tuple[str, bytes]:
    import io

    kind = draw(st.sampled_from(["model.pt", "model.keras", "model.skops", "model.ckpt"]))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as zf:
        for _ in range(draw(st.integers(0, 6))):
            member = draw(st.sampled_from(["archive/data.pkl", "data.pkl", "a/b/data.pkl", "../data.pkl", "archive/data/0",
                                           "config.json", "metadata.json", "schema.json", "model.weights.h5",
                                           "archive/version", "/abs/data.pkl", "x" * 300]))  # fmt: skip
            body = draw(st.one_of(
                pickle_streams(),
                st.just(torch_pickle({"w": np.zeros((2, 2), np.float32)})),
                st.just(pickle_bytes(["os:system"])),
                st.binary(max_size=200),
                st.sampled_from([b"{}", b"[]", b'{"layers": 5}', b'{"config": {"layers": [{"class_name": 1}]}}',
                                 b'{"__class__": "x", "content": {"__loader__": "ObjectNode"}}', b"\x00" * 100]),
            ))  # fmt: skip
            zf.writestr(member, body)
    data = bytearray(buf.getvalue())
    for _ in range(draw(st.integers(0, 3))):  # lie in the local and central headers: sizes, offsets, counts
        if data:
            at = draw(st.integers(0, len(data) - 1))
            data[at : at + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING[:13])))
    return kind, bytes(data)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def protobuf_messages(draw: st.DrawFn, depth: int = 0) -> bytes:
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        field_no = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 2**29 - 1]))
        wire = draw(st.sampled_from([0, 1, 2, 2, 2, 5, 3, 4, 6, 7]))
        out += _varint((field_no << 3) | wire)
        if wire == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire == 2:
            body = draw(protobuf_messages(depth + 1)) if depth < 6 and draw(st.booleans()) else draw(st.binary(max_size=32))
            out += _varint(draw(st.sampled_from([len(body), len(body), 2**31, 2**63, len(body) + 5]))) + body
    if depth == 0 and draw(st.integers(0, 9)) == 0:
        for _ in range(200):  # nesting far past any sane depth
            out = bytearray(_varint((7 << 3) | 2) + _varint(len(out)) + out)
    return bytes(out)


@FUZZ
@given(data=st.data())
def test_hostile_headers_built_field_by_field(tmp_path, data):
    kind = data.draw(st.sampled_from(["safetensors", "gguf", "pickle", "zip", "onnx", "pb"]))
    if kind == "safetensors":
        name, payload = data.draw(st.sampled_from(["model.safetensors", "weights.bin"])), data.draw(safetensors_files())
    elif kind == "gguf":
        name, payload = data.draw(st.sampled_from(["model.gguf", "model.bin"])), data.draw(gguf_files())
    elif kind == "pickle":
        name = data.draw(st.sampled_from(["model.pkl", "model.joblib", "model.pt", "model.bin"]))
        payload = data.draw(pickle_streams())
    elif kind == "zip":
        name, payload = data.draw(zip_archives())
    elif kind == "onnx":
        name, payload = "model.onnx", data.draw(protobuf_messages())
    else:
        name, payload = "saved_model.pb", data.draw(protobuf_messages())
    check(tmp_path, name, payload)


def test_every_sample_reads_cleanly_before_it_is_mutated(tmp_path):
    """The fuzzers start from real files: each must read as its format, with no warning of damage."""
    for name, data in samples().items():
        info = check(tmp_path, name, data)
        assert info.format != "unknown" and not info.has_warning("format_error"), (name, info.warnings)


# ----------------------------------------------------------------------------- through the daemon


@settings(max_examples=max(20, EXAMPLES // 6), deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_files_register_or_are_refused_cleanly_by_the_daemon(daemon, tmp_path, data):
    name = data.draw(st.sampled_from(sorted(samples())))
    payload = data.draw(mutations(samples()[name]))
    path = tmp_path / "in" / f"{data.draw(st.integers(0, 10**9))}-{name}"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(payload)
    from regd.errors import RegdError

    client = daemon.client()
    try:
        v = client.register(path, name="fuzzed")
    except RegdError as exc:
        assert exc.code in CONTRACT_CODES, f"{name}: {exc.code} {exc.message}"
    else:
        assert v.artifact.size == len(payload)
        assert not [w for w in v.warnings if "reader failed" in w.message], v.warnings
        TALLY["formats"][v.artifact.format] += 1
    TALLY["cases"] += 1
    assert client.status()["pid"] == daemon.proc.pid
