"""Read an ONNX model's header, graph inputs/outputs and initializer table without the onnx package.

The onnx package parses the whole ModelProto into memory (weights included); this walks the wire
format and seeks over node bodies and raw tensor bytes, so a 2 GB model costs a few reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regd.domain import Signature, TensorFingerprint, TensorSpec
from regd.ingest.formats.info import FormatInfo, add_counts
from regd.ingest.formats.limits import (
    MAX_DEPTH,
    MAX_META_ITEMS,
    MAX_META_KEYS,
    MAX_META_STRING,
    MAX_NAME,
    MAX_TENSORS,
    BoundedFile,
    FormatError,
    numel,
)
from regd.ingest.formats.protowire import LEN, VARINT, Field, ProtoFile, expect, signed64

# TensorProto.DataType -> (name, bits per element); 0 is UNDEFINED.
ELEM_TYPES: dict[int, tuple[str, int]] = {
    1: ("FLOAT", 32), 2: ("UINT8", 8), 3: ("INT8", 8), 4: ("UINT16", 16), 5: ("INT16", 16),
    6: ("INT32", 32), 7: ("INT64", 64), 8: ("STRING", 0), 9: ("BOOL", 8), 10: ("FLOAT16", 16),
    11: ("DOUBLE", 64), 12: ("UINT32", 32), 13: ("UINT64", 64), 14: ("COMPLEX64", 64),
    15: ("COMPLEX128", 128), 16: ("BFLOAT16", 16), 17: ("FLOAT8E4M3FN", 8), 18: ("FLOAT8E4M3FNUZ", 8),
    19: ("FLOAT8E5M2", 8), 20: ("FLOAT8E5M2FNUZ", 8), 21: ("UINT4", 4), 22: ("INT4", 4),
    23: ("FLOAT4E2M1", 4), 24: ("FLOAT8E8M0", 8), 25: ("UINT2", 2), 26: ("INT2", 2),
}  # fmt: skip
FLOAT, DOUBLE = 1, 11
MAX_DIMS = 64
MAX_IO = 100_000


def elem_name(code: int) -> str:
    """Name an ONNX element type number."""
    return ELEM_TYPES[code][0] if code in ELEM_TYPES else "UNDEFINED" if code == 0 else f"TYPE_{code}"


def read_onnx(path: Path) -> FormatInfo:
    """Read an ONNX model's producer, opsets, graph signature and initializers."""
    info = FormatInfo(format="onnx")
    with BoundedFile.open(path) as f:
        try:
            _Reader(ProtoFile(f), info).model()
        except FormatError as exc:
            info.format_error(f"onnx: {exc}")
        except RecursionError:
            info.format_error("onnx: nested too deep")
    return info


