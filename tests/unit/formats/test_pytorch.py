"""PyTorch checkpoints: real torch.save fixtures, the hand-written builder, and hostile zips."""

from __future__ import annotations

import struct
import zipfile

import numpy as np
import pytest

from regd.ingest.formats import read_file
from tests.modelfiles import FIXTURES, torch_pickle, write_torch_zip

EXPECTED = {  # what tests/fixtures/make_fixtures.py saved
    "fc.weight": ("float32", [3, 4], np.arange(12, dtype=np.float32).tobytes()),
    "fc.bias": ("float32", [3], np.array([1, 2, 3], np.float32).tobytes()),
    "emb": ("int64", [2, 3], np.arange(6, dtype=np.int64).tobytes()),
    "half": ("float16", [2, 2], np.ones(4, np.float16).tobytes()),
    "bf": ("bfloat16", [3], b"\x80\x3f" * 3),
    "base": ("float32", [10], np.arange(10, dtype=np.float32).tobytes()),
    "view": ("float32", [4], np.arange(2, 6, dtype=np.float32).tobytes()),
    "f8": ("float8_e4m3fn", [4], b"\0" * 4),
    "param": ("float32", [2], np.ones(2, np.float32).tobytes()),
}


@pytest.mark.parametrize("fixture", ["tiny_torch.pt", "tiny_torch_legacy.pt"])
def test_real_torch_save_files(fixture):
    path = FIXTURES / fixture
    info = read_file(path)
    data = path.read_bytes()
    assert info.format == "pytorch"
    assert info.warnings == [] and info.unsafe_imports == []
    assert [t.name for t in info.tensors] == list(EXPECTED)
    for t in info.tensors:
        dtype, shape, raw = EXPECTED[t.name]
        assert (t.dtype, t.shape) == (dtype, shape), t.name
        assert data[t.offset : t.offset + t.nbytes] == raw, t.name
    base, view = (next(t for t in info.tensors if t.name == n) for n in ("base", "view"))
    assert view.offset == base.offset + 2 * 4  # a view into base's storage
    assert info.metadata["tensor_count"] == 9
    assert info.metadata["byteorder"] == "little"
    assert [s.name for s in info.signature.tensors] == list(EXPECTED)


def test_zip_metadata():
    info = read_file(FIXTURES / "tiny_torch.pt")
    assert info.metadata["archive"] == "tiny_torch"
    assert info.metadata["version"] == "3"
    assert info.metadata["pickle_protocol"] == 2
    assert "torch._utils._rebuild_tensor_v3" in info.metadata["pickle_imports"]


def test_lightning_checkpoint_names_are_dotted():
    info = read_file(FIXTURES / "tiny_lightning.ckpt")
    assert info.warnings == []
    assert [(t.name, t.shape) for t in info.tensors] == [
        ("state_dict.model.w", [2, 2]),
        ("optimizer_states.0.state.0.exp_avg", [2]),
    ]


def test_real_unsafe_checkpoint_is_flagged():
    info = read_file(FIXTURES / "tiny_torch_unsafe.pt")
    assert info.unsafe_imports == ["posix.system"]
    assert any(w.code == "unsafe_pickle" and "posix.system" in w.message for w in info.warnings)
    assert [t.name for t in info.tensors] == ["w"]


def test_builder_layout_matches_real_torch(tmp_path):
    """Members stored, 64-byte aligned, named <archive>/..., as in the real fixture."""
    ours = write_torch_zip(tmp_path / "tiny_torch.pt")

    def layout(path):
        with zipfile.ZipFile(path) as zf, open(path, "rb") as f:
            out = {}
            for info in zf.infolist():
                f.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", f.read(4))
                start = info.header_offset + 30 + name_len + extra_len
                out[info.filename] = (info.compress_type, start % 64)
            return out

    real, built = layout(FIXTURES / "tiny_torch.pt"), layout(ours)
    assert set(real.values()) == set(built.values()) == {(zipfile.ZIP_STORED, 0)}
    shape = {n.split("/", 1)[1] for n in real if not n.split("/", 1)[1].startswith("data/")}
    assert shape == {n.split("/", 1)[1] for n in built if not n.split("/", 1)[1].startswith("data/")}


