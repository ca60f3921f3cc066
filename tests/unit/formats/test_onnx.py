"""ONNX: the wire-format walker against files written by the onnx package, and garbage."""

from __future__ import annotations

import numpy as np
import pytest

from regd.ingest.formats import read_directory, read_file
from tests.modelfiles import pb_field, write_mlflow_dir, write_onnx


def test_signature_initializers_and_header(tmp_path):
    path = write_onnx(tmp_path / "m.onnx")
    info = read_file(path)
    data = path.read_bytes()

    assert info.format == "onnx" and info.warnings == []
    sig = info.signature
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [("X", "FLOAT", ["batch", 4])]
    assert [(s.name, s.dtype, s.shape) for s in sig.outputs] == [("Y", "FLOAT", ["batch", 3])]
    assert sig.extra == {"opset": {"ai.onnx": 17}}
    meta = info.metadata
    assert meta["producer_name"] == "regd-tests" and meta["producer_version"] == "1.0"
    assert meta["opset_import"] == {"ai.onnx": 17}
    assert meta["metadata_props"] == {"author": "regd"}
    assert meta["graph_name"] == "regd_test_graph"
    assert meta["node_count"] == 2 and meta["initializer_count"] == 2
    assert isinstance(meta["ir_version"], int) and meta["ir_version"] >= 7

    by_name = {t.name: t for t in info.tensors}
    w, b = by_name["W"], by_name["B"]
    assert (w.dtype, w.shape, b.dtype, b.shape) == ("FLOAT", [4, 3], "FLOAT", [3])
    assert data[w.offset : w.offset + w.nbytes] == np.arange(12, dtype=np.float32).tobytes()
    assert data[b.offset : b.offset + b.nbytes] == np.array([0.5, 1.5, 2.5], np.float32).tobytes()
    assert meta["param_count"] == 15


def test_matches_the_onnx_package(tmp_path):
    import onnx

    inputs = [("ids", "INT64", ["batch", "seq"]), ("mask", "BOOL", [None, 7]), ("scale", "DOUBLE", [])]
    outputs = [("logits", "FLOAT16", ["batch", "seq", 32000]), ("scores", "BFLOAT16", [1])]
    inits = {"emb": np.ones((5, 2), np.float16), "bias": np.arange(3, dtype=np.int32)}
    path = write_onnx(tmp_path / "m.onnx", inputs, outputs, initializers=inits, opset=19)
    info = read_file(path)
    model = onnx.load(str(path))

    def shape(value_info):
        dims = value_info.type.tensor_type.shape.dim
        return [
            d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None for d in dims
        ]

    names = onnx.TensorProto.DataType.Name
    expected_in = [(v.name, names(v.type.tensor_type.elem_type), shape(v)) for v in model.graph.input]
    expected_out = [(v.name, names(v.type.tensor_type.elem_type), shape(v)) for v in model.graph.output]
    assert [(s.name, s.dtype, s.shape) for s in info.signature.inputs] == expected_in
    assert [(s.name, s.dtype, s.shape) for s in info.signature.outputs] == expected_out
    assert [(t.name, t.dtype, t.shape) for t in info.tensors] == [
        (i.name, names(i.data_type), list(i.dims)) for i in model.graph.initializer
    ]
    data = path.read_bytes()
    for init in model.graph.initializer:
        t = next(t for t in info.tensors if t.name == init.name)
        assert data[t.offset : t.offset + t.nbytes] == init.raw_data


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path):
    info = read_file(write_onnx(tmp_path / "m.onnx", initializers_as_inputs=True))
    assert [s.name for s in info.signature.inputs] == ["X"]


