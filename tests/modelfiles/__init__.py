"""Write real model files in their real formats for tests (no network, no torch, no keras).

Each ``write_*`` returns the path it wrote. The light real libraries (safetensors, gguf, onnx) are
used where installed; torch zips, joblib streams, Keras and skops archives, MLflow and SavedModel
directories are written byte by byte in the layout their libraries use, checked against the real
fixtures in ``tests/fixtures`` (made by ``tests/fixtures/make_fixtures.py``).
"""

from __future__ import annotations

from tests.modelfiles.archives import HDF5_MAGIC, keras_config, write_keras, write_skops
from tests.modelfiles.common import FIXTURES, default_tensors
from tests.modelfiles.directories import (
    COLUMN_INPUTS,
    HF_CONFIG,
    TENSOR_INPUTS,
    pb_field,
    savedmodel_pb,
    tree_names,
    write_hf_dir,
    write_mlflow_dir,
    write_savedmodel_dir,
)
from tests.modelfiles.pickled import pickle_bytes, torch_pickle, write_joblib, write_pickle, write_torch_zip
from tests.modelfiles.weights import gguf_header, safetensors_bytes, write_gguf, write_onnx, write_safetensors

__all__ = [
    "COLUMN_INPUTS",
    "FIXTURES",
    "HDF5_MAGIC",
    "HF_CONFIG",
    "TENSOR_INPUTS",
    "default_tensors",
    "gguf_header",
    "keras_config",
    "pb_field",
    "pickle_bytes",
    "safetensors_bytes",
    "savedmodel_pb",
    "torch_pickle",
    "tree_names",
    "write_gguf",
    "write_hf_dir",
    "write_joblib",
    "write_keras",
    "write_mlflow_dir",
    "write_onnx",
    "write_pickle",
    "write_safetensors",
    "write_savedmodel_dir",
    "write_skops",
    "write_torch_zip",
]
