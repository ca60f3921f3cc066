"""The nouns every layer shares: models, versions, stages, signatures, environments, audit events.

These are pydantic models because they cross the socket; the store builds them from rows, the
API serialises them, the client and the TUI read them back.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticSerializationError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
NAME_RE = re.compile(NAME_PATTERN)
SEMVER_RE = re.compile(r"^(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})\.(0|[1-9]\d{0,8})$")


def json_text(model: BaseModel) -> str:
    """``model`` as compact JSON text, as a reply carries it.

    pydantic serialises it itself (faster than dumping a dict and re-encoding it), except a str that
    is not UTF-8 (a file name's undecodable bytes, kept as lone surrogates): the slow path keeps it,
    and the connection writes it as a JSON escape.
    """
    try:
        return model.model_dump_json()
    except PydanticSerializationError:
        return json.dumps(model.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


def is_valid_name(name: str) -> bool:
    """Tell whether a model, alias or tag name matches DESIGN's name rule."""
    return bool(NAME_RE.match(name))


class Stage(StrEnum):
    """Where a version stands in its model's lifecycle."""

    NONE = "none"
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


STAGE_NAMES = frozenset(s.value for s in Stage)


class Role(StrEnum):
    """What a caller may do, each role including the ones before it."""

    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Model):
    """One input, output or weight tensor as a signature sees it."""

    name: str
    dtype: str
    shape: list[int | str | None] = Field(default_factory=list)
    """Dimensions; a string is a symbolic dim (``batch``), None an unknown one."""


class Signature(_Model):
    """What a model takes and gives, or for a weights file the tensors it holds."""

    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    tensors: list[TensorSpec] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)
    """Format-specific facts (opset, architecture, flavors) that are part of the contract."""

    def is_empty(self) -> bool:
        return not (self.inputs or self.outputs or self.tensors)


class TensorFingerprint(_Model):
    """A stored tensor: where it is and a hash of its bytes, so diffs need not reread them."""

    name: str
    dtype: str
    shape: list[int | str | None] = Field(default_factory=list)
    file: str = ""
    """The file inside a model directory; empty for a single-file version."""
    offset: int | None = None
    nbytes: int | None = None
    fingerprint: str | None = None
    """``xxh3:<hex>`` of the tensor's byte range, when the format exposes one."""

    @property
    def numel(self) -> int | None:
        total = 1
        for dim in self.shape:
            if not isinstance(dim, int):
                return None
            total *= dim
        return total


class FileEntry(_Model):
    """One file of a stored artifact."""

    path: str
    digest: str
    size: int


class Artifact(_Model):
    """The stored bytes of a version."""

    digest: str
    """SHA-256 hex of the file, or of the directory manifest (sorted ``<sha256>  <relpath>`` lines)."""
    size: int
    kind: Literal["file", "directory"] = "file"
    format: str = "unknown"
    stored_path: str
    """What serving code loads (``regd path``): the blob, the hard-linked tree, or the original in reference mode."""
    source_path: str
    store_mode: Literal["copy", "reference"] = "copy"
    files: list[FileEntry] = Field(default_factory=list)


