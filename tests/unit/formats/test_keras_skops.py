"""Keras archives (config-derived signature), legacy HDF5 detection, skops schemas."""

from __future__ import annotations

import json
import zipfile

import pytest

from regd.ingest.formats import read_file
from tests.modelfiles import FIXTURES, HDF5_MAGIC, write_keras, write_skops


def _io(info):
    return (
        [(s.name, s.dtype, s.shape) for s in info.signature.inputs],
        [(s.name, s.dtype, s.shape) for s in info.signature.outputs],
    )


def test_real_keras_fixture():
    info = read_file(FIXTURES / "tiny.keras")
    assert info.format == "keras" and info.warnings == []
    assert _io(info) == ([("features", "float32", [None, 4])], [("dense", "float32", [None, 3])])
    assert info.metadata["keras_version"].startswith("3.")
    assert info.metadata["class_name"] == "Sequential"
    assert info.metadata["layer_count"] == 2


def test_builder_sequential(tmp_path):
    info = read_file(write_keras(tmp_path / "m.keras"))
    assert info.warnings == []
    assert _io(info) == ([("features", "float32", [None, 4])], [("probs", "float32", [None, 3])])
    assert info.metadata["layer_count"] == 3 and info.metadata["keras_version"] == "3.15.1"


def test_builder_functional(tmp_path):
    info = read_file(write_keras(tmp_path / "m.keras", "functional"))
    assert _io(info) == (
        [("a", "float32", [None, 5]), ("b", "int32", [None, 3, 2])],
        [("out1", "float32", [None, 2]), ("out2", "float32", [None, 1])],
    )
    assert info.signature.extra == {"class_name": "Functional"}


def test_legacy_h5_is_detected_by_magic(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(HDF5_MAGIC + b"\0" * 100)
    info = read_file(path)
    assert info.format == "keras-h5" and info.warnings == [] and info.signature is None


def test_keras_archive_without_config(tmp_path):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", "{}")
    info = read_file(path)
    assert info.format == "keras" and info.warnings[0].code == "format_error"


@pytest.mark.parametrize("config", [b"[1, 2]", b"{not json", json.dumps({"config": {"layers": "nope"}}).encode()])
def test_odd_configs_do_not_crash(tmp_path, config):
    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", config)
        zf.writestr("metadata.json", b"{}")
    info = read_file(path)
    assert info.format == "keras"


def test_real_skops_fixture_is_clean():
    info = read_file(FIXTURES / "tiny.skops")
    assert info.format == "skops"
    assert info.warnings == [] and info.unsafe_imports == []
    assert info.metadata["root_type"] == "sklearn.preprocessing._data.StandardScaler"
    assert info.metadata["protocol"] == 2


def test_skops_with_unsafe_types(tmp_path):
    types = [("sklearn.pipeline", "Pipeline"), ("os", "system"), ("mypkg.models", "Custom")]
    info = read_file(write_skops(tmp_path / "m.skops", types))
    assert info.unsafe_imports == ["os.system", "mypkg.models.Custom"]
    (warning,) = info.warnings
    assert warning.code == "unsafe_pickle" and "os.system" in warning.message


def test_skops_garbage_schema(tmp_path, bounded):
    path = tmp_path / "m.skops"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("schema.json", b"[" * 50_000)
    info = bounded(read_file, path)
    assert info.format == "skops" and info.warnings[0].code == "format_error"
