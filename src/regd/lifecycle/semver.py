"""Version numbering: 1.0.0 first, MINOR for the same signature, MAJOR for a changed one."""

from __future__ import annotations

from regd.domain import SEMVER_RE
from regd.errors import Conflict, InvalidParams
from regd.store.catalog import VersionRow

SemVer = tuple[int, int, int]
FIRST: SemVer = (1, 0, 0)


def parse(text: str) -> SemVer:
    """``"1.2.0"`` -> ``(1, 2, 0)``; anything else is invalid params."""
    if not SEMVER_RE.match(text):
        raise InvalidParams(f"{text!r} is not a version MAJOR.MINOR.PATCH", {"version": text})
    major, minor, patch = (int(x) for x in text.split("."))
    return major, minor, patch


def render(v: SemVer) -> str:
    return f"{v[0]}.{v[1]}.{v[2]}"


def next_version(latest: VersionRow | None, signature_digest: str | None) -> SemVer:
    """The number a new artifact gets after ``latest`` (the model's highest version)."""
    if latest is None:
        return FIRST
    if signature_digest != latest.signature_digest:
        return (latest.major + 1, 0, 0)
    return (latest.major, latest.minor + 1, 0)


def check_pinned(name: str, pinned: str, taken: bool) -> SemVer:
    """A version the sidecar pins: valid semver, and not already taken (-32002)."""
    v = parse(pinned)
    if taken:
        raise Conflict(f"{name} {pinned} already exists: a pinned version must be new", {"name": name, "version": pinned})
    return v