class GitInfo(_Model):
    """The repository holding the artifact when it was registered."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    remote: str | None = None
    repository: str | None = None


class EnvLock(_Model):
    """An environment lock file, stored once by digest and parsed to {package: version}."""

    digest: str
    kind: str
    """Which lock format: ``uv.lock``, ``poetry.lock``, ``requirements.txt`` ..."""
    source: str = ""
    packages: dict[str, str] = Field(default_factory=dict)


class Runtime(_Model):
    """Facts about the machine a version was registered on."""

    python: str | None = None
    os: str | None = None
    machine: str | None = None
    cuda: str | None = None
    driver: str | None = None
    gpus: list[str] = Field(default_factory=list)


class Lineage(_Model):
    """Where a version came from: the run identity and its ingredients."""

    run_id: str
    code_sha: str | None = None
    data_version: str | None = None
    parent: str | None = None
    """``name:version`` of the version this one was derived from."""
    env_lock_digest: str | None = None


class VersionWarning(_Model):
    """Something a user should know before trusting a version."""

    code: str
    """A stable key: ``unsafe_pickle``, ``no_env_lock``, ``sidecar_invalid``, ``format_error``, ``unknown_format`` ..."""
    message: str


class VersionSummary(_Model):
    """A version as lists show it: no files, tensors or environment."""

    model: str
    version: str
    stage: Stage = Stage.NONE
    aliases: list[str] = Field(default_factory=list)
    format: str = "unknown"
    digest: str
    size: int
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    """Warning codes only; ``versions.get`` carries the messages."""
    created_at: datetime
    created_by: str


class Version(_Model):
    """Everything regd knows about one version."""

    model: str
    version: str
    stage: Stage = Stage.NONE
    aliases: list[str] = Field(default_factory=list)
    description: str | None = None
    artifact: Artifact
    signature: Signature | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    env_lock: EnvLock | None = None
    runtime: Runtime | None = None
    git: GitInfo | None = None
    lineage: Lineage
    warnings: list[VersionWarning] = Field(default_factory=list)
    unsafe_imports: list[str] = Field(default_factory=list)
    """Globals a pickle stream would import that are outside the safe allow-list."""
    format_metadata: dict[str, Any] = Field(default_factory=dict)
    tensors: list[TensorFingerprint] | None = None
    """Only when asked for (``versions.get`` with ``tensors=true``): a large model has thousands."""
    rolled_back: bool = False
    created_at: datetime
    created_by: str

    def summary(self) -> VersionSummary:
        return VersionSummary(
            model=self.model,
            version=self.version,
            stage=self.stage,
            aliases=self.aliases,
            format=self.artifact.format,
            digest=self.artifact.digest,
            size=self.artifact.size,
            metrics=self.metrics,
            tags=self.tags,
            warnings=[w.code for w in self.warnings],
            created_at=self.created_at,
            created_by=self.created_by,
        )


class Model(_Model):
    """A named model and where its versions stand."""

    name: str
    description: str | None = None
    created_at: datetime
    updated_at: datetime
    """The last change to the model or any of its versions."""
    deprecated: bool = False
    deprecated_reason: str | None = None
    production: str | None = None
    staging: list[str] = Field(default_factory=list)
    latest: str | None = None
    versions: int = 0
    aliases: dict[str, str] = Field(default_factory=dict)
    latest_metrics: dict[str, float] = Field(default_factory=dict)


class AuditEvent(_Model):
    """One append-only audit row, chained to the one before by SHA-256."""

    id: int
    at: datetime
    actor: str
    action: str
    model: str | None = None
    version: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    reason: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class GuardResult(_Model):
    """One policy check and its outcome."""

    rule: str
    passed: bool
    detail: str = ""


class WatchSpec(_Model):
    """A watched folder and how to treat what lands in it."""

    path: str
    patterns: list[str] = Field(default_factory=list)
    recursive: bool = True
    settle_ms: int = Field(default=500, ge=0, le=3_600_000)
    dir_settle_ms: int = Field(default=10_000, ge=0, le=3_600_000)
    ignore: list[str] = Field(default_factory=list)
    source: Literal["config", "runtime"] = "runtime"


class WatchState(WatchSpec):
    """A watch as ``daemon.status`` reports it."""

    state: str = "watching"
    """``watching``, ``missing`` (the folder does not exist yet) or ``error``."""
    error: str | None = None


class IngestQueue(_Model):
    """What the ingest pipeline is doing now."""

    pending: int = 0
    active: list[str] = Field(default_factory=list)
    bytes_total: int = 0
    bytes_done: int = 0
    rate_bytes_per_s: float = 0.0
    registered: int = 0
    failed: int = 0
    last_error: str | None = None


class Event(_Model):
    """A change published on ``events.subscribe``."""

    topic: str
    at: datetime
    model: str | None = None
    version: str | None = None
    actor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
