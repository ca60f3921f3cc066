"""Collect a version's metadata from the files beside an artifact and from the caller, in priority order.

Lowest priority first; a later source wins field by field (and metric by metric, param by param, tag by tag):

    1. trainer outputs one directory up         hparams.yaml, trainer_state.json, all_results.json,
    2. trainer outputs beside the file          eval_results.json (in that order within a directory)
       (for a model directory: inside it)
    3. metrics.json, params.json                beside the artifact (a directory: beside it, then inside)
    4. the sidecar                              a file:      regd.json beside it, then <file>.regd.json
                                                a directory: regd.json inside it, then <dir>.regd.json beside
    5. ``explicit``                             what the caller passed to ``versions.register``

Step 1 reaches Lightning's ``version_N/hparams.yaml`` from ``version_N/checkpoints/*.ckpt`` and a Hugging
Face run's ``all_results.json`` from its ``checkpoint-N/`` directories. A relative ``env_lock`` is made
absolute from the directory of the file that names it (``explicit``: the artifact's directory).

A file source that is malformed, too big or unreadable never stops a registration: its bad fields are
dropped, a ``sidecar_invalid`` warning names the file and the problem, and everything else still applies.
Invalid ``explicit`` fields raise instead (pydantic's ``ValidationError``, a ``ValueError`` the API
answers with -32602): a caller should be told, not warned.

``load_metadata`` reads files: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from regd.domain import VersionWarning
from regd.ingest.boundedio import read_bounded
from regd.ingest.sidecarfields import (
    ENTRY_RULES,
    MAX_PARAMS_BYTES,
    SidecarFields,
    param_size,
    salvage,
)
from regd.ingest.trainerfiles import (
    SourceError,
    hparams_fields,
    load_json,
    load_yaml,
    metrics_file_fields,
    params_file_fields,
    results_fields,
    trainer_state_fields,
)

__all__ = [
    "COMPANION_NAMES",
    "SIDECAR_SUFFIX",
    "CollectedMetadata",
    "SidecarFields",
    "is_sidecar_or_companion",
    "load_metadata",
]

SIDECAR_SUFFIX = ".regd.json"
SIDECAR_NAME = "regd.json"
MAX_SOURCE_BYTES = 1024 * 1024
MAX_TRAINER_STATE_BYTES = 16 * 1024 * 1024
"""``trainer_state.json`` keeps the whole ``log_history``: a long run's is several MiB, and the Trainer wrote it."""
MAX_PROBLEMS_PER_SOURCE = 10

_TRAINER_FILES: tuple[tuple[str, Callable[[bytes], Any], Callable[[Any], dict[str, Any]]], ...] = (
    ("hparams.yaml", lambda data: load_yaml(data, allow_tuples=True), hparams_fields),
    ("trainer_state.json", load_json, trainer_state_fields),
    ("all_results.json", load_json, results_fields),
    ("eval_results.json", load_json, results_fields),
)
_COMPANIONS: tuple[tuple[str, Callable[[Any], dict[str, Any]]], ...] = (
    ("metrics.json", metrics_file_fields),
    ("params.json", params_file_fields),
)

COMPANION_NAMES = frozenset(
    {SIDECAR_NAME, "train_results.json", *(name for name, _, _ in _TRAINER_FILES), *(name for name, _ in _COMPANIONS)}
)
"""Metadata files the watcher must not take for models, nor let trigger a registration."""


def is_sidecar_or_companion(path: Path | str) -> bool:
    """Tell whether ``path`` is a sidecar or a metadata file regd reads beside models."""
    name = PurePath(path).name
    return name.endswith(SIDECAR_SUFFIX) or name in COMPANION_NAMES


@dataclass(slots=True)
class CollectedMetadata:
    """The merged fields, a warning per troubled source, and the files that contributed."""

    fields: SidecarFields
    warnings: list[VersionWarning] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Layer:
    label: str
    fields: dict[str, Any]


def load_metadata(
    artifact: Path,
    *,
    is_dir: bool,
    explicit: dict[str, Any] | None = None,
    root: Path | None = None,
) -> CollectedMetadata:
    """Read every metadata source of ``artifact`` and merge them, the caller's ``explicit`` fields last.

    ``root`` (the watch root), when given, keeps the lookup of trainer outputs one level up from leaving it.

    Raises:
        pydantic.ValidationError: ``explicit`` holds an unknown or invalid field.
    """
    artifact = Path(os.path.abspath(artifact))
    explicit_layer: _Layer | None = None
    if explicit:
        given = {key: value for key, value in explicit.items() if value is not None}
        checked = SidecarFields.model_validate(given)
        fields = checked.model_dump(exclude_unset=True)
        if "env_lock" in fields:
            fields["env_lock"] = _absolute(artifact.parent, fields["env_lock"])
        explicit_layer = _Layer("explicit", fields)

    layers: list[_Layer] = []
    warnings: list[VersionWarning] = []
    for path, load, extract in _file_sources(artifact, is_dir, root):
        layer = _read_source(path, load, extract, warnings)
        if layer is not None:
            layers.append(layer)
    if explicit_layer is not None:
        layers.append(explicit_layer)

    merged = _merge(layers, warnings)
    return CollectedMetadata(
        fields=SidecarFields.model_validate(merged),
        warnings=warnings,
        sources=[layer.label for layer in layers if layer.fields],
    )


