"""The fields a sidecar, a trainer file or a caller may set on a version, and the rule for each value.

Each rule is a function that returns the clean value or raises ``ValueError`` with a short reason. The
pydantic model applies them all-or-nothing (an explicit caller is told at once); ``salvage`` applies them
field by field and entry by entry, so that one NaN metric in a sidecar costs that metric, not the sidecar.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from regd.domain import NAME_RE, SEMVER_RE
from regd.ingest.trainerfiles import is_finite_number

TAG_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$")
CODE_SHA_RE = re.compile(r"^[0-9a-fA-F]{7,64}$")
MAX_TAG_VALUE = 1024
MAX_KEY = 256
"""Characters in a metric or param name."""
MAX_TEXT = 256
"""Characters in ``data_version`` and ``created_by``."""
MAX_DESCRIPTION = 64 * 1024
"""Characters in a description (the same limit as ``RegisterMetadata`` in the protocol)."""
MAX_PATH = 4096
MAX_PARAMS_BYTES = 64 * 1024
"""Serialized size of all params together (compact JSON, UTF-8)."""
MAX_PARAMS_DEPTH = 16
"""Nesting of a param value; the params object itself is level 1."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(value: Any, limit: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, found {type(value).__name__}")
    if len(value) > limit:
        raise ValueError(f"longer than {limit} characters")
    allowed = "\n\t\r" if multiline else ""
    if any((ord(ch) < 32 and ch not in allowed) or ch == "\x7f" for ch in value):
        raise ValueError("contains control characters")
    return value


def check_name(value: Any) -> str:
    name = _text(value, 128)
    if not NAME_RE.match(name):
        raise ValueError(f"{_short(name)} is not a valid name ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}})")
    return name


def check_version(value: Any) -> str:
    version = _text(value, 64)
    if not SEMVER_RE.match(version):
        raise ValueError(f"{_short(version)} is not a MAJOR.MINOR.PATCH version")
    return version


def check_description(value: Any) -> str:
    return _text(value, MAX_DESCRIPTION, multiline=True)


def check_short_text(value: Any) -> str:
    text = _text(value, MAX_TEXT)
    if not text.strip():
        raise ValueError("is empty")
    return text


def check_code_sha(value: Any) -> str:
    sha = _text(value, 64)
    if not CODE_SHA_RE.match(sha):
        raise ValueError(f"{_short(sha)} is not a commit hash (7 to 64 hex digits)")
    return sha.lower()


def check_parent(value: Any) -> str:
    parent = _text(value, 200)
    name, colon, version = parent.rpartition(":")
    if not colon or not NAME_RE.match(name) or not SEMVER_RE.match(version):
        raise ValueError(f"{_short(parent)} is not name:MAJOR.MINOR.PATCH")
    return parent


def check_path(value: Any) -> str:
    path = _text(value, MAX_PATH)
    if not path.strip():
        raise ValueError("is empty")
    return path


def check_entry_key(value: Any) -> str:
    key = _text(value, MAX_KEY)
    if not key.strip():
        raise ValueError("empty name")
    return key


def check_tag_key(value: Any) -> str:
    key = _text(value, 128)
    if not TAG_KEY_RE.match(key):
        raise ValueError("is not a valid tag name ([A-Za-z0-9][A-Za-z0-9._/-]{0,127})")
    return key


