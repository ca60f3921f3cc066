"""The daemon's configuration: TOML in, validated pydantic settings out.

Precedence: ``--config PATH``, else ``$REGD_CONFIG``, else ``~/.config/regd/regd.toml``, else the
built-in defaults, which are exactly the values documented in ``config/regd.toml``.
``$REGD_SOCKET`` overrides the socket for daemon and clients alike.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regd import paths
from regd.domain import Role, Stage, WatchSpec

DEFAULT_PATTERNS = [
    "*.safetensors", "*.onnx", "*.pt", "*.pth", "*.ckpt", "*.bin", "*.gguf",
    "*.keras", "*.h5", "*.pkl", "*.joblib", "*.skops",
]  # fmt: skip

Requirement = Literal["env_lock", "signature", "code_sha", "data_version", "description", "safe_format", "staged"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StoreConfig(_Section):
    mode: Literal["copy", "reference"] = "copy"
    """``copy`` stores the exact bytes; ``reference`` records the digest and leaves the bytes in place."""


class ApiConfig(_Section):
    max_message_bytes: int = Field(default=1_048_576, ge=1024, le=256 * 1_048_576)
    """Longest accepted JSON-RPC message; a longer one is answered -32600 and its connection closed."""
    group: str = ""
    """Shared mode when set: the socket becomes 0660 and owned by this group."""
    roles: dict[str, Role] = Field(default_factory=dict)
    """User name -> role in shared mode. The daemon's owner is always admin."""
    default_role: Role = Role.VIEWER
    """The role of a group member not listed in ``roles``."""
    idle_timeout_s: float = Field(default=300.0, gt=0)
    """A connection that sends nothing for this long is closed (subscribers are exempt)."""


class WatchConfig(_Section):
    path: str
    patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_PATTERNS))
    recursive: bool = True
    settle_ms: int = Field(default=500, ge=0, le=3_600_000)
    dir_settle_ms: int = Field(default=10_000, ge=0, le=3_600_000)
    ignore: list[str] = Field(default_factory=list)

    def spec(self) -> WatchSpec:
        return WatchSpec(
            path=str(paths.expand(self.path)),
            patterns=self.patterns,
            recursive=self.recursive,
            settle_ms=self.settle_ms,
            dir_settle_ms=self.dir_settle_ms,
            ignore=self.ignore,
            source="config",
        )


class Webhook(_Section):
    url: str
    secret: str = ""
    """HMAC-SHA256 key for the ``X-Regd-Signature`` header; empty sends unsigned."""
    timeout_s: float = Field(default=5.0, gt=0, le=60)
    retries: int = Field(default=3, ge=0, le=10)


class StagePolicy(_Section):
    min: dict[str, float] = Field(default_factory=dict)
    max: dict[str, float] = Field(default_factory=dict)
    max_regression: dict[str, float] = Field(default_factory=dict)
    approvals: int = Field(default=0, ge=0, le=100)
    require: list[Requirement] = Field(default_factory=list)
    on_change: str | None = None
    hook_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    webhooks: list[Webhook] = Field(default_factory=list)
    lower_is_better: list[str] = Field(default_factory=list)
    """Metrics where smaller is better (loss, latency): regressions and diffs read them that way."""


PolicyTable = dict[str, dict[Annotated[Stage, Field()], StagePolicy]]


