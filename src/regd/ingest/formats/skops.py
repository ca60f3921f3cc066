"""Read a skops archive's schema.json and list the types loading it would construct."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from regd.ingest.formats.info import FormatInfo
from regd.ingest.formats.limits import MAX_DEPTH, MAX_JSON_FILE, BoundedFile, FormatError, bounded, load_json
from regd.ingest.formats.pickles import is_dangerous, is_safe
from regd.ingest.formats.zips import open_zip, read_member

MAX_NODES = 1_000_000
# skops serialises plain containers and scalars as nodes of their own: data, never code.
_DATA_BUILTINS = {
    f"builtins.{n}"
    for n in [
        "dict",
        "list",
        "tuple",
        "str",
        "int",
        "float",
        "bool",
        "NoneType",
        "bytes",
        "bytearray",
        "complex",
        "set",
        "frozenset",
        "slice",
        "range",
    ]
}
_NUMPY_SCALARS = {
    f"numpy.{n}"
    for n in [
        "float16",
        "float32",
        "float64",
        "longdouble",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "bool_",
        "bool",
        "complex64",
        "complex128",
        "str_",
        "bytes_",
        "datetime64",
        "timedelta64",
        "ndarray",
        "dtype",
    ]
}


def read_skops(path: Path) -> FormatInfo:
    """List the types a skops file would construct and flag those outside the allow-list."""
    info = FormatInfo(format="skops")
    with BoundedFile.open(path) as f:
        try:
            with open_zip(f) as archive:
                schema = load_json(read_member(archive, "schema.json", MAX_JSON_FILE), "skops schema.json")
                info.metadata["array_files"] = sum(1 for n in archive.namelist() if n.endswith(".npy"))
        except FormatError as exc:
            info.format_error(str(exc))
            return info
    if not isinstance(schema, dict):
        info.format_error("skops schema.json is not an object")
        return info
    for key in ("protocol", "_skops_version"):
        if key in schema:
            info.metadata[key.lstrip("_")] = bounded(schema[key])
    if isinstance(schema.get("__module__"), str) and isinstance(schema.get("__class__"), str):
        info.metadata["root_type"] = f"{schema['__module__']}.{schema['__class__']}"
    types: list[str] = []
    try:
        _collect(schema, types, set(), 0, [0])
    except FormatError as exc:
        info.format_error(str(exc))
    info.metadata["types"] = bounded(types)
    unsafe = [t for t in types if not is_skops_safe(t)]
    info.unsafe_imports = unsafe
    if unsafe:
        dangerous = [t for t in unsafe if is_dangerous(t)]
        lead = f"skops schema names code-running globals ({', '.join(dangerous[:8])}); " if dangerous else ""
        info.warn(
            "unsafe_pickle", f"{lead}skops schema constructs types outside the allow-list: {', '.join(unsafe[:32])}"
        )
    return info


def is_skops_safe(qualname: str) -> bool:
    """Tell whether a type named in a skops schema only builds data."""
    return qualname in _DATA_BUILTINS or qualname in _NUMPY_SCALARS or is_safe(qualname)


def _collect(node: Any, types: list[str], seen: set[str], depth: int, count: list[int]) -> None:
    """Gather ``module.class`` of every node (and of function references) in the schema tree."""
    if depth > MAX_DEPTH * 4:
        raise FormatError("skops schema nested too deep")
    count[0] += 1
    if count[0] > MAX_NODES:
        raise FormatError(f"skops schema has more than {MAX_NODES} nodes")
    if isinstance(node, list):
        for item in node:
            _collect(item, types, seen, depth + 1, count)
        return
    if not isinstance(node, dict):
        return
    module, cls = node.get("__module__"), node.get("__class__")
    if "__loader__" in node and isinstance(module, str) and isinstance(cls, str):
        _add(f"{module}.{cls}", types, seen)
    content = node.get("content")
    if isinstance(content, dict) and isinstance(content.get("module_path"), str):
        # Function and type references name their target inside content.
        target = content.get("function") or content.get("__class__")
        if isinstance(target, str):
            _add(f"{content['module_path']}.{target}", types, seen)
    for value in node.values():
        if isinstance(value, (dict, list)):
            _collect(value, types, seen, depth + 1, count)


def _add(qualname: str, types: list[str], seen: set[str]) -> None:
    if qualname not in seen:
        seen.add(qualname)
        types.append(qualname)
