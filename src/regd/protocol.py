"""The socket API's contract: every method's params and result as pydantic models.

``METHODS`` is the single table the server dispatches from, the role checks read, the CLI's docs
test walks, and ``rpc.discover`` turns into an OpenRPC document.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from regd.diffmodel import Diff
from regd.domain import (
    NAME_PATTERN,
    AuditEvent,
    GuardResult,
    IngestQueue,
    Model,
    Role,
    Stage,
    Version,
    VersionSummary,
    WatchState,
)

JSONRPC = "2.0"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A model or alias name: ``[A-Za-z0-9][A-Za-z0-9._-]{0,127}``."""
VersionRefStr = Annotated[str, StringConstraints(min_length=1, max_length=140)]
"""``1.2.0``, ``latest``, a stage name, or ``@alias``."""
Reason = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
"""Why a change is made; required for every stage change, at most 4 KB."""
Cursor = Annotated[str, StringConstraints(max_length=512)]
Limit = Annotated[int, Field(ge=1, le=1000)]


def _no_nul(path: str) -> str:
    if "\x00" in path:
        raise ValueError("a path cannot contain a NUL byte")
    return path


PathStr = Annotated[str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_nul)]
"""A path on the daemon's machine: 1-4096 characters, no NUL byte (no file name can hold one)."""
MAX_GC_DAYS = 36_500

T = TypeVar("T")


class Params(BaseModel):
    """Base of every method's params: unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Page(Result, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next."""

    items: list[T]
    next_cursor: str | None = None


class NoParams(Params):
    pass


# ----------------------------------------------------------------------------- daemon & rpc


class Counts(Result):
    models: int
    versions: int
    blobs_bytes: int | None = None


class HookFailure(Result):
    at: datetime
    model: str
    kind: str
    detail: str


class DaemonStatus(Result):
    version: str
    pid: int
    uptime_s: float
    data_dir: str
    socket: str
    catalog: str
    objects: str
    store_mode: str
    config: str | None
    watches: list[WatchState]
    counts: Counts
    ingest: IngestQueue
    hook_failures: list[HookFailure] = Field(default_factory=list)
    subscribers: int = 0
    """Connections following ``events.subscribe`` now (TUIs, scripts)."""
    actor: str
    role: Role


class ReloadResult(Result):
    source: str
    """The config file now in force (or ``built-in defaults``)."""


# ----------------------------------------------------------------------------- watches


class WatchAddParams(Params):
    path: PathStr
    patterns: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=256
    )
    recursive: bool | None = None
    settle_ms: int | None = Field(default=None, ge=0, le=3_600_000)
    dir_settle_ms: int | None = Field(default=None, ge=0, le=3_600_000)
    ignore: list[Annotated[str, StringConstraints(min_length=1, max_length=256)]] | None = Field(
        default=None, max_length=256
    )


class WatchRemoveParams(Params):
    path: PathStr


class WatchList(Result):
    items: list[WatchState]


# ----------------------------------------------------------------------------- models


class ModelsListParams(Params):
    query: Annotated[str, StringConstraints(max_length=256)] | None = None
    """Substring of the name, or a glob (``fraud*``)."""
    stage: Stage | None = None
    """Only models with a version in this stage."""
    tag: Annotated[str, StringConstraints(pattern=r"^[^=]{1,128}=.{0,1024}$")] | None = None
    """``key=value``: only models with a version carrying this tag."""
    include_deprecated: bool = False
    limit: Limit = 100
    cursor: Cursor | None = None


class ModelParams(Params):
    name: Name


class DeprecateParams(Params):
    name: Name
    reason: Reason


# ----------------------------------------------------------------------------- versions


class VersionsListParams(Params):
    name: Name
    stage: Stage | None = None
    order: Literal["newest", "oldest"] = "newest"
    limit: Limit = 100
    cursor: Cursor | None = None


class VersionParams(Params):
    name: Name
    version: VersionRefStr = "latest"