class Config(_Section):
    data_dir: Path = Field(default_factory=paths.default_data_dir)
    socket: Path | None = None
    deploy_dir: Path | None = None
    catalog: str = "sqlite"
    """``sqlite`` (``<data_dir>/registry.db``), ``sqlite:///path``, or ``postgresql://user@host:5432/db`` (team scale)."""
    objects: str = "local"
    """``local`` (``<data_dir>/objects``) or ``s3://bucket/prefix`` (team scale; endpoint and keys from the AWS environment)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    store: StoreConfig = Field(default_factory=StoreConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    watch: list[WatchConfig] = Field(default_factory=list)
    policy: PolicyTable = Field(default_factory=dict)
    source: Path | None = Field(default=None, exclude=True)
    """The file this config was read from (None for the built-in defaults)."""

    @field_validator("data_dir", "socket", "deploy_dir", mode="before")
    @classmethod
    def _expand(cls, v: Any) -> Any:
        return paths.expand(v) if isinstance(v, (str, os.PathLike)) and str(v) else v

    @field_validator("catalog")
    @classmethod
    def _catalog_url(cls, v: str) -> str:
        return check_catalog_url(v)

    @field_validator("objects")
    @classmethod
    def _objects_url(cls, v: str) -> str:
        return check_objects_url(v)

    @field_validator("policy")
    @classmethod
    def _no_policy_for_none(cls, v: PolicyTable) -> PolicyTable:
        for glob, stages in v.items():
            if Stage.NONE in stages or Stage.ARCHIVED in stages:
                raise ValueError(f"policy {glob!r}: guards apply to staging and production only")
        return v

    @property
    def socket_path(self) -> Path:
        env = os.environ.get("REGD_SOCKET")
        if env:
            return paths.expand(env)
        return self.socket or paths.default_socket(self.data_dir)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "registry.db"


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_catalog_url(url: str) -> str:
    """``url`` if it names a catalog regd can open, else ValueError saying what would."""
    expected = "expected 'sqlite', 'sqlite:///path/registry.db' or 'postgresql://user@host:5432/dbname'"
    if url in ("sqlite", "") or (url.startswith("sqlite:///") and len(url) > len("sqlite:///")):
        return url or "sqlite"
    if url.startswith(("postgresql://", "postgres://")):
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"{url!r} is not a valid PostgreSQL URL ({exc}); {expected}") from None
        if any(c.isspace() for c in url):
            raise ValueError(f"{url!r} contains white space; {expected}")
        if parts.fragment:
            raise ValueError(f"{url!r} has a '#' part, which PostgreSQL URLs do not take; {expected}")
        return url
    raise ValueError(f"{url!r} is not a catalog; {expected}")


def check_objects_url(url: str) -> str:
    """``url`` (normalised) if it names a blob store regd can open, else ValueError saying what would."""
    expected = "expected 'local' or 's3://bucket/prefix'"
    if url in ("local", ""):
        return "local"
    if not url.startswith("s3://"):
        raise ValueError(f"{url!r} is not an object store; {expected}")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{url!r}: {bucket!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.' or '-'); {expected}"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ValueError(f"{url!r}: the prefix {prefix!r} has an empty, '.' or '..' part; {expected}")
    if any(c.isspace() or c in "?#\\" for c in prefix):
        raise ValueError(f"{url!r}: the prefix holds white space, '?', '#' or a backslash; {expected}")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


class ConfigError(Exception):
    """The config file cannot be used; the message names the file and the line at fault."""


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate the config in force (see the module docstring for precedence)."""
    path = paths.config_file(explicit)
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from exc
    return parse_config(text, path)


def parse_config(text: str, path: Path | None = None) -> Config:
    """Validate config text; errors carry the file, the line and what is wrong."""
    where = str(path) if path else "<config>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            line = _line_of(loc, text)
            at = f":{line}" if line else ""
            problems.append(f"{where}{at}: {'.'.join(loc) or '(top level)'}: {err['msg']}")
        raise ConfigError("\n".join(problems)) from exc
    config.source = path
    return config


def _line_of(loc: list[str], text: str) -> int | None:
    """Find the line of the TOML key an error location points at (best effort, for humans)."""
    keys = [k for k in loc if not k.isdigit()]
    lines = text.splitlines()
    # the deepest key we can find after the line of its enclosing table header
    start = 0
    for depth, key in enumerate(keys):
        pattern = re.compile(rf'^\s*(\[+\s*)?("?{re.escape(key)}"?|.*\.\s*"?{re.escape(key)}"?)\s*[\]=.]')
        for i in range(start, len(lines)):
            if pattern.search(lines[i]) or (depth == len(keys) - 1 and re.search(rf"\b{re.escape(key)}\b", lines[i])):
                start = i
                break
        else:
            return start + 1 if depth else None
    return start + 1


def default_config_text() -> str:
    """The shipped, fully commented default config (``regd/data/regd.toml`` in the wheel)."""
    from importlib import resources

    try:
        return (resources.files("regd") / "data" / "regd.toml").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError):
        # running from a source checkout: the file lives in config/
        return (Path(__file__).resolve().parents[2] / "config" / "regd.toml").read_text(encoding="utf-8")
