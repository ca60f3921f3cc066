"""Recognise a TensorFlow SavedModel directory and read its tags, versions and serving signature.

``saved_model.pb`` is a SavedModel proto: schema version (1) and MetaGraphDefs (2), each holding
MetaInfoDef (1: tags 4, tensorflow_version 5, tensorflow_git_version 6), the GraphDef (2, skipped)
and signature_def (5: a map of name -> SignatureDef{inputs 1, outputs 2, method_name 3}); a
TensorInfo is name 1, dtype 2, tensor_shape 3 (dim 2 {size 1, name 2}, unknown_rank 3).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from regd.domain import Signature, TensorSpec
from regd.ingest.formats.info import DirectoryStatus, FormatInfo
from regd.ingest.formats.limits import MAX_META_ITEMS, MAX_NAME, BoundedFile, FormatError
from regd.ingest.formats.protowire import LEN, VARINT, Field, ProtoFile, expect, signed64

SAVED_MODEL_PB = "saved_model.pb"
VARIABLES_INDEX = "variables/variables.index"
_DATA_SHARD = re.compile(r"^variables/variables\.data-(\d{5})-of-(\d{5})$")
DEFAULT_SIGNATURE = "serving_default"
# tensorflow DataType enum -> name
TF_DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64",
    9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32", 14: "bfloat16", 15: "qint16",
    16: "quint16", 17: "uint16", 18: "complex128", 19: "float16", 20: "resource", 21: "variant",
    22: "uint32", 23: "uint64",
}  # fmt: skip


def is_savedmodel(names: Collection[str]) -> bool:
    """Tell whether the names hold a top-level saved_model.pb."""
    return SAVED_MODEL_PB in names


def savedmodel_requirements(names: Collection[str]) -> DirectoryStatus:
    """Require saved_model.pb and, once variables exist, the index and every data shard."""
    present = set(names)
    missing: list[str] = [] if SAVED_MODEL_PB in present else [SAVED_MODEL_PB]
    shards = [m for m in (_DATA_SHARD.match(n) for n in present) if m]
    if shards or VARIABLES_INDEX in present:
        if VARIABLES_INDEX not in present:
            missing.append(VARIABLES_INDEX)
        total = int(shards[0].group(2)) if shards else 1
        for i in range(min(total, 10_000)):
            name = f"variables/variables.data-{i:05d}-of-{total:05d}"
            if name not in present:
                missing.append(name)
    later = [] if "fingerprint.pb" in present else ["fingerprint.pb"]
    return DirectoryStatus(complete=not missing, missing=missing, expected_later=later)


def read_savedmodel_pb(path: Path) -> FormatInfo:
    """Read the tags, TensorFlow version and serving signature of a saved_model.pb."""
    info = FormatInfo(format="tensorflow-savedmodel")
    with BoundedFile.open(path) as f:
        try:
            _read(ProtoFile(f), info)
        except FormatError as exc:
            info.format_error(f"saved_model.pb: {exc}")
    return info


def _read(p: ProtoFile, info: FormatInfo) -> None:
    meta = info.metadata
    signatures: dict[str, Field] = {}
    tags: list[str] = []
    graphs = 0
    for fld in p.fields(0, p.size):
        if fld.number == 1:
            expect(fld, VARINT, "saved_model_schema_version")
            meta["saved_model_schema_version"] = signed64(fld.value)
        elif fld.number == 2:
            expect(fld, LEN, "meta_graphs")
            graphs += 1
            for sub in p.fields(fld.offset, fld.end):
                if sub.number == 1:
                    _meta_info(p, sub, meta, tags)
                elif sub.number == 5:
                    name, value = _map_entry(p, sub)
                    if name not in signatures and len(signatures) < 1000:
                        signatures[name] = value
    if not graphs:
        raise FormatError("no meta graph (not a SavedModel?)")
    meta["meta_graphs"] = graphs
    meta["tags"] = tags[:MAX_META_ITEMS]
    meta["signature_names"] = sorted(signatures)[:MAX_META_ITEMS]
    chosen = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in signatures else min(signatures, default=None)
    if chosen is None:
        return
    inputs, outputs, method = _signature_def(p, signatures[chosen])
    info.signature = Signature(inputs=inputs, outputs=outputs, extra={"signature": chosen, "method_name": method})


def _meta_info(p: ProtoFile, fld: Field, meta: dict[str, object], tags: list[str]) -> None:
    expect(fld, LEN, "meta_info_def")
    for sub in p.fields(fld.offset, fld.end):
        if sub.number == 4 and len(tags) < MAX_META_ITEMS:
            tags.append(p.string(sub, "tag", cap=MAX_NAME))
        elif sub.number == 5:
            meta["tensorflow_version"] = p.string(sub, "tensorflow_version", keep=256)
        elif sub.number == 6:
            meta["tensorflow_git_version"] = p.string(sub, "tensorflow_git_version", keep=256)


def _map_entry(p: ProtoFile, fld: Field) -> tuple[str, Field]:
    """Read a map<string, message> entry: key 1, value 2 (the value's span)."""
    expect(fld, LEN, "map entry")
    key, value = "", Field(2, LEN)
    for sub in p.fields(fld.offset, fld.end):
        if sub.number == 1:
            key = p.string(sub, "map key", cap=MAX_NAME)
        elif sub.number == 2:
            expect(sub, LEN, "map value")
            value = sub
    return key, value


def _signature_def(p: ProtoFile, fld: Field) -> tuple[list[TensorSpec], list[TensorSpec], str]:
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    method = ""
    for sub in p.fields(fld.offset, fld.end):
        if sub.number in (1, 2):
            name, value = _map_entry(p, sub)
            target = inputs if sub.number == 1 else outputs
            if len(target) < 100_000:
                target.append(_tensor_info(p, name, value))
        elif sub.number == 3:
            method = p.string(sub, "method_name", keep=256)
    return inputs, outputs, method


def _tensor_info(p: ProtoFile, name: str, fld: Field) -> TensorSpec:
    dtype = "invalid"
    shape: list[int | str | None] = []
    for sub in p.fields(fld.offset, fld.end):
        if sub.number == 2:
            expect(sub, VARINT, "dtype")
            dtype = TF_DTYPES.get(sub.value, f"dtype_{sub.value}")
        elif sub.number == 3:
            expect(sub, LEN, "tensor_shape")
            for dim in p.fields(sub.offset, sub.end):
                if dim.number != 2:
                    continue
                if len(shape) >= 64:
                    raise FormatError("a shape with more than 64 dims")
                size: int | None = 0  # proto3 leaves a zero size out of the message
                for part in p.fields(dim.offset, dim.end):
                    if part.number == 1:
                        expect(part, VARINT, "dim size")
                        value = signed64(part.value)
                        size = None if value < 0 else value
                shape.append(size)
    return TensorSpec(name=name, dtype=dtype, shape=shape)
