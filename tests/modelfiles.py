"""Write real model files in their real formats for tests (no network, no torch, no keras).

Each ``write_*`` returns the path it wrote. The light real libraries (safetensors, gguf, onnx) are
used where installed; torch zips, joblib streams, Keras and skops archives, MLflow and SavedModel
directories are written byte by byte in the layout their libraries use, checked against the real
fixtures in ``tests/fixtures`` (made by ``tests/fixtures/make_fixtures.py``).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures"


def _c(array: np.ndarray) -> np.ndarray:
    """Make an array C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray would not)."""
    return np.require(array, requirements="C")


def default_tensors() -> dict[str, np.ndarray]:
    """Return a small, varied set of tensors with recognisable bytes."""
    return {
        "embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
        "layer.0.bias": np.array([1.5, -2.0, 3.25], dtype=np.float16),
        "layer.0.steps": np.arange(6, dtype=np.int64).reshape(2, 3),
        "scalar": np.array(7, dtype=np.int32),
    }


# --------------------------------------------------------------------------------------------- safetensors


def write_safetensors(
    path: Path, tensors: Mapping[str, np.ndarray] | None = None, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write a safetensors file with the safetensors library."""
    from safetensors.numpy import save_file

    path = Path(path)
    tensors = default_tensors() if tensors is None else tensors
    save_file({k: _c(v) for k, v in tensors.items()}, str(path), metadata=dict(metadata or {}))
    return path


def safetensors_bytes(header: Any, data: bytes = b"", length: int | None = None) -> bytes:
    """Build raw safetensors bytes around an arbitrary (possibly lying) header."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


# --------------------------------------------------------------------------------------------- gguf


def write_gguf(
    path: Path,
    tensors: Mapping[str, np.ndarray] | None = None,
    kv: Mapping[str, Any] | None = None,
    *,
    arch: str = "llama",
    alignment: int | None = None,
    quantized: bool = False,
) -> Path:
    """Write a GGUF v3 file with gguf.GGUFWriter; ``quantized`` adds a Q8_0 tensor ``q8.weight`` [2, 32]."""
    import gguf

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch)
    if alignment is not None:
        writer.add_custom_alignment(alignment)
    writer.add_name("regd-test-model")
    writer.add_context_length(2048)
    for key, value in (kv or {}).items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        else:
            writer.add_array(key, list(value))
    tensors = (
        {k: v for k, v in default_tensors().items() if v.dtype != np.int64 and v.ndim} if tensors is None else tensors
    )
    for name, array in tensors.items():
        writer.add_tensor(name, _c(array))
    if quantized:
        blocks = np.zeros((2, 34), dtype=np.uint8)  # Q8_0: 32 values per 34-byte block
        blocks[:, 2:] = np.arange(64, dtype=np.uint8).reshape(2, 32)
        writer.add_tensor("q8.weight", blocks, raw_dtype=gguf.GGMLQuantizationType.Q8_0)  # byte shape -> [2, 32]
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_header(version: int = 3, n_tensors: int = 0, n_kv: int = 0) -> bytes:
    """Build the fixed GGUF preamble with arbitrary (possibly lying) counts."""
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


# --------------------------------------------------------------------------------------------- onnx

TensorDecl = tuple[str, str, Sequence[int | str | None]]


def write_onnx(
    path: Path,
    inputs: Sequence[TensorDecl] | None = None,
    outputs: Sequence[TensorDecl] | None = None,
    *,
    initializers: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
    external_data: bool = False,
    initializers_as_inputs: bool = False,
) -> Path:
    """Write an ONNX model with onnx.helper: X[batch, 4] @ W[4, 3] + B[3] -> Y[batch, 3] by default.

    ``inputs``/``outputs`` are (name, element type name, shape) with str dims symbolic and None unknown.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = Path(path)
    inputs = inputs if inputs is not None else [("X", "FLOAT", ["batch", 4])]
    outputs = outputs if outputs is not None else [("Y", "FLOAT", ["batch", 3])]
    if initializers is None:
        initializers = {
            "W": np.arange(12, dtype=np.float32).reshape(4, 3),
            "B": np.array([0.5, 1.5, 2.5], dtype=np.float32),
        }

    def value_info(decl: TensorDecl) -> Any:
        name, elem, shape = decl
        return helper.make_tensor_value_info(name, getattr(TensorProto, elem), list(shape))

    inits = [numpy_helper.from_array(_c(a), name=n) for n, a in initializers.items()]
    if list(initializers) == ["W", "B"] and inputs and outputs:
        nodes = [
            helper.make_node("MatMul", [inputs[0][0], "W"], ["XW"]),
            helper.make_node("Add", ["XW", "B"], [outputs[0][0]]),
        ]
    else:
        nodes = [helper.make_node("Identity", [inputs[0][0]], [outputs[0][0]])] if inputs and outputs else []
    graph_inputs = [value_info(d) for d in inputs]
    if initializers_as_inputs:  # how IR < 4 exporters listed weights
        graph_inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "regd_test_graph", graph_inputs, [value_info(d) for d in outputs], inits)
    model = helper.make_model(graph, producer_name="regd-tests", opset_imports=[helper.make_opsetid("", opset)])
    model.producer_version = "1.0"
    model.doc_string = "a tiny model for regd's format tests"
    helper.set_model_props(model, {"author": "regd"})
    if external_data:
        onnx.save_model(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=path.name + ".data", size_threshold=0,
        )  # fmt: skip
    else:
        onnx.save_model(model, str(path))
    return path


