"""The catalog interface: what lifecycle, ingest and api may ask of the version database.

Two small seams keep a PostgreSQL catalog an addition rather than a rewrite:

* ``Catalog.read(fn)`` runs ``fn(ReadTx)`` on a reader connection, off the event loop;
* ``Catalog.write(fn)`` runs ``fn(WriteTx)`` as ONE transaction on the single writer, off the
  event loop; ``fn`` is plain synchronous code, so a transaction body can never interleave with
  another coroutine half-way, and an exception anywhere rolls the whole change back.

Every change appends its audit rows inside the same transaction; once it commits, the catalog
hands those rows to its commit listeners (the API's event bus turns them into events).

A catalog several daemons share (PostgreSQL) also learns of the rows *other* daemons commit:
``follow()`` runs for the daemon's life and hands them to the listeners registered with
``remote=True`` (the event bus: a TUI on one host sees registrations made on another). Listeners
that act on a change (deploy pointers, hooks, webhooks) stay local, so an action runs once, on the
daemon that made the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from regd.domain import (
    AuditEvent,
    EnvLock,
    FileEntry,
    GitInfo,
    Model,
    Runtime,
    Signature,
    Stage,
    TensorFingerprint,
    Version,
    VersionSummary,
    VersionWarning,
    WatchSpec,
)

T = TypeVar("T")


@dataclass
class VersionDraft:
    """Everything ingest learned about an artifact, ready to become a version."""

    name: str
    digest: str
    size: int
    kind: str
    format: str
    stored_path: str
    source_path: str
    store_mode: str
    run_id: str
    created_by: str
    files: list[FileEntry] = field(default_factory=list)
    signature: Signature | None = None
    signature_digest: str | None = None
    tensors: list[TensorFingerprint] = field(default_factory=list)
    format_metadata: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    env_lock: EnvLock | None = None
    runtime: Runtime | None = None
    git: GitInfo | None = None
    code_sha: str | None = None
    data_version: str | None = None
    parent: str | None = None
    warnings: list[VersionWarning] = field(default_factory=list)
    unsafe_imports: list[str] = field(default_factory=list)
    pinned_version: str | None = None
    """A version number the sidecar asked for; None lets the daemon assign one."""


@dataclass
class AuditDraft:
    """An audit row before the store numbers and chains it."""

    actor: str
    action: str
    model: str | None = None
    version: str | None = None
    from_: str | None = None
    to: str | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRow:
    """The narrow facts about a version that lifecycle decisions need."""

    id: int
    model_id: int
    model: str
    version: str
    major: int
    minor: int
    patch: int
    stage: Stage
    digest: str
    signature_digest: str | None
    created_by: str
    created_at: datetime
    rolled_back: bool
    pruned: bool

    @property
    def semver(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)


@dataclass(frozen=True)
class StageChange:
    """One row of a model's stage history."""

    id: int
    version_id: int
    version: str
    from_stage: Stage
    to_stage: Stage
    action: str
    actor: str
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class AliasChange:
    """One row of a model's alias history."""

    id: int
    alias: str
    from_version: str | None
    to_version: str | None
    actor: str
    at: datetime
    reason: str | None


@dataclass(frozen=True)
class StoredArtifact:
    """What ``verify`` and ``gc`` need to know about a version's bytes."""

    version_id: int
    model: str
    version: str
    digest: str
    kind: str
    store_mode: str
    stored_path: str
    source_path: str
    files: list[FileEntry]
    pruned: bool


@dataclass(frozen=True)
class SeenEntry:
    """What the watcher last did with a path, so a restart does not rehash what it already handled."""

    path: str
    size: int
    mtime_ns: int
    inode: int
    """For a model directory: its file count (with size = total bytes, mtime = the newest file's)."""
    digest: str | None
    outcome: str
    """``registered``, ``known`` (the bytes were already a version) or ``failed``."""


@dataclass
class PageOf(Generic[T]):
    """One page of results and the cursor of the next (None on the last)."""

    items: list[T]
    next_cursor: str | None = None