class VersionGetParams(VersionParams):
    tensors: bool = False
    """Include the per-tensor table (name, dtype, shape, fingerprint); large models have thousands."""
    fetch: bool = False
    """Make the artifact's bytes present on this host first (a team store downloads them into its
    cache, checked) so that ``artifact.stored_path`` can be loaded at once: what ``regd path`` asks."""


class SearchParams(Params):
    filter: Annotated[str, StringConstraints(max_length=4096)] = ""
    order_by: Annotated[str, StringConstraints(max_length=256)] | None = None
    limit: Limit = 100
    cursor: Cursor | None = None


class RegisterMetadata(Params):
    """The sidecar's fields, given by the caller; they win over sidecar files."""

    name: Name | None = None
    version: Annotated[str, StringConstraints(pattern=r"^\d{1,9}\.\d{1,9}\.\d{1,9}$")] | None = None
    description: Annotated[str, StringConstraints(max_length=65536)] | None = None
    metrics: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], float] | None = Field(
        default=None, max_length=1024
    )
    params: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], Any] | None = Field(
        default=None, max_length=1024
    )
    tags: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=256
    )
    data_version: Annotated[str, StringConstraints(max_length=256)] | None = None
    code_sha: Annotated[str, StringConstraints(max_length=128)] | None = None
    parent: Annotated[str, StringConstraints(max_length=300)] | None = None
    env_lock: Annotated[str, StringConstraints(max_length=4096), AfterValidator(_no_nul)] | None = None
    created_by: Annotated[str, StringConstraints(max_length=128)] | None = None

    @field_validator("metrics")
    @classmethod
    def _finite(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        import math

        for key, value in (v or {}).items():
            if not math.isfinite(value):
                raise ValueError(f"metric {key!r} must be a finite number")
        return v


class RegisterParams(Params):
    path: PathStr
    name: Name | None = None
    metadata: RegisterMetadata | None = None
    progress: bool = False
    """Send ``progress`` notifications ``{id, done, total}`` on this connection while hashing."""


class RegisterResult(Result):
    version: Version
    created: bool
    """False when these bytes were already a version of the model (``version`` says which)."""


class TagParams(Params):
    name: Name
    version: VersionRefStr
    set: dict[Annotated[str, StringConstraints(min_length=1, max_length=128)], Annotated[str, StringConstraints(max_length=1024)]] | None = Field(
        default=None, max_length=256
    )
    remove: list[Annotated[str, StringConstraints(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=256
    )


class VerifyParams(Params):
    name: Name | None = None
    version: VersionRefStr | None = None
    repair: bool = False
    """Re-store a missing or corrupt blob from its original file when that still has the same digest."""


class VerifyItem(Result):
    model: str
    version: str
    digest: str
    path: str
    status: Literal["ok", "missing", "corrupt", "changed", "pruned", "repaired"]
    detail: str = ""


class VerifyResult(Result):
    ok: bool
    checked: int
    items: list[VerifyItem]


# ----------------------------------------------------------------------------- aliases


class AliasSetParams(Params):
    name: Name
    alias: Name
    version: VersionRefStr
    reason: Annotated[str, StringConstraints(max_length=4096)] | None = None


class AliasDeleteParams(Params):
    name: Name
    alias: Name
    reason: Annotated[str, StringConstraints(max_length=4096)] | None = None


class ModelAliases(Result):
    name: str
    aliases: dict[str, str]


# ----------------------------------------------------------------------------- lifecycle


class StageParams(Params):
    name: Name
    version: VersionRefStr
    stage: Stage


class PromoteParams(StageParams):
    reason: Reason
    force: bool = False


class CheckResult(Result):
    name: str
    version: str
    stage: Stage
    passed: bool
    checks: list[GuardResult]


class PromoteResult(Result):
    version: Version
    from_: Stage = Field(alias="from")
    to: Stage
    demoted: str | None = None
    """The version that left production to make room, now archived."""
    checks: list[GuardResult]
    forced: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class ApproveParams(Params):
    name: Name
    version: VersionRefStr
    note: Annotated[str, StringConstraints(max_length=4096)] | None = None


class Approval(Result):
    approver: str
    at: datetime
    note: str | None = None


class ApprovalsResult(Result):
    name: str
    version: str
    approvals: list[Approval]


class ArchiveParams(Params):
    name: Name
    version: VersionRefStr
    reason: Reason


class RollbackParams(Params):
    name: Name
    to: VersionRefStr | None = None
    reason: Reason


class RollbackResult(Result):
    restored: Version
    archived: Version | None


class HistoryEntry(Result):
    at: datetime
    kind: Literal["stage", "alias"]
    version: str | None = None
    """For a stage change: the version that moved."""
    alias: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    action: str
    actor: str
    reason: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class HistoryResult(Result):
    name: str
    items: list[HistoryEntry]


# ----------------------------------------------------------------------------- audit, events, gc


class AuditListParams(Params):
    name: Name | None = None
    version: VersionRefStr | None = None
    actor: Annotated[str, StringConstraints(max_length=128)] | None = None
    action: Annotated[str, StringConstraints(max_length=64)] | None = None
    since: datetime | None = None
    limit: Limit = 100
    cursor: Cursor | None = None


class AuditVerifyResult(Result):
    ok: bool
    rows: int
    first_broken: int | None = None
    detail: str = ""


class SubscribeParams(Params):
    topics: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] | None = Field(default=None, max_length=64)
    """Topic prefixes (``version``, ``version.stage``, ``alias`` ...); none means every event."""


class SubscribeResult(Result):
    subscribed: list[str]


class GcParams(Params):
    keep_last: int | None = Field(default=None, ge=0, le=1_000_000)
    """Per model, never prune the newest N versions."""
    older_than_days: float | None = Field(default=None, ge=0, le=MAX_GC_DAYS, allow_inf_nan=False)
    """Only prune versions older than this (at most 36,500 days: a century)."""


class GcItem(Result):
    digest: str
    size: int
    reason: str
    """``orphan`` (no version refers to it) or ``pruned name:version``."""


class GcResult(Result):
    dry_run: bool
    blobs: list[GcItem]
    bytes: int
    versions: list[str] = Field(default_factory=list)
    """``name:version`` of versions whose bytes are (or would be) pruned."""


# ----------------------------------------------------------------------------- diff & lineage


class VersionRef(Params):
    name: Name
    version: VersionRefStr = "latest"


class DiffParams(Params):
    a: VersionRef
    b: VersionRef | None = None
    b_path: PathStr | None = None
    """Diff against a file or model directory on disk that is not registered."""


class LineageParams(VersionParams):
    pass


class LineageNode(Result):
    id: str
    kind: Literal["version", "dataset", "commit", "env", "deployment", "alias"]
    label: str
    data: dict[str, Any] = Field(default_factory=dict)


class LineageEdge(Result):
    source: str
    target: str
    kind: str


class LineageResult(Result):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


# ----------------------------------------------------------------------------- the method table


@dataclass(frozen=True)
class MethodSpec:
    """One RPC method: its params and result models, the role it needs, and what it does."""

    name: str
    params: type[BaseModel]
    result: Any
    role: Role
    summary: str
    mutates: bool = False


def _m(name: str, params: type[BaseModel], result: Any, role: Role, summary: str, mutates: bool = False) -> MethodSpec:
    return MethodSpec(name, params, result, role, summary, mutates)


V, C, A, ADM = Role.VIEWER, Role.CONTRIBUTOR, Role.APPROVER, Role.ADMIN

METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        _m("daemon.status", NoParams, DaemonStatus, V, "Daemon facts: version, pid, uptime, paths, watches, counts, ingest queue."),
        _m("daemon.reload", NoParams, ReloadResult, ADM, "Re-read the config; a broken one is refused and the old one stays.", True),
        _m("rpc.discover", NoParams, dict, V, "This API as an OpenRPC document."),
        _m("watch.list", NoParams, WatchList, V, "The watched folders."),
        _m("watch.add", WatchAddParams, WatchList, C, "Watch a folder (kept across restarts).", True),
        _m("watch.remove", WatchRemoveParams, WatchList, C, "Stop watching a folder added at runtime.", True),
        _m("models.list", ModelsListParams, Page[Model], V, "Models, by name, with their production and latest versions."),
        _m("models.get", ModelParams, Model, V, "One model with its production version, aliases and counts."),
        _m("models.deprecate", DeprecateParams, Model, ADM, "Mark a model deprecated (hidden from lists by default).", True),
        _m("models.rollback", RollbackParams, RollbackResult, A, "Put back the previous production version.", True),
        _m("models.history", ModelParams, HistoryResult, V, "The stage and alias timeline of a model, newest first."),
        _m("versions.list", VersionsListParams, Page[VersionSummary], V, "Versions of a model."),
        _m("versions.get", VersionGetParams, Version, V, "Everything about one version."),
        _m("versions.search", SearchParams, Page[VersionSummary], V, "Versions matching a filter expression."),
        _m("versions.register", RegisterParams, RegisterResult, C, "Register a file or model directory.", True),
        _m("versions.tag", TagParams, Version, C, "Set or remove tags on a version.", True),
        _m("versions.diff", DiffParams, Diff, V, "What changed between two versions (or a version and a path)."),
        _m("versions.check", StageParams, CheckResult, V, "Run the guards for a promotion without changing anything."),
        _m("versions.promote", PromoteParams, PromoteResult, C, "Move a version to staging or production.", True),
        _m("versions.approve", ApproveParams, ApprovalsResult, A, "Approve a version for promotion.", True),
        _m("versions.archive", ArchiveParams, Version, C, "Archive a version.", True),
        _m("versions.verify", VerifyParams, VerifyResult, V, "Rehash stored artifacts: ok, missing or corrupt (repair: re-store from the original).", True),
        _m("aliases.set", AliasSetParams, ModelAliases, C, "Point an alias at a version (kept in the alias history).", True),
        _m("aliases.delete", AliasDeleteParams, ModelAliases, C, "Remove an alias.", True),
        _m("audit.list", AuditListParams, Page[AuditEvent], V, "Audit events, newest first."),
        _m("audit.verify", NoParams, AuditVerifyResult, V, "Check the audit log's hash chain."),
        _m("lineage.get", LineageParams, LineageResult, V, "Where a version came from and where it went."),
        _m("events.subscribe", SubscribeParams, SubscribeResult, V, "Receive change events as notifications on this connection."),
        _m("gc.plan", GcParams, GcResult, V, "What garbage collection would free."),
        _m("gc.run", GcParams, GcResult, ADM, "Free unreferenced and pruned blobs.", True),
    ]
}


