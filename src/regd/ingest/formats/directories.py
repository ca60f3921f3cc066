"""Model directories (MLflow, Hugging Face, TensorFlow SavedModel): layout, completeness, combined read."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from regd.domain import Signature, TensorSpec
from regd.ingest.formats.dispatch import MODEL_EXTS, read_file, suffixes
from regd.ingest.formats.huggingface import (
    huggingface_requirements,
    is_huggingface,
    read_config,
    read_indexes,
)
from regd.ingest.formats.info import DirectoryStatus, FormatInfo, add_counts
from regd.ingest.formats.limits import MAX_DIR_FILES, MAX_META_KEYS, MAX_TENSORS, FormatError, contained
from regd.ingest.formats.mlflow import MLMODEL, describe_mlmodel, load_mlmodel, mlflow_requirements, read_environment
from regd.ingest.formats.savedmodel import (
    SAVED_MODEL_PB,
    is_savedmodel,
    read_savedmodel_pb,
    savedmodel_requirements,
)

# Per-file facts worth lifting to the directory (the first file's value wins); the rest stay per file.
MERGED_KEYS = {
    "opset_import", "ir_version", "producer_name", "producer_version", "keras_version", "gguf_version",
    "architecture", "safetensors_metadata", "byteorder", "torchscript", "legacy_format",
}  # fmt: skip


def detect_directory_layout(path: Path, names: Collection[str]) -> str | None:
    """Name the model-directory layout the relpaths ``names`` form, or None.

    ``mlflow`` (MLmodel), ``tensorflow-savedmodel`` (saved_model.pb), ``huggingface`` (config.json
    plus weights or a shard index); markers count only at the top of the directory. MLflow wins over
    the others because an MLflow model may wrap either.
    """
    del path  # the watcher's names are authoritative; the disk may lag behind its events
    if MLMODEL in names:
        return "mlflow"
    if is_savedmodel(names):
        return "tensorflow-savedmodel"
    if is_huggingface(names):
        return "huggingface"
    return None


def directory_requirements(path: Path, layout: str, names: Collection[str]) -> DirectoryStatus:
    """Say what a model directory still lacks before it is complete, and what may arrive later."""
    if layout == "mlflow":
        return mlflow_requirements(path, names)
    if layout == "huggingface":
        return huggingface_requirements(path, names)
    if layout == "tensorflow-savedmodel":
        return savedmodel_requirements(names)
    return DirectoryStatus(complete=True)


def read_directory(path: Path, layout: str, files: Sequence[str]) -> FormatInfo:
    """Read every model file of a directory into one FormatInfo, tensors tagged with their relpath.

    Symlinks (or paths through symlinked folders) that lead outside ``path`` are skipped with a
    warning; nothing outside the directory is opened.
    """
    info = FormatInfo(format=layout or "unknown")
    safe: list[str] = []
    for rel in sorted(set(files)):
        problem = _outside(path, rel)
        if problem:
            info.warn("symlink_skipped", problem)
        else:
            safe.append(rel)
    layout_sig = _read_layout(path, layout, safe, info)
    per_file: dict[str, str] = {}
    io_signature: Signature | None = None
    to_read = [rel for rel in safe if _is_model_file(rel)]
    if len(to_read) > MAX_DIR_FILES:
        info.warn(
            "format_error", f"{len(to_read) - MAX_DIR_FILES} model files past the first {MAX_DIR_FILES} were not read"
        )
        to_read = to_read[:MAX_DIR_FILES]
    names = set(safe)
    for rel in to_read:
        sub = read_file(path / rel)
        if len(per_file) < MAX_META_KEYS:
            per_file[rel] = sub.format
        _merge(info, sub, rel, names)
        if io_signature is None and sub.signature is not None and (sub.signature.inputs or sub.signature.outputs):
            io_signature = sub.signature
    info.metadata["files"] = per_file
    if layout == "huggingface":
        _check_weight_map(path, safe, info)
    inputs = (layout_sig.inputs if layout_sig else []) or (io_signature.inputs if io_signature else [])
    outputs = (layout_sig.outputs if layout_sig else []) or (io_signature.outputs if io_signature else [])
    extra = {**(io_signature.extra if io_signature else {}), **(layout_sig.extra if layout_sig else {})}
    specs = [TensorSpec(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in info.tensors]
    if inputs or outputs or specs or extra:
        info.signature = Signature(inputs=inputs, outputs=outputs, tensors=specs, extra=extra)
    add_counts(info)
    return info


def _read_layout(path: Path, layout: str, files: list[str], info: FormatInfo) -> Signature | None:
    """Read the layout's own descriptor (MLmodel, config.json, saved_model.pb)."""
    if layout == "mlflow" and MLMODEL in files:
        try:
            describe_mlmodel(load_mlmodel(path / MLMODEL), info)
        except FormatError as exc:
            info.format_error(str(exc))
        read_environment(path, info)
        return info.signature
    if layout == "huggingface":
        facts = read_config(path, info)
        extra = {k: facts[k] for k in ("architectures", "model_type") if k in facts}
        return Signature(extra=extra) if extra else None
    if layout == "tensorflow-savedmodel" and SAVED_MODEL_PB in files:
        pb = read_savedmodel_pb(path / SAVED_MODEL_PB)
        info.metadata.update(pb.metadata)
        info.warnings.extend(pb.warnings)
        return pb.signature
    return None