class ReadTx(Protocol):
    """Queries over one consistent snapshot."""

    def model(self, name: str) -> Model: ...
    def model_id(self, name: str) -> int: ...
    def aliases_of(self, model_id: int) -> dict[str, str]: ...
    def models(self, *, query: str | None, stage: Stage | None, tag: tuple[str, str] | None,
               include_deprecated: bool, limit: int, cursor: str | None) -> PageOf[Model]: ...  # fmt: skip
    def row(self, name: str, ref: str) -> VersionRow: ...
    def row_by_id(self, version_id: int) -> VersionRow: ...
    def version(self, version_id: int, *, tensors: bool = False) -> Version: ...
    def versions(self, name: str, *, stage: Stage | None, newest_first: bool, limit: int,
                 cursor: str | None) -> PageOf[VersionSummary]: ...  # fmt: skip
    def search(self, filter_text: str, order_by: str | None, limit: int, cursor: str | None) -> PageOf[VersionSummary]: ...
    # the same pages with each summary as its JSON text (what a reply carries: no objects to build)
    def versions_json(self, name: str, *, stage: Stage | None, newest_first: bool, limit: int,
                      cursor: str | None) -> PageOf[str]: ...  # fmt: skip
    def search_json(self, filter_text: str, order_by: str | None, limit: int, cursor: str | None) -> PageOf[str]: ...
    def latest_row(self, model_id: int) -> VersionRow | None: ...
    def row_by_digest(self, model_id: int, digest: str) -> VersionRow | None: ...
    def production_row(self, model_id: int) -> VersionRow | None: ...
    def promotion_subject(self, name: str, ref: str) -> tuple[VersionRow, Version, VersionRow | None]: ...
    def stage_history(self, model_id: int) -> list[StageChange]: ...
    def alias_history(self, model_id: int) -> list[AliasChange]: ...
    def metrics_of(self, version_id: int) -> dict[str, float]: ...
    def was_in_stage(self, version_id: int, stage: Stage) -> bool: ...
    def production_history(self, model_id: int) -> list[tuple[int, str, bool]]: ...
    def approvals(self, version_id: int) -> list[tuple[str, datetime, str | None]]: ...
    def audit(self, *, model: str | None, version: str | None, actor: str | None, action: str | None,
              since: datetime | None, limit: int, cursor: str | None) -> PageOf[AuditEvent]: ...  # fmt: skip
    def audit_chain(self, after_id: int, limit: int) -> list[AuditEvent]: ...
    def artifacts(self, name: str | None, ref: str | None) -> list[StoredArtifact]: ...
    def referenced_digests(self) -> set[str]: ...
    def prunable(self, keep_last: int, older_than_us: int | None) -> list[StoredArtifact]: ...
    def live_trees(self) -> set[str]: ...
    def children(self, name: str, version: str) -> list[VersionRow]: ...
    def counts(self) -> tuple[int, int]: ...
    def watches(self) -> list[WatchSpec]: ...
    def seen_under(self, root: str) -> dict[str, SeenEntry]: ...


class WriteTx(ReadTx, Protocol):
    """The primitives a change is made of; all inside the caller's single transaction."""

    def ensure_model(self, name: str, actor: str) -> int: ...
    def insert_version(self, model_id: int, semver: tuple[int, int, int], draft: VersionDraft) -> int: ...
    def set_tags(self, version_id: int, set_: dict[str, str], remove: list[str]) -> None: ...
    def set_alias(self, model_id: int, alias: str, version_id: int, actor: str, reason: str | None) -> int | None: ...
    def delete_alias(self, model_id: int, alias: str, actor: str, reason: str | None) -> int: ...
    def set_stage(self, row: VersionRow, to: Stage, *, action: str, actor: str, reason: str | None) -> None: ...
    def mark_rolled_back(self, version_id: int, value: bool = True) -> None: ...
    def add_approval(self, version_id: int, approver: str, note: str | None) -> bool: ...
    def deprecate(self, model_id: int, reason: str) -> None: ...
    def mark_pruned(self, version_id: int) -> None: ...
    def add_watch(self, spec: WatchSpec) -> None: ...
    def remove_watch(self, path: str) -> bool: ...
    def mark_seen(self, path: str, size: int, mtime_ns: int, inode: int, digest: str | None, outcome: str,
                  detail: str | None) -> None: ...  # fmt: skip
    def append_audit(self, draft: AuditDraft) -> AuditEvent: ...


CommitListener = Callable[[list[AuditEvent]], None]


class Catalog(Protocol):
    """The version database: SQLite by default, PostgreSQL for teams."""

    url: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def read(self, fn: Callable[[ReadTx], T]) -> T: ...
    async def write(self, fn: Callable[[WriteTx], T]) -> T: ...
    def add_commit_listener(
        self, listener: CommitListener, *, remote: bool = False, local: bool = True, wanted: Callable[[], bool] | None = None
    ) -> None:
        """Call ``listener`` with the audit rows of each change this daemon commits (on the event
        loop, after the commit); with ``remote``, also with those other daemons commit (see ``follow``);
        ``local=False`` (with ``remote``): only those. ``wanted``: whether the listener needs remote
        rows at the moment (when no remote listener does, other daemons' rows are not read at all)."""
        ...

    async def follow(self) -> None:
        """Deliver rows committed by other daemons to the remote listeners until cancelled; a catalog
        only this daemon writes (SQLite: one daemon per data dir) returns at once."""
        ...

    async def want_remote_rows(self) -> None:
        """A remote listener's ``wanted`` has just turned true (a subscriber arrived): from when this
        returns, other daemons' changes reach it. Nothing to do for a catalog nobody else writes."""
        ...