def check_metric(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{_short(value)} is not a number")
    if not is_finite_number(value):
        raise ValueError(f"{_short(value)} is not a finite number")
    return float(value)


def check_tag_value(value: Any) -> str:
    return _text(value, MAX_TAG_VALUE, multiline=True)


def check_param(value: Any) -> Any:
    """Return ``value`` as plain JSON data, or refuse it (too deep, too big, not JSON)."""
    budget = [MAX_PARAMS_BYTES]  # nodes left: each costs at least a byte once serialized
    clean = _json_value(value, depth=2, budget=budget)
    if param_size(clean) > MAX_PARAMS_BYTES:
        raise ValueError(f"larger than {MAX_PARAMS_BYTES // 1024} KiB as JSON")
    return clean


def param_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _json_value(value: Any, depth: int, budget: list[int]) -> Any:
    # The node budget also stops a YAML alias bomb (`a: &a [*b, *b, ...]`) before it is walked in full.
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"larger than {MAX_PARAMS_BYTES // 1024} KiB as JSON")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not is_finite_number(value):
            raise ValueError(f"{value!r} is not valid JSON")
        return value
    if isinstance(value, datetime | date | time):  # YAML reads `2024-05-01` as a date
        return value.isoformat()
    if isinstance(value, dict | list | tuple) and depth > MAX_PARAMS_DEPTH:
        raise ValueError(f"nested deeper than {MAX_PARAMS_DEPTH} levels")
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, str | int | float):
                raise ValueError(f"a key of type {type(key).__name__} is not JSON")
            out[str(key)] = _json_value(item, depth + 1, budget)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(item, depth + 1, budget) for item in value]
    raise ValueError(f"a {type(value).__name__} is not a JSON value")


SCALAR_RULES: dict[str, Callable[[Any], str]] = {
    "name": check_name,
    "version": check_version,
    "description": check_description,
    "data_version": check_short_text,
    "code_sha": check_code_sha,
    "parent": check_parent,
    "env_lock": check_path,
    "created_by": check_short_text,
}
ENTRY_RULES: dict[str, tuple[str, Callable[[Any], str], Callable[[Any], Any]]] = {
    # field: (what one entry is called in messages, key rule, value rule)
    "metrics": ("metric", check_entry_key, check_metric),
    "params": ("param", check_entry_key, check_param),
    "tags": ("tag", check_tag_key, check_tag_value),
}


class SidecarFields(BaseModel):
    """What metadata sources may say about a version; every field optional."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    version: str | None = None
    """A pinned ``MAJOR.MINOR.PATCH``; unset, the daemon assigns one."""
    description: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    data_version: str | None = None
    code_sha: str | None = None
    parent: str | None = None
    """``name:version`` of the version this one was derived from."""
    env_lock: str | None = None
    """Path of the environment lock; ``load_metadata`` makes it absolute (from the sidecar's directory)."""
    created_by: str | None = None

    @field_validator(*SCALAR_RULES, mode="before")
    @classmethod
    def _scalar(cls, value: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None
        return None if value is None else SCALAR_RULES[info.field_name](value)

    @field_validator(*ENTRY_RULES, mode="before")
    @classmethod
    def _entries(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ValueError(f"expected an object, found {type(value).__name__}")
        assert info.field_name is not None
        what, key_rule, value_rule = ENTRY_RULES[info.field_name]
        clean: dict[str, Any] = {}
        for key, item in value.items():
            try:
                clean[key_rule(key)] = value_rule(item)
            except ValueError as exc:
                raise ValueError(f"{what} {_short(key)}: {exc}") from None
        if info.field_name == "params" and param_size(clean) > MAX_PARAMS_BYTES:
            raise ValueError(f"params are larger than {MAX_PARAMS_BYTES // 1024} KiB as JSON")
        return clean


def salvage(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Keep every field and entry of ``raw`` that passes its rule; describe each one that does not."""
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for field, value in raw.items():
        if value is None:
            continue
        if field in SCALAR_RULES:
            try:
                clean[field] = SCALAR_RULES[field](value)
            except ValueError as exc:
                problems.append(f"{field}: {exc}")
        elif field in ENTRY_RULES:
            if not isinstance(value, Mapping):
                problems.append(f"{field}: expected an object, found {type(value).__name__}")
                continue
            what, key_rule, value_rule = ENTRY_RULES[field]
            kept: dict[str, Any] = {}
            for key, item in value.items():
                try:
                    kept[key_rule(key)] = value_rule(item)
                except ValueError as exc:
                    problems.append(f"{what} {_short(key)}: {exc}")
            if kept:
                clean[field] = kept
        else:
            problems.append(f"unknown key {_short(field)} ignored")
    return clean, problems
