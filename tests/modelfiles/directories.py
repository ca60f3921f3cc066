"""Model directories: Hugging Face save_pretrained, MLflow, TensorFlow SavedModel (hand-encoded protobuf)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from tests.modelfiles.pickled import write_pickle, write_torch_zip
from tests.modelfiles.weights import write_safetensors

HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32", "hidden_size": 4,
    "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 3,
    "transformers_version": "4.44.0",
}  # fmt: skip


def write_hf_dir(dir: Path, sharded: bool = False, *, tokenizer: bool = False, weights: str = "safetensors") -> Path:
    """Write a save_pretrained-style directory: config.json plus model.safetensors (or two shards and an index).

    ``weights="bin"`` writes pytorch_model.bin (a torch zip) instead.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "config.json").write_text(json.dumps(HF_CONFIG))
    (dir / "generation_config.json").write_text(json.dumps({"bos_token_id": 1}))
    tensors = {
        "model.embed_tokens.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "model.norm.weight": np.ones(4, dtype=np.float32),
        "lm_head.weight": np.full((3, 4), 0.5, dtype=np.float32),
    }
    ext = "safetensors" if weights == "safetensors" else "bin"
    write = write_safetensors if weights == "safetensors" else write_torch_zip
    if not sharded:
        write(dir / ("model.safetensors" if ext == "safetensors" else "pytorch_model.bin"), tensors)
    else:
        base = "model" if ext == "safetensors" else "pytorch_model"
        names = list(tensors)
        shards = {f"{base}-00001-of-00002.{ext}": names[:2], f"{base}-00002-of-00002.{ext}": names[2:]}
        weight_map = {}
        for shard, keys in shards.items():
            write(dir / shard, {k: tensors[k] for k in keys})
            weight_map.update({k: shard for k in keys})
        index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())}, "weight_map": weight_map}
        (dir / f"{base}.{ext}.index.json").write_text(json.dumps(index))
    if tokenizer:
        (dir / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
        (dir / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
        (dir / "special_tokens_map.json").write_text(json.dumps({}))
    return dir


MLMODEL_TEMPLATE = """\
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
mlflow_version: 2.14.1
model_size_bytes: 1234
model_uuid: 0f1e2d3c4b5a69788796a5b4c3d2e1f0
run_id: 5d2a6f0c9b8e4f7a8c1d2e3f4a5b6c7d
signature:
  inputs: '{inputs}'
  outputs: '{outputs}'
  params: {params}
utc_time_created: '2024-06-01 12:00:00.000000'
"""
COLUMN_INPUTS = [
    {"type": "double", "name": "sepal_length", "required": True},
    {"type": "long", "name": "petal_count", "required": False},
    {"type": "array", "items": {"type": "string"}, "name": "tags", "required": True},
]
TENSOR_INPUTS = [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 28, 28]}, "name": "image"}]


def write_mlflow_dir(
    dir: Path, *, signature: str = "columns", env: bool = True, model_file: bool = True, unsafe: bool = False
) -> Path:
    """Write an MLflow sklearn model directory: MLmodel, model.pkl and (``env``) the environment files."""
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    inputs = COLUMN_INPUTS if signature == "columns" else TENSOR_INPUTS
    outputs = (
        [{"type": "long", "required": True}]
        if signature == "columns"
        else [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 10]}}]
    )
    params = '\'[{"name": "threshold", "type": "double", "default": 0.5, "shape": null}]\''
    text = MLMODEL_TEMPLATE.format(inputs=json.dumps(inputs), outputs=json.dumps(outputs), params=params)
    (dir / "MLmodel").write_text(text)
    if model_file:
        globals_ = ["sklearn.linear_model._logistic:LogisticRegression", "numpy._core.multiarray:_reconstruct"]
        if unsafe:
            globals_.append("cloudpickle.cloudpickle:_make_function")
        write_pickle(dir / "model.pkl", globals_)
    if env:
        (dir / "conda.yaml").write_text(
            "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip<=24.0\n"
            "- pip:\n  - mlflow==2.14.1\n  - scikit-learn==1.5.0\nname: mlflow-env\n"
        )
        (dir / "python_env.yaml").write_text(
            "python: 3.11.7\nbuild_dependencies:\n- pip==24.0\ndependencies:\n- -r requirements.txt\n"
        )
        (dir / "requirements.txt").write_text("mlflow==2.14.1\n# pinned\nscikit-learn==1.5.0\nnumpy==1.26.4\n")
    return dir


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_field(number: int, value: int | bytes | str) -> bytes:
    """Encode one protobuf field: an int as a varint, bytes/str as length-delimited."""
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def _tf_tensor_info(name: str, dtype: int, shape: Sequence[int]) -> bytes:
    dims = b"".join(pb_field(2, pb_field(1, d) if d else b"") for d in shape)
    return pb_field(1, name) + pb_field(2, dtype) + pb_field(3, dims)


def savedmodel_pb(
    inputs: Mapping[str, tuple[int, Sequence[int]]] | None = None,
    outputs: Mapping[str, tuple[int, Sequence[int]]] | None = None,
) -> bytes:
    """Encode a SavedModel proto with one MetaGraphDef ("serve") and a serving_default signature."""
    inputs = {"x": (1, [-1, 4])} if inputs is None else inputs
    outputs = {"y": (1, [-1, 3])} if outputs is None else outputs
    meta_info = pb_field(4, "serve") + pb_field(5, "2.16.1") + pb_field(6, "v2.16.0-rc0-18-g5bc9d26649c")
    sig = b"".join(pb_field(1, pb_field(1, k) + pb_field(2, _tf_tensor_info(k + ":0", *v))) for k, v in inputs.items())
    sig += b"".join(pb_field(2, pb_field(1, k) + pb_field(2, _tf_tensor_info(k, *v))) for k, v in outputs.items())
    sig += pb_field(3, "tensorflow/serving/predict")
    graph_def = pb_field(1, b"\x0a\x03op1" * 50)  # a GraphDef body the reader must skip
    meta_graph = (
        pb_field(1, meta_info) + pb_field(2, graph_def) + pb_field(5, pb_field(1, "serving_default") + pb_field(2, sig))
    )
    return pb_field(1, 1) + pb_field(2, meta_graph)


def write_savedmodel_dir(dir: Path, *, variables: bool = True) -> Path:
    """Write a SavedModel directory: saved_model.pb, fingerprint.pb and (``variables``) a variables shard."""
    dir = Path(dir)
    (dir / "variables").mkdir(parents=True, exist_ok=True)
    (dir / "saved_model.pb").write_bytes(savedmodel_pb())
    (dir / "fingerprint.pb").write_bytes(pb_field(1, 12345))
    if variables:
        (dir / "variables" / "variables.index").write_bytes(b"\x00" * 48)
        (dir / "variables" / "variables.data-00000-of-00001").write_bytes(np.arange(12, dtype=np.float32).tobytes())
    return dir


def tree_names(dir: Path) -> list[str]:
    """List the relpaths of every file under ``dir`` (what the watcher passes as ``names``)."""
    dir = Path(dir)
    return sorted(str(p.relative_to(dir)) for p in dir.rglob("*") if p.is_file() or p.is_symlink())
