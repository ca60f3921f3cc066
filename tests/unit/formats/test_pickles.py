"""Pickle and joblib scanning: imports found by walking opcodes, nothing ever executed."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zlib

import numpy as np
import pytest

from regd.ingest.formats import read_file, scan_pickle
from regd.ingest.formats.pickles import is_dangerous, is_safe
from tests.modelfiles import FIXTURES, pickle_bytes, write_joblib, write_pickle


def test_os_system_is_flagged_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = write_pickle(tmp_path / "evil.pkl", call=("os:system", (f"touch {marker}",)))
    info = read_file(path)
    assert not marker.exists()
    assert info.format == "pickle"
    assert info.unsafe_imports == ["os.system"]
    (warning,) = [w for w in info.warnings if w.code == "unsafe_pickle"]
    assert "os.system" in warning.message and "code-running" in warning.message


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_every_protocol_of_real_pickles(protocol):
    class Evil:
        def __reduce__(self):
            return (eval, ("1+1",))

    obj = {
        "array": np.arange(6, dtype=np.float32).reshape(2, 3),
        "ordered": collections.OrderedDict(a=1),
        "set": {1, 2},
        "frozen": frozenset([3]),
        "big": b"x" * 200_000,
        "text": "y" * 100_000,
        "long": 10**40,
        "evil": Evil(),
    }
    scan = scan_pickle(io.BytesIO(pickle.dumps(obj, protocol=protocol)), 10**9)
    assert scan.complete and scan.error is None
    assert scan.unsafe == ["builtins.eval"]
    assert scan.dangerous == ["builtins.eval"]
    assert "collections.OrderedDict" in scan.imports


def test_allow_listed_data_pickles_are_clean():
    data = {"w": np.ones((2, 2)), "i": np.int64(3), "od": collections.OrderedDict(x=np.zeros(1)), "c": 1 + 2j}
    for protocol in (2, 4, 5):
        scan = scan_pickle(io.BytesIO(pickle.dumps(data, protocol=protocol)), 10**9)
        assert scan.complete and scan.unsafe == [], (protocol, scan.unsafe)


def test_stack_global_through_the_memo():
    # 'os' and 'system' memoised, popped, then fetched back with BINGET before STACK_GLOBAL.
    stream = b"\x80\x04\x8c\x02os\x94\x8c\x06system\x940" + b"0" + b"h\x00h\x01\x93" + b"\x8c\x02ls\x85R."
    scan = scan_pickle(io.BytesIO(stream), 10**6)
    assert scan.imports == ["os.system"] and scan.dangerous == ["os.system"]


def test_inst_obj_and_protocol_0_globals():
    inst = b"(S'ls'\nios\nsystem\n."  # INST: module and name on two lines
    assert scan_pickle(io.BytesIO(inst), 10**6).unsafe == ["os.system"]
    obj = b"\x80\x02(csubprocess\nPopen\nS'ls'\no."  # OBJ with a GLOBAL class
    assert scan_pickle(io.BytesIO(obj), 10**6).dangerous == ["subprocess.Popen"]
    py2 = b"c__builtin__\neval\n(S'1'\ntR."
    assert scan_pickle(io.BytesIO(py2), 10**6).unsafe == ["builtins.eval"]


def test_computed_stack_global_is_unknowable():
    stream = b"\x80\x04K\x01K\x02\x93."  # STACK_GLOBAL on two ints
    scan = scan_pickle(io.BytesIO(stream), 10**6)
    assert scan.dangerous == ["<unresolved>.STACK_GLOBAL"]


def test_extension_codes_are_unsafe():
    scan = scan_pickle(io.BytesIO(b"\x80\x02\x82\x05."), 10**6)
    assert scan.unsafe == ["copyreg.extension_code_5"]


def test_allow_list_and_danger_list():
    for name in [
        "torch._utils._rebuild_tensor_v2", "torch.FloatStorage", "torch.BFloat16Storage", "torch.Size",
        "torch.bfloat16",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.dtype", "numpy.ndarray",
        "joblib.numpy_pickle.NumpyArrayWrapper", "builtins.set", "builtins.slice", "collections.OrderedDict",
        "sklearn.linear_model._logistic.LogisticRegression", "scipy.sparse._csr.csr_matrix",
    ]:  # fmt: skip
        assert is_safe(name), name
    for name in ["os.system", "posix.system", "nt.system", "subprocess.Popen", "builtins.eval", "builtins.exec",
                 "builtins.getattr", "builtins.__import__", "builtins.open", "runpy._run_code", "shutil.rmtree",
                 "socket.socket", "importlib.import_module", "pickle.loads", "marshal.loads", "types.CodeType",
                 "sys.modules"]:  # fmt: skip
        assert not is_safe(name) and is_dangerous(name), name
    assert not is_safe("torch.load") and is_dangerous("torch.load")
    assert not is_safe("mymodule.MyNet") and not is_dangerous("mymodule.MyNet")
    assert not is_safe("sklearnx.Evil") and not is_safe("torch.storage._load_from_bytes")


def test_a_claimed_2_gib_argument_is_skipped_not_allocated(tmp_path, bounded):
    path = tmp_path / "huge.pkl"
    path.write_bytes(b"\x80\x04\x8e" + struct.pack("<Q", 2**31) + b"\0" * 100)  # BINBYTES8 claiming 2 GiB
    info = bounded(read_file, path)
    assert [w.code for w in info.warnings] == ["format_error"]
    assert "truncated" in info.warnings[0].message


def test_a_large_real_argument_is_skipped(tmp_path):
    path = write_pickle(tmp_path / "big.pkl", data={"blob": b"\1" * (3 * 1024 * 1024), "x": 1})
    info = read_file(path)
    assert info.warnings == [] and info.unsafe_imports == []


def test_scan_limit_leaves_the_rest_unknown():
    stream = pickle.dumps(list(range(10_000)), protocol=2)
    scan = scan_pickle(io.BytesIO(stream), 100)
    assert scan.limited and not scan.complete


def test_limit_becomes_an_unsafe_warning(tmp_path, monkeypatch):
    import regd.ingest.formats.pickles as pickles

    monkeypatch.setattr(pickles, "MAX_PICKLE_BYTES", 64)
    info = read_file(write_pickle(tmp_path / "long.pkl", data=list(range(1000))))
    assert {w.code for w in info.warnings} == {"format_error", "unsafe_pickle"}


def test_mark_and_memo_floods_are_bounded(tmp_path, bounded):
    marks = tmp_path / "marks.pkl"
    marks.write_bytes(b"\x80\x02" + b"(" * 300_000 + b".")
    info = bounded(read_file, marks)
    assert any(w.code == "unsafe_pickle" for w in info.warnings)


@pytest.mark.parametrize(
    "stream",
    [
        b"",
        b"\x80",
        b"\x80\x05\xff",
        b"\x80\x02}q\x00(X\x01\x00\x00",
        b"garbage!",
        b"\x80\x02K\x01u.",
        b"\x80\x02h\x07.",
    ],
)
def test_malformed_streams(tmp_path, bounded, stream):
    path = tmp_path / "bad.pkl"
    path.write_bytes(stream)
    info = bounded(read_file, path)
    assert info.format == "pickle"
    assert [w.code for w in info.warnings] == ["format_error"]


@pytest.mark.parametrize("compress", [None, "zlib", "gzip"])
def test_joblib_arrays_are_stepped_over(tmp_path, compress):
    arrays = {"a": np.arange(10, dtype=np.float64), "b": np.arange(6, dtype=np.int32).reshape(2, 3), "c": np.zeros(0)}
    info = read_file(write_joblib(tmp_path / "m.joblib", arrays, compress=compress))
    assert info.format == "joblib"
    assert info.warnings == [] and info.unsafe_imports == []
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in info.metadata["pickle_imports"]
    assert info.metadata.get("compression") == compress


def test_joblib_without_alignment_padding(tmp_path):
    info = read_file(write_joblib(tmp_path / "old.joblib", align=False))
    assert info.warnings == []


def test_real_joblib_fixture_with_object_array():
    info = read_file(FIXTURES / "tiny.joblib")
    assert info.format == "joblib"
    assert info.warnings == [] and info.unsafe_imports == []
    assert "sklearn.preprocessing._data.StandardScaler" in info.metadata["pickle_imports"]


def test_joblib_hiding_a_global_after_an_array(tmp_path):
    clean = write_joblib(tmp_path / "a.joblib").read_bytes()
    evil = clean[:-2] + b"\x8c\x04evil" + b"\x8c\x02os\x8c\x06system\x93" + b"u."  # one more dict entry
    path = tmp_path / "evil.joblib"
    path.write_bytes(evil)
    info = read_file(path)
    assert info.unsafe_imports == ["os.system"]


def test_decompression_bomb_is_bounded(tmp_path, bounded, monkeypatch):
    # 64 MiB of NONE opcodes compressing to ~64 KiB: inflation is pulled only as far as the walk goes,
    # and the walk stops at its stack budget (lowered here to keep the test fast).
    import regd.ingest.formats.picklevm as picklevm

    monkeypatch.setattr(picklevm, "MAX_STACK", 100_000)
    path = tmp_path / "bomb.joblib"
    path.write_bytes(zlib.compress(b"\x80\x02" + b"N" * (64 * 1024 * 1024), 9))
    info = bounded(read_file, path)
    assert info.format == "joblib"
    assert any(w.code in ("format_error", "unsafe_pickle") for w in info.warnings)


@pytest.mark.parametrize(
    "head", [b"\x1f\x8b\x08\x00garbage", b"\x78\x9cgarbage", b"\xfd7zXZ\x00garbage", b"BZhgarbage"]
)
def test_corrupt_compressed_joblib(tmp_path, bounded, head):
    path = tmp_path / "bad.joblib"
    path.write_bytes(head + b"\0" * 64)
    info = bounded(read_file, path)
    assert info.format == "joblib"
    assert [w.code for w in info.warnings] == ["format_error"]


def test_builder_pickles_reference_without_importing():
    stream = pickle_bytes(["definitely_not_a_module:thing"], protocol=2)
    scan = scan_pickle(io.BytesIO(stream), 10**6)
    assert scan.imports == ["definitely_not_a_module.thing"]


@pytest.mark.parametrize("compress", [None, "zlib"])
def test_array_bytes_do_not_count_against_the_parse_budget(tmp_path, monkeypatch, compress):
    import regd.ingest.formats.pickles as pickles

    monkeypatch.setattr(pickles, "MAX_PICKLE_BYTES", 4096)
    info = read_file(write_joblib(tmp_path / "big.joblib", {"w": np.zeros(100_000)}, compress=compress))
    assert info.warnings == []


def test_inflating_to_skip_is_bounded(tmp_path, monkeypatch):
    import regd.ingest.formats.picklesource as picklesource

    monkeypatch.setattr(picklesource, "MAX_INFLATE_SKIP", 1000)
    info = read_file(write_joblib(tmp_path / "big.joblib", {"w": np.zeros(100_000)}, compress="zlib"))
    assert {w.code for w in info.warnings} == {"format_error", "unsafe_pickle"}
