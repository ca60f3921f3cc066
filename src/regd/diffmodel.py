"""What ``versions.diff`` answers: two versions compared section by section, a one-line verdict first.

These models sit beside ``domain`` (and import only it) so that the client and regtui can read a
diff back without the daemon's layers. Every section says whether it could be compared at all
(``available`` / ``note``): a diff never guesses what it was not told.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from regd.domain import FileEntry, Stage, TensorSpec

LIST_CAP = 1000
"""Lists of names stop here (counts stay exact): a rewritten 70B model has thousands of changed tensors."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ValueChange(_Model):
    """One key whose value differs."""

    key: str
    a: Any = None
    b: Any = None


class KeyDiff(_Model):
    """Two mappings compared key by key."""

    added: dict[str, Any] = Field(default_factory=dict)
    removed: dict[str, Any] = Field(default_factory=dict)
    changed: list[ValueChange] = Field(default_factory=list)
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


class TextChange(_Model):
    """A free-text field (the description) on both sides."""

    a: str | None = None
    b: str | None = None
    changed: bool = False


class DiffSide(_Model):
    """Which version (or unregistered path) a side of the diff is."""

    model: str
    version: str | None = None
    """None for a path on disk that is not registered."""
    path: str | None = None
    """The path diffed (``b_path``), for an unregistered side."""
    stage: Stage | None = None
    digest: str
    format: str
    kind: Literal["file", "directory"] = "file"
    size: int
    created_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.model}:{self.version}" if self.version else (self.path or self.model)


class MetricChange(_Model):
    """One metric on both sides and which way it moved."""

    name: str
    a: float | None = None
    b: float | None = None
    delta: float | None = None
    """``b - a``; None when the metric is on one side only."""
    direction: Literal["higher", "lower"] = "higher"
    """Which way is good: ``lower`` when a production policy of model b lists it in ``lower_is_better``."""
    verdict: Literal["better", "worse", "same", "added", "removed"]


class MetricsDiff(_Model):
    items: list[MetricChange] = Field(default_factory=list)
    better: int = 0
    worse: int = 0


class SpecChange(_Model):
    """An input or output present on both sides whose shape or dtype differs."""

    name: str
    a: TensorSpec
    b: TensorSpec
    reshaped: bool = False
    retyped: bool = False
    breaking: bool
    why: str
    """The rule that decided ``breaking`` (``rank 2 -> 3``, ``dim 1: 4 -> 8``, ``FLOAT -> DOUBLE`` ...)."""


class SpecsDiff(_Model):
    """Inputs (or outputs) compared by name."""

    added: list[TensorSpec] = Field(default_factory=list)
    removed: list[TensorSpec] = Field(default_factory=list)
    reshaped: list[SpecChange] = Field(default_factory=list)
    retyped: list[SpecChange] = Field(default_factory=list)
    """A spec both reshaped and retyped is in both lists."""
    unchanged: int = 0


class SignatureDiff(_Model):
    """The contract callers rely on: inputs and outputs, and the verdict on them."""

    verdict: Literal["compatible", "breaking", "unknown"]
    """``unknown`` when a side records no signature at all (nothing to compare, nothing guessed)."""
    identical: bool = False
    reasons: list[str] = Field(default_factory=list)
    """Every change that makes the diff breaking, one line each."""
    inputs: SpecsDiff = Field(default_factory=SpecsDiff)
    outputs: SpecsDiff = Field(default_factory=SpecsDiff)
    extra: KeyDiff = Field(default_factory=KeyDiff)
    """Format facts that are part of the contract (opset, flavors, architecture)."""
    note: str | None = None


class TensorTotals(_Model):
    """One side's weights: how many tensors, parameters and bytes."""

    tensors: int = 0
    params: int = 0
    """Elements of every tensor whose shape is fully known."""
    bytes: int = 0
    fingerprinted: int = 0
    """Tensors with a stored fingerprint."""


class TensorRef(_Model):
    name: str
    dtype: str
    shape: list[int | str | None] = Field(default_factory=list)
    file: str = ""
    params: int | None = None


class TensorChange(_Model):
    """A tensor on both sides whose shape or dtype differs."""

    name: str
    a: TensorRef
    b: TensorRef


class TensorCounts(_Model):
    """Exact counts (the lists beside them stop at ``LIST_CAP``)."""

    added: int = 0
    removed: int = 0
    reshaped: int = 0
    retyped: int = 0
    changed: int = 0
    """Same name, dtype and shape, different bytes."""
    unchanged: int = 0
    unknown: int = 0
    """Same name, dtype and shape, but a fingerprint is missing on a side: not known either way."""