def _is_model_file(rel: str) -> bool:
    ext, inner = suffixes(Path(rel))
    return ext in MODEL_EXTS or inner in MODEL_EXTS


def _outside(path: Path, rel: str) -> str | None:
    """Explain why ``rel`` must not be opened (it escapes the directory), or return None."""
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        return f"skipped {rel!r}: not a path inside the directory"
    if contained(path, rel) is None:
        return f"skipped {rel!r}: a symlink pointing outside the model directory"
    return None


def _merge(info: FormatInfo, sub: FormatInfo, rel: str, names: set[str]) -> None:
    """Fold one file's facts into the directory's, tagging tensors with their relpath."""
    base = PurePosixPath(rel).parent
    external = _external_locations(sub)
    for tensor in sub.tensors:
        if len(info.tensors) >= MAX_TENSORS:
            info.format_error(f"more than {MAX_TENSORS} tensors; the rest were not listed")
            break
        tensor = tensor.model_copy(update={"file": rel})
        if tensor.name in external:
            # ONNX external data: the bytes live in a sibling file at a recorded offset.
            location, offset, length = external[tensor.name]
            sibling = str(base / location) if str(base) != "." else location
            if sibling in names and offset is not None:
                tensor = tensor.model_copy(update={"file": sibling, "offset": offset, "nbytes": length})
        info.tensors.append(tensor)
    for warning in sub.warnings:
        if warning.code == "unknown_format":
            continue  # companions with model-like names (a raw .bin) are not the model's problem
        info.warn(warning.code, f"{rel}: {warning.message}")
    for name in sub.unsafe_imports:
        if name not in info.unsafe_imports:
            info.unsafe_imports.append(name)
    for key, value in sub.metadata.items():
        if key == "pickle_imports":
            merged = info.metadata.setdefault("pickle_imports", [])
            merged.extend(q for q in value if q not in merged and len(merged) < 256)
        elif key in MERGED_KEYS:
            info.metadata.setdefault(key, value)


def _external_locations(sub: FormatInfo) -> dict[str, tuple[str, int | None, int | None]]:
    out: dict[str, tuple[str, int | None, int | None]] = {}
    for entry in sub.metadata.get("external_data", []) if sub.format == "onnx" else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("location"), str):
            continue
        out[str(entry.get("tensor"))] = (entry["location"], _int(entry.get("offset")), _int(entry.get("length")))
    return out


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _check_weight_map(path: Path, files: list[str], info: FormatInfo) -> None:
    """Warn when an index says a tensor lives in a shard that does not hold it."""
    weight_map = read_indexes(path, files, info)
    if not weight_map:
        return
    held: dict[str, set[str]] = {}
    for tensor in info.tensors:
        held.setdefault(tensor.file, set()).add(tensor.name)
    wrong = [name for name, shard in weight_map.items() if shard in held and name not in held[shard]]
    if wrong:
        listed = ", ".join(wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
        info.format_error(f"the shard index names tensors its shards do not hold: {listed}")