def test_builder_roundtrip(tmp_path):
    tensors = {
        "a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.array([True, False]),
        "c": np.int8([5]),
    }
    path = write_torch_zip(tmp_path / "m.pth", tensors)
    info = read_file(path)
    data = path.read_bytes()
    assert info.warnings == []
    assert [(t.name, t.dtype, t.shape) for t in info.tensors] == [
        ("a.weight", "float32", [2, 3]), ("b", "bool", [2]), ("c", "int8", [1]),
    ]  # fmt: skip
    for t, array in zip(info.tensors, tensors.values(), strict=True):
        assert data[t.offset : t.offset + t.nbytes] == array.tobytes()


def test_nested_and_unsafe_builder(tmp_path):
    path = write_torch_zip(tmp_path / "m.ckpt", nested="state_dict", extra_globals=["os:system", "mypkg.MyNet"])
    info = read_file(path)
    assert [t.name for t in info.tensors][:1] == ["state_dict.embed.weight"]
    assert info.unsafe_imports == ["os.system", "mypkg.MyNet"]
    (warning,) = [w for w in info.warnings if w.code == "unsafe_pickle"]
    assert "os.system" in warning.message and "mypkg.MyNet" in warning.message


def test_bin_zip_is_pytorch(tmp_path):
    info = read_file(write_torch_zip(tmp_path / "pytorch_model.bin"))
    assert info.format == "pytorch" and info.warnings == [] and len(info.tensors) == 4


def _zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_is_refused_before_inflating(tmp_path, bounded):
    path = _zip(tmp_path / "bomb.pt", {"a/data.pkl": b"\0" * (8 * 1024 * 1024)}, zipfile.ZIP_DEFLATED)
    info = bounded(read_file, path)
    assert info.format == "pytorch"
    assert [w.code for w in info.warnings] == ["format_error"]
    assert "zip bomb" in info.warnings[0].message


def test_declared_size_lie_is_capped(tmp_path, bounded):
    path = _zip(tmp_path / "lie.pt", {"a/data.pkl": b"\0" * 4096}, zipfile.ZIP_DEFLATED)
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 2**31)  # uncompressed size in the central record
    path.write_bytes(bytes(raw))
    info = bounded(read_file, path)
    assert [w.code for w in info.warnings] == ["format_error"]


def test_central_directory_claiming_millions_of_entries(tmp_path, bounded):
    path = _zip(tmp_path / "many.pt", {"a/data.pkl": torch_pickle({})})
    raw = bytearray(path.read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    raw[end + 8 : end + 12] = struct.pack("<HH", 65535, 65535)
    raw[end + 12 : end + 16] = struct.pack("<I", 2**31)  # central directory size
    path.write_bytes(bytes(raw))
    info = bounded(read_file, path)
    assert info.format == "pytorch" and [w.code for w in info.warnings] == ["format_error"]


def test_missing_storage_and_storage_overrun(tmp_path):
    pkl = torch_pickle({"w": np.zeros(4, np.float32)})
    info = read_file(_zip(tmp_path / "missing.pt", {"a/data.pkl": pkl}))
    assert "missing" in info.warnings[0].message
    info = read_file(_zip(tmp_path / "short.pt", {"a/data.pkl": pkl, "a/data/0": b"\0" * 8}))
    assert "past" in info.warnings[0].message


def test_zip_without_data_pkl(tmp_path):
    info = read_file(_zip(tmp_path / "x.pt", {"a/other.txt": b"hi"}))
    assert info.format == "pytorch" and "data.pkl" in info.warnings[0].message


def test_every_truncation_is_reported(tmp_path, bounded):
    data = (FIXTURES / "tiny_torch.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    for size in range(0, len(data), 41):
        cut.write_bytes(data[:size])
        info = bounded(read_file, cut)
        assert info.format == "pytorch"
        assert any(w.code == "format_error" for w in info.warnings), size


def test_legacy_truncations(tmp_path, bounded):
    data = (FIXTURES / "tiny_torch_legacy.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    for size in range(1, len(data) - 1, 23):
        cut.write_bytes(data[:size])
        info = bounded(read_file, cut)
        assert info.format == "pytorch"
        assert any(w.code == "format_error" for w in info.warnings), size


def test_garbage_with_a_torch_extension(tmp_path):
    path = tmp_path / "x.pt"
    path.write_bytes(b"\x00\x01garbage" * 10)
    info = read_file(path)
    assert info.format == "pytorch" and info.warnings[0].code == "format_error"