class TensorsDiff(_Model):
    """Weights compared from the stored per-tensor fingerprints (the bytes are not reread)."""

    available: bool = False
    """False when a side has no tensor table (an unknown format, a pickle, a SavedModel)."""
    a: TensorTotals = Field(default_factory=TensorTotals)
    b: TensorTotals = Field(default_factory=TensorTotals)
    counts: TensorCounts = Field(default_factory=TensorCounts)
    added: list[TensorRef] = Field(default_factory=list)
    removed: list[TensorRef] = Field(default_factory=list)
    reshaped: list[TensorChange] = Field(default_factory=list)
    retyped: list[TensorChange] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    truncated: bool = False
    touched: int = 0
    """Tensors of b that are not byte-identical to a's: changed, reshaped, retyped or added."""
    touched_params: int = 0
    touched_share: float | None = None
    """``touched_params`` over b's parameters; None when contents are unknown or b has none."""
    summary: str = ""
    """``fine-tune touched 2 of 198 tensors (1.3% of parameters)``."""
    note: str | None = None
    """Why contents could not be compared (missing fingerprints), when they could not."""


class FileChange(_Model):
    path: str
    """For two single-file versions whose names differ: ``a-name -> b-name``."""
    a_digest: str
    b_digest: str
    a_size: int
    b_size: int


class DescriptorDiff(_Model):
    """A model directory's descriptor (``config.json``, ``MLmodel`` ...) compared key by key (dotted keys)."""

    path: str
    keys: KeyDiff = Field(default_factory=KeyDiff)
    note: str | None = None
    """Why it could not be compared (too big, not parseable, bytes gone)."""


class FilesDiff(_Model):
    """The files of two artifacts, by relative path and digest."""

    added: list[FileEntry] = Field(default_factory=list)
    removed: list[FileEntry] = Field(default_factory=list)
    changed: list[FileChange] = Field(default_factory=list)
    unchanged: int = 0
    descriptors: list[DescriptorDiff] = Field(default_factory=list)


class PackageChange(_Model):
    name: str
    a: str
    b: str


class EnvDiff(_Model):
    """Environment locks and the machines the versions were registered on."""

    lock: Literal["same", "different", "missing_a", "missing_b", "missing_both"]
    a_lock: str | None = None
    """``<kind> <digest[:12]>`` of a's lock."""
    b_lock: str | None = None
    added: dict[str, str] = Field(default_factory=dict)
    removed: dict[str, str] = Field(default_factory=dict)
    upgraded: list[PackageChange] = Field(default_factory=list)
    downgraded: list[PackageChange] = Field(default_factory=list)
    changed: list[PackageChange] = Field(default_factory=list)
    """Versions that differ but cannot be ordered (a git URL, a local build)."""
    unchanged: int = 0
    runtime: list[ValueChange] = Field(default_factory=list)
    """Python, OS, machine, CUDA, driver and GPU changes."""
    runtime_note: str | None = None


class Ingredient(_Model):
    """One input of ``run_id``."""

    name: Literal["code_sha", "data_version", "params", "env_lock_digest"]
    same: bool
    a: Any = None
    b: Any = None
    """The values (for ``params`` only whether there are any: the params section has the detail)."""


class LineageDiff(_Model):
    """Where the versions came from: run identity and its ingredients."""

    same_run: bool
    a_run_id: str
    b_run_id: str
    differs: list[str] = Field(default_factory=list)
    """The ingredients that differ, in run_id order: code_sha, data_version, params, env_lock_digest."""
    ingredients: list[Ingredient] = Field(default_factory=list)
    same_commit: bool | None = None
    """None when a side records no commit."""
    same_data: bool | None = None
    """None when a side records no data version."""
    git: list[ValueChange] = Field(default_factory=list)
    """Branch, repository, remote and dirty flag changes."""
    parent: ValueChange | None = None
    note: str | None = None


class WarningsDiff(_Model):
    added: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class Diff(_Model):
    """``versions.diff``: what changed from ``a`` to ``b``."""

    verdict: str
    """One line: ``breaking: 1 input reshaped; fine-tune touched 2 of 198 tensors (1.3% of parameters); accuracy +0.012``."""
    a: DiffSide
    b: DiffSide
    same_bytes: bool
    metrics: MetricsDiff = Field(default_factory=MetricsDiff)
    params: KeyDiff = Field(default_factory=KeyDiff)
    tags: KeyDiff = Field(default_factory=KeyDiff)
    description: TextChange = Field(default_factory=TextChange)
    signature: SignatureDiff
    tensors: TensorsDiff = Field(default_factory=TensorsDiff)
    files: FilesDiff = Field(default_factory=FilesDiff)
    env: EnvDiff
    lineage: LineageDiff
    format_metadata: KeyDiff = Field(default_factory=KeyDiff)
    """The format readers' facts (producer, opset, architecture ...), dotted keys."""
    warnings: WarningsDiff = Field(default_factory=WarningsDiff)