# --------------------------------------------------------------------------------------------- pickles


def _global(module: str, name: str, protocol: int) -> bytes:
    """Encode a global reference the way the pickler of that protocol does."""
    if protocol < 4:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return _short_unicode(module) + b"\x94" + _short_unicode(name) + b"\x94" + b"\x93"


def _short_unicode(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def _split(qualname: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(qualname, tuple):
        return qualname
    if ":" in qualname:
        module, name = qualname.split(":", 1)
        return module, name
    module, _, name = qualname.rpartition(".")
    return module, name


def pickle_bytes(
    obj_globals: Sequence[str | tuple[str, str]] = (),
    *,
    call: tuple[str | tuple[str, str], tuple[str, ...]] | None = None,
    protocol: int = 4,
) -> bytes:
    """Hand-build a pickle of ``{"globals": [...], "call": f(*args)}`` importing arbitrary globals.

    Globals are written as references only (``"os:system"`` or ``"os.system"``); nothing needs to be
    importable here, and nothing in the stream is ever called by the tests: ``call`` is what a real
    unpickler *would* run.
    """
    out = bytearray(b"\x80" + bytes([protocol]))
    out += b"}" + b"(" + _short_unicode("globals") + b"]" + b"("
    for qualname in obj_globals:
        out += _global(*_split(qualname), protocol)
    out += b"e"  # APPENDS
    if call is not None:
        func, args = call
        out += _short_unicode("call") + _global(*_split(func), protocol)
        out += b"(" + b"".join(_short_unicode(a) for a in args) + b"t" + b"R"  # MARK args TUPLE REDUCE
    out += b"u."  # SETITEMS STOP
    return bytes(out)


def write_pickle(
    path: Path,
    obj_globals: Sequence[str | tuple[str, str]] = (),
    *,
    call: tuple[str | tuple[str, str], tuple[str, ...]] | None = None,
    protocol: int = 4,
    data: Any = None,
) -> Path:
    """Write a pickle importing ``obj_globals`` (hand-built), or of plain ``data`` via the pickle module."""
    import pickle

    path = Path(path)
    if data is not None:
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    else:
        path.write_bytes(pickle_bytes(obj_globals, call=call, protocol=protocol))
    return path


def write_joblib(
    path: Path, arrays: Mapping[str, np.ndarray] | None = None, *, compress: str | None = None, align: bool = True
) -> Path:
    """Write a joblib file as joblib.dump does: each array a NumpyArrayWrapper followed by its raw bytes.

    ``compress``: None, "zlib" or "gzip" (joblib's default container for compress=N is zlib).
    """
    arrays = (
        {"weights": np.arange(10, dtype=np.float64), "ids": np.arange(6, dtype=np.int32).reshape(2, 3)}
        if arrays is None
        else arrays
    )
    out = io.BytesIO()
    out.write(b"\x80\x04}\x94(")
    for name, array in arrays.items():
        array = _c(array)
        out.write(_short_unicode(name))
        out.write(_global("joblib.numpy_pickle", "NumpyArrayWrapper", 4) + b")\x81")  # EMPTY_TUPLE NEWOBJ
        out.write(b"}(")  # the wrapper's __dict__
        out.write(_short_unicode("subclass") + _global("numpy", "ndarray", 4))
        out.write(_short_unicode("shape") + b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t")
        out.write(_short_unicode("order") + _short_unicode("C"))
        out.write(_short_unicode("dtype") + _global("numpy", "dtype", 4))
        out.write(_short_unicode(array.dtype.str[1:]) + b"\x89\x88\x87R")  # ('f8', False, True) REDUCE
        out.write(
            b"(J\x03\x00\x00\x00"
            + _short_unicode(array.dtype.str[0])
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffJ\x00\x00\x00\x00tb"
        )
        out.write(_short_unicode("allow_mmap") + b"\x88")
        if align:
            out.write(_short_unicode("numpy_array_alignment_bytes") + b"K\x10")
        out.write(b"ub")  # SETITEMS, BUILD: joblib reads the array bytes right here
        if align:
            pad = 16 - (out.tell() + 1) % 16
            out.write(bytes([pad]) + b"\xff" * pad)
        out.write(array.tobytes())
    out.write(b"u.")
    raw = out.getvalue()
    path = Path(path)
    if compress == "zlib":
        raw = zlib.compress(raw, 3)
    elif compress == "gzip":
        import gzip

        raw = gzip.compress(raw, 3)
    path.write_bytes(raw)
    return path


# --------------------------------------------------------------------------------------------- torch


def _aligned_member(archive: zipfile.ZipFile, name: str, data: bytes, align: int = 64) -> None:
    """Add a stored member whose data starts on an ``align``-byte boundary (torch pads with an "FB" extra)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    offset = archive.fp.tell()  # type: ignore[union-attr]
    start = offset + 30 + len(name.encode())
    pad = (-(start + 4)) % align
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    archive.writestr(info, data)


_TORCH_STORAGE = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage", np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
}  # fmt: skip


def torch_pickle(
    tensors: Mapping[str, np.ndarray], *, nested: str | None = None, extra_globals: Sequence[str | tuple[str, str]] = ()
) -> bytes:
    """Build data.pkl as torch.save writes a state dict: protocol 2, OrderedDict, _rebuild_tensor_v2.

    Storage keys are "0", "1", ... in order. ``nested`` wraps the state dict as ``{nested: sd}``
    (Lightning's ``state_dict``); ``extra_globals`` adds references under the key "extra".
    """
    out = bytearray(b"\x80\x02")
    if nested is not None:
        out += b"}(" + _short_unicode(nested)
    out += _global("collections", "OrderedDict", 2) + b")R("  # OrderedDict() then MARK for SETITEMS
    for i, (name, array) in enumerate(tensors.items()):
        storage = _TORCH_STORAGE[np.dtype(array.dtype)]
        out += _short_unicode(name)
        out += _global("torch._utils", "_rebuild_tensor_v2", 2)
        out += b"(("  # MARK (args) MARK (persistent id tuple)
        out += _short_unicode("storage") + _global("torch", storage, 2) + _short_unicode(str(i))
        out += _short_unicode("cpu") + b"J" + struct.pack("<i", array.size) + b"tQ"  # TUPLE BINPERSID
        out += b"K\x00"  # storage offset
        out += b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t"
        strides = [s // array.itemsize for s in array.strides] if array.ndim else []
        out += b"(" + b"".join(b"J" + struct.pack("<i", s) for s in strides) + b"t"
        out += b"\x89" + _global("collections", "OrderedDict", 2) + b")R"  # requires_grad, backward_hooks
        out += b"tR"  # TUPLE (args) REDUCE
    extra = b"](" + b"".join(_global(*_split(g), 2) for g in extra_globals) + b"e" if extra_globals else b""
    if extra and nested is None:
        out += _short_unicode("__regd_extra__") + extra
    out += b"u"  # SETITEMS into the OrderedDict
    if nested is not None:
        out += (_short_unicode("extra") + extra if extra else b"") + b"u"
    out += b"."
    return bytes(out)


def write_torch_zip(
    path: Path,
    tensors: Mapping[str, np.ndarray] | None = None,
    *,
    archive: str | None = None,
    nested: str | None = None,
    extra_globals: Sequence[str | tuple[str, str]] = (),
) -> Path:
    """Write a PyTorch zip checkpoint laid out exactly as torch.save does (stored, 64-byte aligned)."""
    path = Path(path)
    tensors = default_tensors() if tensors is None else tensors
    tensors = {k: _c(v) for k, v in tensors.items()}
    prefix = (archive if archive is not None else path.stem) + "/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _aligned_member(zf, prefix + "data.pkl", torch_pickle(tensors, nested=nested, extra_globals=extra_globals))
        _aligned_member(zf, prefix + ".format_version", b"1")
        _aligned_member(zf, prefix + ".storage_alignment", b"64")
        _aligned_member(zf, prefix + "byteorder", b"little")
        for i, array in enumerate(tensors.values()):
            _aligned_member(zf, f"{prefix}data/{i}", array.tobytes())
        _aligned_member(zf, prefix + "version", b"3\n")
        _aligned_member(zf, prefix + ".data/serialization_id", b"0" * 40)
    return path


# --------------------------------------------------------------------------------------------- keras, skops

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def keras_config(kind: str = "sequential") -> dict[str, Any]:
    """Return a Keras 3 model config as ``model.save`` writes it (see tests/fixtures/tiny.keras)."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}

    def dense(layer: str, units: int, input_shape: list[Any], **extra: Any) -> dict[str, Any]:
        return {
            "module": "keras.layers", "class_name": "Dense",
            "config": {"name": layer, "trainable": True, "dtype": policy, "units": units, "activation": "linear", "use_bias": True},
            "registered_name": None, "build_config": {"input_shape": input_shape}, **extra,
        }  # fmt: skip

    def input_layer(layer: str, shape: list[Any], dtype: str = "float32", **extra: Any) -> dict[str, Any]:
        return {
            "module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": shape, "dtype": dtype, "sparse": False, "ragged": False, "name": layer, "optional": False},
            "registered_name": None, **extra,
        }  # fmt: skip

    if kind == "sequential":
        layers = [input_layer("features", [None, 4]), dense("hidden", 8, [None, 4]), dense("probs", 3, [None, 8])]
        return {
            "module": "keras", "class_name": "Sequential",
            "config": {"name": "sequential", "trainable": True, "dtype": policy, "layers": layers, "build_input_shape": [None, 4]},
            "registered_name": None, "build_config": {"input_shape": [None, 4]}, "compile_config": {},
        }  # fmt: skip
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
    content = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {
        "with_mean": {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": "true", "is_json": True},
        "mean_": {"__class__": "ndarray", "__module__": "numpy", "__loader__": "NdArrayNode", "type": "numpy", "file": "1.npy"},
        **children,
    }}  # fmt: skip
    module, cls = types[0]
    schema = {**node(module, cls, content), "protocol": 2, "_skops_version": "0.16.0"}
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("1.npy", buf.getvalue())
        zf.writestr("schema.json", json.dumps(schema))
    return Path(path)


# --------------------------------------------------------------------------------------------- directories

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
            "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip<=24.0\n- pip:\n  - mlflow==2.14.1\n  - scikit-learn==1.5.0\nname: mlflow-env\n"
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
