"""Keras and skops archives, laid out as Keras 3 and skops write them (see tests/fixtures)."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def keras_config(kind: str = "sequential") -> dict[str, Any]:
    """Return a Keras 3 model config as ``model.save`` writes it (see tests/fixtures/tiny.keras)."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}

    def dense(layer: str, units: int, input_shape: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "module": "keras.layers",
            "class_name": "Dense",
            "config": {
                "name": layer,
                "trainable": True,
                "dtype": policy,
                "units": units,
                "activation": "linear",
                "use_bias": True,
            },
            "registered_name": None,
            "build_config": {"input_shape": input_shape},
            **extra,
        }

    def input_layer(layer: str, shape: list[Any], dtype: str = "float32", **extra: Any) -> dict[str, Any]:
        return {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {
                "batch_shape": shape,
                "dtype": dtype,
                "sparse": False,
                "ragged": False,
                "name": layer,
                "optional": False,
            },
            "registered_name": None,
            **extra,
        }

    if kind == "sequential":
        layers = [input_layer("features", [None, 4]), dense("hidden", 8, [None, 4]), dense("probs", 3, [None, 8])]
        return {
            "module": "keras",
            "class_name": "Sequential",
            "config": {
                "name": "sequential",
                "trainable": True,
                "dtype": policy,
                "layers": layers,
                "build_input_shape": [None, 4],
            },
            "registered_name": None,
            "build_config": {"input_shape": [None, 4]},
            "compile_config": {},
        }
    layers = [
        input_layer("a", [None, 5], name="a", inbound_nodes=[]),
        input_layer("b", [None, 3, 2], "int32", name="b", inbound_nodes=[]),
        dense("out1", 2, [None, 5], name="out1"),
        dense("out2", 1, [None, 6], name="out2"),
    ]
    return {
        "module": "keras.src.models.functional", "class_name": "Functional",
        "config": {"name": "functional", "trainable": True, "layers": layers,
                   "input_layers": [["a", 0, 0], ["b", 0, 0]], "output_layers": [["out1", 0, 0], ["out2", 0, 0]]},
        "registered_name": "Functional", "build_config": {"input_shape": None}, "compile_config": {},
    }  # fmt: skip


def write_keras(path: Path, kind: str = "sequential", *, keras_version: str = "3.15.1") -> Path:
    """Write a ``.keras`` archive (metadata.json, config.json, model.weights.h5) like Keras 3 saves."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": keras_version, "date_saved": "2025-01-01@00:00:00"}))
        zf.writestr("config.json", json.dumps(keras_config(kind)))
        zf.writestr("model.weights.h5", HDF5_MAGIC + b"\x00" * 504)
    return path


def write_skops(
    path: Path, types: Sequence[tuple[str, str]] = (("sklearn.preprocessing._data", "StandardScaler"),)
) -> Path:
    """Write a skops archive whose schema.json nests ObjectNodes of ``types`` (module, class)."""

    def node(module: str, cls: str, content: Any) -> dict[str, Any]:
        return {
            "__class__": cls,
            "__module__": module,
            "__loader__": "ObjectNode",
            "content": content,
            "__id__": id(content),
        }

    children = {
        f"attr{i}": node(
            module, cls, {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {}}
        )
        for i, (module, cls) in enumerate(types[1:])
    }
    content = {
        "__class__": "dict",
        "__module__": "builtins",
        "__loader__": "DictNode",
        "content": {
            "with_mean": {
                "__class__": "str",
                "__module__": "builtins",
                "__loader__": "JsonNode",
                "content": "true",
                "is_json": True,
            },
            "mean_": {
                "__class__": "ndarray",
                "__module__": "numpy",
                "__loader__": "NdArrayNode",
                "type": "numpy",
                "file": "1.npy",
            },
            **children,
        },
    }
    module, cls = types[0]
    schema = {**node(module, cls, content), "protocol": 2, "_skops_version": "0.16.0"}
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("1.npy", buf.getvalue())
        zf.writestr("schema.json", json.dumps(schema))
    return Path(path)