def test_external_data_is_recorded_and_located_in_a_directory(tmp_path):
    root = write_mlflow_dir(tmp_path / "model", model_file=False)
    write_onnx(root / "model.onnx", external_data=True)
    single = read_file(root / "model.onnx")
    assert single.warnings == []
    assert {e["tensor"] for e in single.metadata["external_data"]} == {"W", "B"}
    assert all(t.offset is None for t in single.tensors)

    names = sorted(p.name for p in root.iterdir())
    info = read_directory(root, "mlflow", names)
    data = (root / "model.onnx.data").read_bytes()
    w = next(t for t in info.tensors if t.name == "W")
    assert w.file == "model.onnx.data"
    assert data[w.offset : w.offset + w.nbytes] == np.arange(12, dtype=np.float32).tobytes()


GARBAGE = {
    "empty": b"",
    "text": b"this is not a protobuf message at all\n",
    "field zero": b"\x00\x01",
    "group wire type": b"\x0b\x0c",
    "length past the end": pb_field(1, 8) + b"\x3a\xff\xff\xff\xff\x0f" + b"\0" * 10,
    "overlong varint": b"\x08" + b"\xff" * 20,
    "no graph": pb_field(1, 8) + pb_field(2, "producer"),
    "no opset": pb_field(1, 8) + pb_field(7, pb_field(2, "g")),
    "graph with wrong wire type": pb_field(1, 8) + pb_field(7, 5),
}


def _nested_sequence(depth: int) -> bytes:
    """A TypeProto of sequence(sequence(...)) ``depth`` levels deep."""
    inner = pb_field(1, pb_field(1, 1))  # tensor_type { elem_type: FLOAT }
    for _ in range(depth):
        inner = pb_field(4, pb_field(1, inner))
    return inner


def _model(graph: bytes) -> bytes:
    """Wrap a GraphProto body in a ModelProto with an ir_version and an opset."""
    return pb_field(1, 8) + pb_field(7, graph) + pb_field(8, pb_field(2, 17))


GARBAGE["deep type nesting"] = _model(pb_field(11, pb_field(1, "x") + pb_field(2, _nested_sequence(400))))
GARBAGE["initializer byte count lies"] = _model(
    pb_field(5, pb_field(1, 1000) + pb_field(2, 1) + pb_field(8, "w") + pb_field(9, b"\0" * 8))
)
GARBAGE["negative dim"] = _model(pb_field(5, pb_field(1, -5) + pb_field(2, 1) + pb_field(8, "w")))
GARBAGE["too many dims"] = _model(pb_field(5, b"".join(pb_field(1, 1) for _ in range(100)) + pb_field(8, "w")))


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_garbage_gives_format_errors(tmp_path, bounded, case):
    path = tmp_path / "bad.onnx"
    path.write_bytes(GARBAGE[case])
    info = bounded(read_file, path)
    assert info.format == "onnx"
    assert [w.code for w in info.warnings] == ["format_error"], info.warnings


def test_every_truncation_is_reported_or_harmless(tmp_path, bounded):
    """Protobuf has no end marker: a cut between top-level fields can only lose trailing facts."""
    full = read_file(write_onnx(tmp_path / "m.onnx"))
    data = (tmp_path / "m.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    for size in range(0, len(data), 3):
        cut.write_bytes(data[:size])
        info = bounded(read_file, cut)
        assert info.format == "onnx"
        if not any(w.code == "format_error" for w in info.warnings):
            assert info.signature == full.signature and info.tensors == full.tensors, size


def test_sequence_and_map_types_are_named(tmp_path):
    seq = pb_field(4, pb_field(1, pb_field(1, pb_field(1, 1))))  # seq(tensor(FLOAT))
    mapping = pb_field(5, pb_field(1, 8) + pb_field(2, pb_field(1, pb_field(1, 7))))  # map(STRING, INT64)
    graph = pb_field(11, pb_field(1, "s") + pb_field(2, seq)) + pb_field(12, pb_field(1, "m") + pb_field(2, mapping))
    path = tmp_path / "t.onnx"
    path.write_bytes(pb_field(1, 8) + pb_field(7, graph) + pb_field(8, pb_field(2, 17)))
    info = read_file(path)
    assert info.warnings == []
    assert info.signature.inputs[0].dtype == "seq(FLOAT)"
    assert info.signature.outputs[0].dtype == "map(STRING,INT64)"
