"""Weight files written with their real libraries: safetensors, GGUF, ONNX."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.modelfiles.common import _c, default_tensors


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
