"""Read an MLflow model directory: the MLmodel YAML, its signature, and the environment files beside it."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from regd.domain import Signature, TensorSpec
from regd.ingest.formats.info import DirectoryStatus, FormatInfo
from regd.ingest.formats.limits import (
    MAX_TEXT_FILE,
    MAX_YAML_FILE,
    FormatError,
    bounded,
    contained,
    read_capped,
)

MLMODEL = "MLmodel"
ENV_FILES = ("conda.yaml", "python_env.yaml", "requirements.txt")
"""Written by ``save_model`` after MLmodel: worth waiting a moment for."""
# Flavor keys that name the model's data (a file or a directory, relative to the model root).
DATA_KEYS = ("model_path", "data", "pickled_model", "model_data", "saved_model_dir", "model_binary", "model_file")
MAX_REQUIREMENTS = 500


class _NoAliasLoader(yaml.SafeLoader):
    """A safe loader that refuses anchors and aliases: MLmodel never uses them, billion-laughs files do."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise FormatError("YAML aliases are not accepted")
        return super().compose_node(parent, index)


def load_yaml(data: bytes, what: str) -> Any:
    """Parse small YAML safely; any failure becomes FormatError."""
    try:
        return yaml.load(data, Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise FormatError(f"{what}: invalid YAML ({str(exc)[:200]})") from None
    except RecursionError:
        raise FormatError(f"{what}: nested too deep") from None


def load_mlmodel(path: Path) -> dict[str, Any]:
    """Read and parse an MLmodel file."""
    doc = load_yaml(read_capped(path, MAX_YAML_FILE, MLMODEL), MLMODEL)
    if not isinstance(doc, dict):
        raise FormatError("MLmodel is not a mapping")
    return doc


def read_mlmodel(path: Path) -> FormatInfo:
    """Read one MLmodel file (and the environment files beside it) into a FormatInfo."""
    info = FormatInfo(format="mlflow")
    try:
        doc = load_mlmodel(path)
    except FormatError as exc:
        info.format_error(str(exc))
        return info
    describe_mlmodel(doc, info)
    read_environment(path.parent, info)
    return info


def describe_mlmodel(doc: dict[str, Any], info: FormatInfo) -> None:
    """Fill flavors, identity, timestamps and the signature from a parsed MLmodel."""
    meta = info.metadata
    flavors = doc.get("flavors") if isinstance(doc.get("flavors"), dict) else {}
    meta["flavors"] = bounded(flavors)
    for key in ("run_id", "model_uuid", "utc_time_created", "artifact_path", "mlflow_version", "model_size_bytes"):
        if doc.get(key) is not None:
            meta[key] = bounded(doc[key] if isinstance(doc[key], (str, int, float)) else str(doc[key]))
    pyfunc = flavors.get("python_function") if isinstance(flavors.get("python_function"), dict) else {}
    if pyfunc.get("python_version"):
        meta["python_version"] = str(pyfunc["python_version"])
    extra: dict[str, Any] = {"flavors": sorted(str(k) for k in flavors)}
    signature = doc.get("signature")
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    if isinstance(signature, dict):
        try:
            inputs, in_kind = _schema(signature.get("inputs"), "inputs")
            outputs, out_kind = _schema(signature.get("outputs"), "outputs")
            if in_kind or out_kind:
                extra["schema"] = in_kind or out_kind
            params = _json_field(signature.get("params"), "params")
            if params:
                extra["params"] = bounded(params)
        except FormatError as exc:
            info.format_error(f"MLmodel signature: {exc}")
    info.signature = Signature(inputs=inputs, outputs=outputs, extra=extra)


def _json_field(value: Any, what: str) -> Any:
    """MLmodel stores schemas as JSON strings inside the YAML."""
    if value is None or isinstance(value, (list, dict)):
        return value
    if not isinstance(value, str):
        raise FormatError(f"{what} is neither JSON text nor a list")
    try:
        return json.loads(value)
    except ValueError as exc:
        raise FormatError(f"{what} is not valid JSON ({str(exc)[:120]})") from None


def _schema(value: Any, what: str) -> tuple[list[TensorSpec], str | None]:
    """Turn a column- or tensor-based schema into specs; return them and the schema kind."""
    entries = _json_field(value, what)
    if entries is None:
        return [], None
    if not isinstance(entries, list):
        raise FormatError(f"{what} is not a list")
    specs: list[TensorSpec] = []
    kind: str | None = None
    for i, entry in enumerate(entries[:10_000]):
        if not isinstance(entry, dict):
            raise FormatError(f"{what}[{i}] is not an object")
        name = str(entry.get("name", i))
        if entry.get("type") == "tensor":
            kind = "tensor"
            spec = entry.get("tensor-spec") if isinstance(entry.get("tensor-spec"), dict) else {}
            shape = [None if d == -1 else d for d in spec.get("shape") or [] if isinstance(d, int)]
            specs.append(TensorSpec(name=name, dtype=str(spec.get("dtype", "unknown")), shape=shape))
        else:
            kind = kind or "column"
            specs.append(TensorSpec(name=name, dtype=_column_type(entry, 0), shape=[]))
    return specs, kind


def _column_type(entry: Any, depth: int) -> str:
    """Name a column type, spelling out arrays and maps (``array<double>``)."""
    if not isinstance(entry, dict) or depth > 8:
        return "unknown"
    kind = str(entry.get("type", "unknown"))
    if kind == "array":
        return f"array<{_column_type(entry.get('items'), depth + 1)}>"
    if kind == "map":
        return f"map<{_column_type(entry.get('values'), depth + 1)}>"
    return kind


def data_paths(doc: dict[str, Any]) -> list[str]:
    """List the model data paths the flavors reference (relative, inside the model directory)."""
    flavors = doc.get("flavors") if isinstance(doc.get("flavors"), dict) else {}
    out: list[str] = []
    for flavor in flavors.values():
        if not isinstance(flavor, dict):
            continue
        for key in DATA_KEYS:
            value = flavor.get(key)
            if isinstance(value, str) and value and _inside(value) and value.rstrip("/") not in out:
                out.append(value.rstrip("/"))
    return out


def env_files(doc: dict[str, Any]) -> list[str]:
    """List the environment files MLmodel's python_function flavor names, plus requirements.txt."""
    pyfunc = (doc.get("flavors") or {}).get("python_function") if isinstance(doc.get("flavors"), dict) else None
    env = pyfunc.get("env") if isinstance(pyfunc, dict) else None
    names = list(env.values()) if isinstance(env, dict) else [env] if isinstance(env, str) else []
    out = [n for n in names if isinstance(n, str) and _inside(n)]
    return out + [n for n in ENV_FILES if n not in out]


def _inside(relpath: str) -> bool:
    parts = PurePosixPath(relpath).parts
    return bool(parts) and not PurePosixPath(relpath).is_absolute() and ".." not in parts


def _present(relpath: str, names: Collection[str]) -> bool:
    prefix = relpath.rstrip("/") + "/"
    return relpath in names or any(n.startswith(prefix) for n in names)


def mlflow_requirements(root: Path, names: Collection[str]) -> DirectoryStatus:
    """Say what an MLflow model directory still lacks: MLmodel, then the data paths it names."""
    if MLMODEL not in names:
        return DirectoryStatus(complete=False, missing=[MLMODEL], expected_later=list(ENV_FILES))
    try:
        mlmodel = contained(root, MLMODEL)
        if mlmodel is None:
            raise FormatError("MLmodel links outside the model directory")
        doc = load_mlmodel(mlmodel)
    except FormatError:
        # A half-written MLmodel: settle detection waits for it; the reader reports it if it stays broken.
        return DirectoryStatus(complete=True, expected_later=[n for n in ENV_FILES if n not in names])
    missing = [p for p in data_paths(doc) if not _present(p, names)]
    later = [n for n in env_files(doc) if n not in names]
    return DirectoryStatus(complete=not missing, missing=missing, expected_later=later)


def read_environment(root: Path, info: FormatInfo) -> None:
    """Record requirements from requirements.txt, conda.yaml and python_env.yaml beside MLmodel."""
    meta = info.metadata
    req = contained(root, "requirements.txt")
    if req is not None and req.is_file():
        try:
            meta["requirements"] = parse_requirements(read_capped(req, MAX_TEXT_FILE, "requirements.txt"))
        except FormatError as exc:
            info.format_error(str(exc))
    for name, key in (("python_env.yaml", "python_env"), ("conda.yaml", "conda")):
        path = contained(root, name)
        if path is None or not path.is_file():
            continue
        try:
            doc = load_yaml(read_capped(path, MAX_YAML_FILE, name), name)
        except FormatError as exc:
            info.format_error(str(exc))
            continue
        if isinstance(doc, dict):
            meta[key] = bounded(doc)
            if key == "python_env" and isinstance(doc.get("python"), (str, int, float)):
                meta.setdefault("python_version", str(doc["python"]))
            if "requirements" not in meta:
                deps = _env_dependencies(doc)
                if deps:
                    meta["requirements"] = deps


def _env_dependencies(doc: dict[str, Any]) -> list[str]:
    deps: list[str] = []
    for item in doc.get("dependencies") or []:
        if isinstance(item, str):
            deps.append(item)
        elif isinstance(item, dict) and isinstance(item.get("pip"), list):
            deps.extend(str(p) for p in item["pip"] if isinstance(p, str))
    return [d[:256] for d in deps[:MAX_REQUIREMENTS]]


def parse_requirements(data: bytes) -> list[str]:
    """Return the requirement lines of a requirements.txt (comments and blanks dropped)."""
    out: list[str] = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line[:256])
        if len(out) >= MAX_REQUIREMENTS:
            break
    return out