def openrpc_document(version: str, implemented: set[str] | None = None) -> dict[str, Any]:
    """Build the OpenRPC document of the API from the models above."""
    from pydantic import TypeAdapter

    from regd.errors import Conflict, GuardFailed, InvalidTransition, NotFound, PermissionDenied

    ref = "#/components/schemas/{model}"
    shared: dict[str, Any] = {}
    methods = []
    for spec in METHODS.values():
        if implemented is not None and spec.name not in implemented:
            continue
        schema = spec.params.model_json_schema(ref_template=ref)
        shared.update(schema.pop("$defs", {}))
        params = [
            {"name": key, "required": key in schema.get("required", []), "schema": prop}
            | ({"description": prop["description"]} if "description" in prop else {})
            for key, prop in schema.get("properties", {}).items()
        ]
        result_schema = TypeAdapter(spec.result).json_schema(ref_template=ref)
        shared.update(result_schema.pop("$defs", {}))
        methods.append(
            {
                "name": spec.name,
                "summary": spec.summary,
                "paramStructure": "either",
                "params": params,
                "result": {"name": "result", "schema": result_schema},
                "x-role": spec.role.value,
            }
        )
    errors = {
        str(cls.code): {"code": cls.code, "message": (cls.__doc__ or cls.__name__).strip()}
        for cls in (NotFound, Conflict, GuardFailed, PermissionDenied, InvalidTransition)
    }
    return {
        "openrpc": "1.3.2",
        "info": {
            "title": "regd",
            "version": version,
            "description": "The regd model registry's socket API (JSON-RPC 2.0, one message per line).",
        },
        "methods": methods,
        "components": {"schemas": shared, "errors": errors},
    }