_Source = tuple[Path, Callable[[bytes], Any], Callable[[Any], dict[str, Any]]]


def _file_sources(artifact: Path, is_dir: bool, root: Path | None) -> list[_Source]:
    """List the candidate files, lowest priority first (most do not exist)."""
    near = artifact if is_dir else artifact.parent
    far = near.parent
    top = Path(os.path.abspath(root)) if root is not None else None
    outside = far == near or (top is not None and not far.is_relative_to(top))  # `/`, or above the watch root
    sources: list[_Source] = []
    for directory in (near,) if outside else (far, near):
        for name, load, extract in _TRAINER_FILES:
            sources.append((directory / name, load, extract))
    companion_dirs = (artifact.parent, artifact) if is_dir else (artifact.parent,)
    for directory in companion_dirs:
        if top is not None and not directory.is_relative_to(top):
            continue
        for name, extract in _COMPANIONS:
            sources.append((directory / name, load_json, extract))
    sidecars = (
        (artifact / SIDECAR_NAME, artifact.parent / f"{artifact.name}{SIDECAR_SUFFIX}")
        if is_dir
        else (artifact.parent / SIDECAR_NAME, artifact.parent / f"{artifact.name}{SIDECAR_SUFFIX}")
    )
    for path in sidecars:
        sources.append((path, load_json, _sidecar_object))
    seen: set[Path] = set()
    unique: list[_Source] = []
    for source in sources:
        if source[0] not in seen:
            seen.add(source[0])
            unique.append(source)
    return unique


def _sidecar_object(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise SourceError(f"expected a JSON object, found {type(doc).__name__}")
    return doc


def _read_source(
    path: Path,
    load: Callable[[bytes], Any],
    extract: Callable[[Any], dict[str, Any]],
    warnings: list[VersionWarning],
) -> _Layer | None:
    """Read one source; None when it does not exist. Problems become one warning naming the file."""
    limit = MAX_TRAINER_STATE_BYTES if path.name == "trainer_state.json" else MAX_SOURCE_BYTES
    try:
        data = read_bounded(path, limit)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ENOENT):
            return None
        _warn(warnings, path, [f"cannot read: {exc.strerror or exc}"])
        return None
    try:
        raw = extract(load(data))
    except SourceError as exc:
        _warn(warnings, path, [str(exc)])
        return None
    fields, problems = salvage(raw)
    if "env_lock" in fields:
        fields["env_lock"] = _absolute(path.parent, fields["env_lock"])
    if problems:
        _warn(warnings, path, problems)
    return _Layer(str(path), fields)


def _absolute(base: Path, value: str) -> str:
    """Anchor a relative ``env_lock`` at ``base`` (the sidecar's directory), without resolving symlinks."""
    return os.path.normpath(os.path.join(base, value))


def _merge(layers: list[_Layer], warnings: list[VersionWarning]) -> dict[str, Any]:
    """Merge from the highest-priority layer down, so the params budget goes to the sources that win."""
    merged: dict[str, Any] = {}
    params_bytes = 2  # the braces
    for layer in reversed(layers):
        overflow: list[str] = []
        for key, value in layer.fields.items():
            if key not in ENTRY_RULES:
                merged.setdefault(key, value)
                continue
            target = merged.setdefault(key, {})
            for entry, item in value.items():
                if entry in target:
                    continue
                if key == "params":
                    cost = param_size({entry: item}) - 1  # `"k":v` plus a comma
                    if params_bytes + cost > MAX_PARAMS_BYTES:
                        overflow.append(entry)
                        continue
                    params_bytes += cost
                target[entry] = item
        if overflow:
            _warn(
                warnings,
                Path(layer.label),
                [f"{len(overflow)} params dropped: all params together may not exceed {MAX_PARAMS_BYTES // 1024} KiB"],
            )
    return {key: value for key, value in merged.items() if value or key not in ENTRY_RULES}


def _warn(warnings: list[VersionWarning], path: Path, problems: list[str]) -> None:
    shown = problems[:MAX_PROBLEMS_PER_SOURCE]
    more = len(problems) - len(shown)
    detail = "; ".join(shown) + (f"; and {more} more" if more else "")
    warnings.append(VersionWarning(code="sidecar_invalid", message=f"{path}: {detail}"))