class _Reader:
    def __init__(self, proto: ProtoFile, info: FormatInfo) -> None:
        self.p = proto
        self.info = info

    def model(self) -> None:
        meta = self.info.metadata
        opsets: dict[str, int] = {}
        props: dict[str, str] = {}
        graph: Field | None = None
        for fld in self.p.fields(0, self.p.size):
            n = fld.number
            if n in (1, 5):  # ir_version, model_version
                expect(fld, VARINT, "ModelProto int field")
                meta["ir_version" if n == 1 else "model_version"] = signed64(fld.value)
            elif n in (2, 3, 4, 6):
                key = {2: "producer_name", 3: "producer_version", 4: "domain", 6: "doc_string"}[n]
                meta[key] = self.p.string(fld, key, keep=MAX_META_STRING)
            elif n == 7:
                expect(fld, LEN, "graph")
                graph = fld
            elif n == 8:
                domain, version = self.opset(fld)
                opsets[domain or "ai.onnx"] = version
            elif n == 14 and len(props) < MAX_META_KEYS:
                key, value = self.entry(fld)
                props[key] = value
        if "ir_version" not in meta or graph is None:
            raise FormatError("not an ONNX model (no ir_version or no graph)")
        if not opsets and meta["ir_version"] >= 3:
            raise FormatError("no opset_import (truncated?)")
        meta["opset_import"] = opsets
        if props:
            meta["metadata_props"] = props
        inputs, outputs = self.graph(graph)
        extra: dict[str, Any] = {"opset": opsets}
        specs = [TensorSpec(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in self.info.tensors]
        self.info.signature = Signature(inputs=inputs, outputs=outputs, tensors=specs, extra=extra)
        add_counts(self.info)

    def opset(self, fld: Field) -> tuple[str, int]:
        expect(fld, LEN, "opset_import")
        domain, version = "", 0
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number == 1:
                domain = self.p.string(sub, "opset domain", cap=MAX_NAME)
            elif sub.number == 2:
                expect(sub, VARINT, "opset version")
                version = signed64(sub.value)
        return domain, version

    def entry(self, fld: Field) -> tuple[str, str]:
        """Read a StringStringEntryProto (key 1, value 2)."""
        expect(fld, LEN, "string entry")
        key = value = ""
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number == 1:
                key = self.p.string(sub, "entry key", cap=MAX_NAME)
            elif sub.number == 2:
                value = self.p.string(sub, "entry value", keep=MAX_META_STRING)
        return key, value

    def graph(self, graph: Field) -> tuple[list[TensorSpec], list[TensorSpec]]:
        meta = self.info.metadata
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        initializer_names: set[str] = set()
        external: list[dict[str, Any]] = []
        nodes = 0
        for fld in self.p.fields(graph.offset, graph.end):
            n = fld.number
            if n == 1:
                nodes += 1  # node bodies are skipped: only their count matters here
            elif n == 2:
                meta["graph_name"] = self.p.string(fld, "graph name", keep=MAX_META_STRING)
            elif n == 5:
                if len(self.info.tensors) >= MAX_TENSORS:
                    raise FormatError(f"more than {MAX_TENSORS} initializers")
                tensor, ext = self.initializer(fld)
                initializer_names.add(tensor.name)
                self.info.tensors.append(tensor)
                if ext is not None and len(external) < MAX_META_ITEMS:
                    external.append(ext)
            elif n in (11, 12):
                target = inputs if n == 11 else outputs
                if len(target) >= MAX_IO:
                    raise FormatError(f"more than {MAX_IO} graph inputs or outputs")
                target.append(self.value_info(fld))
        meta["node_count"] = nodes
        meta["initializer_count"] = len(self.info.tensors)
        if external:
            meta["external_data"] = external
        # Before IR version 4 initializers were also listed as graph inputs; they are not real inputs.
        inputs = [spec for spec in inputs if spec.name not in initializer_names]
        return inputs, outputs

    def value_info(self, fld: Field) -> TensorSpec:
        expect(fld, LEN, "ValueInfoProto")
        name, dtype, shape = "", "UNDEFINED", []
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number == 1:
                name = self.p.string(sub, "value name", cap=MAX_NAME)
            elif sub.number == 2:
                dtype, shape = self.type_proto(sub, 0)
        return TensorSpec(name=name, dtype=dtype, shape=shape)

    def type_proto(self, fld: Field, depth: int) -> tuple[str, list[int | str | None]]:
        """Describe a TypeProto: a tensor's element type and shape, or a composite type's name."""
        if depth > MAX_DEPTH:
            raise FormatError("TypeProto nested too deep")
        expect(fld, LEN, "TypeProto")
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number in (1, 8):  # tensor_type, sparse_tensor_type: elem_type 1, shape 2
                dtype, shape = self.tensor_type(sub)
                return (dtype if sub.number == 1 else f"sparse({dtype})"), shape
            if sub.number in (4, 9):  # sequence_type, optional_type: elem_type 1
                inner = "UNDEFINED"
                for part in self.p.fields(sub.offset, sub.end):
                    if part.number == 1:
                        inner = self.type_proto(part, depth + 1)[0]
                return ("seq" if sub.number == 4 else "optional") + f"({inner})", []
            if sub.number == 5:  # map_type: key_type 1, value_type 2
                key, value = "UNDEFINED", "UNDEFINED"
                for part in self.p.fields(sub.offset, sub.end):
                    if part.number == 1:
                        expect(part, VARINT, "map key type")
                        key = elem_name(part.value)
                    elif part.number == 2:
                        value = self.type_proto(part, depth + 1)[0]
                return f"map({key},{value})", []
        return "UNDEFINED", []

    def tensor_type(self, fld: Field) -> tuple[str, list[int | str | None]]:
        expect(fld, LEN, "tensor type")
        dtype = "UNDEFINED"
        shape: list[int | str | None] = []
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number == 1:
                expect(sub, VARINT, "elem_type")
                dtype = elem_name(sub.value)
            elif sub.number == 2:
                expect(sub, LEN, "shape")
                for dim in self.p.fields(sub.offset, sub.end):
                    if dim.number != 1:
                        continue
                    if len(shape) >= MAX_DIMS:
                        raise FormatError(f"a shape with more than {MAX_DIMS} dims")
                    shape.append(self.dimension(dim))
        return dtype, shape

    def dimension(self, fld: Field) -> int | str | None:
        expect(fld, LEN, "dim")
        value: int | str | None = None
        for sub in self.p.fields(fld.offset, fld.end):
            if sub.number == 1:
                expect(sub, VARINT, "dim_value")
                value = signed64(sub.value)
            elif sub.number == 2:
                value = self.p.string(sub, "dim_param", cap=MAX_NAME)
        return value

    def initializer(self, fld: Field) -> tuple[TensorFingerprint, dict[str, Any] | None]:
        """Read a TensorProto's name, type and dims, and where its bytes lie."""
        expect(fld, LEN, "initializer")
        name, code = "", 0
        dims: list[int] = []
        raw: Field | None = None
        typed: dict[int, Field] = {}
        ext: dict[str, str] = {}
        external = False
        for sub in self.p.fields(fld.offset, fld.end):
            n = sub.number
            if n == 1:
                dims.extend(signed64(v) for v in self.p.ints(sub, "dims", MAX_DIMS))
                if len(dims) > MAX_DIMS:
                    raise FormatError(f"an initializer with more than {MAX_DIMS} dims")
            elif n == 2:
                expect(sub, VARINT, "data_type")
                code = sub.value
            elif n == 8:
                name = self.p.string(sub, "tensor name", cap=MAX_NAME)
            elif n == 9:
                expect(sub, LEN, "raw_data")
                raw = sub
            elif n in (4, 10) and sub.wire == LEN:  # packed float_data / double_data
                typed[n] = sub
            elif n == 13 and len(ext) < 16:
                key, value = self.entry(sub)
                ext[key] = value
            elif n == 14:
                expect(sub, VARINT, "data_location")
                external = sub.value == 1
        if any(d < 0 for d in dims):
            raise FormatError(f"initializer {name!r} has a negative dim")
        dtype = elem_name(code)
        bits = ELEM_TYPES.get(code, ("", 0))[1]
        expected = (numel(dims) * bits + 7) // 8 if bits else None
        tensor = TensorFingerprint(name=name, dtype=dtype, shape=list(dims))
        # float_data / double_data packed are little-endian IEEE values: the same bytes raw_data would hold.
        span = raw or (typed.get(4) if code == FLOAT else typed.get(10) if code == DOUBLE else None)
        if span is not None:
            if expected is not None and span.length != expected:
                raise FormatError(f"initializer {name!r}: {span.length} bytes for {dtype}{dims}, expected {expected}")
            tensor.offset, tensor.nbytes = span.offset, span.length
        if external or ext:
            return tensor, {"tensor": name, **ext}
        return tensor, None
