"""Compare environments: lock packages (added, removed, upgraded, downgraded) and the runtime facts.

Package names are compared PEP 503-normalised (``Scikit_Learn`` = ``scikit-learn``). Versions are
ordered with ``packaging.version`` when it is importable, else with a PEP 440 subset (release
numbers, then ``a``/``b``/``rc`` pre-releases, ``.post``, ``.dev``, a ``+local`` part ignored); two
versions neither can parse (a git URL, a conda build string) are ``changed``, never guessed.
"""

from __future__ import annotations

import re
from typing import Any

from regd.diffmodel import EnvDiff, PackageChange, ValueChange
from regd.domain import EnvLock, Runtime

RUNTIME_FIELDS = ("python", "os", "machine", "cuda", "driver", "gpus")

_NAME = re.compile(r"[-_.]+")
_PEP440 = re.compile(
    r"^v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev>\d*))?"
    r"(?:\+[a-z0-9.]+)?$"
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}


def normalize(name: str) -> str:
    """PEP 503: lower case, runs of ``-_.`` as one ``-``."""
    return _NAME.sub("-", name).lower()


def _fallback_key(version: str) -> tuple[Any, ...] | None:
    m = _PEP440.match(version.strip().lower())
    if m is None:
        return None
    release = [int(x) for x in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()  # 1.0 == 1.0.0
    inf = float("inf")
    pre = (_PRE_RANK[m["pre_l"]], int(m["pre_n"] or 0)) if m["pre_l"] else (inf, 0)
    post = int(m["post"] or 0) if m["post"] is not None else -1
    dev = int(m["dev"] or 0) if m["dev"] is not None else inf
    if m["dev"] is not None and not m["pre_l"] and m["post"] is None:
        pre = (-1, 0)  # 1.0.dev1 sorts before 1.0a1
    return (int(m["epoch"] or 0), tuple(release), pre, post, dev)


def compare_versions(a: str, b: str) -> int | None:
    """Order two versions of a package: 1 when ``b`` is newer (upgraded), -1 older, 0 equal, None unknown."""
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging is in every venv pip made, but not a declared dependency
        return compare_versions_fallback(a, b)
    try:
        va, vb = Version(a), Version(b)
    except InvalidVersion:
        return compare_versions_fallback(a, b)
    return (vb > va) - (vb < va)


def compare_versions_fallback(a: str, b: str) -> int | None:
    """``compare_versions`` without ``packaging``: a PEP 440 subset, None when either will not parse."""
    ka, kb = _fallback_key(a), _fallback_key(b)
    if ka is None or kb is None:
        return None
    return (kb > ka) - (kb < ka)


def env_diff(a_lock: EnvLock | None, b_lock: EnvLock | None, a_rt: Runtime | None, b_rt: Runtime | None) -> EnvDiff:
    """Compare two versions' environment locks and runtime facts."""
    if a_lock is None or b_lock is None:
        state = "missing_both" if a_lock is None and b_lock is None else "missing_a" if a_lock is None else "missing_b"
    else:
        state = "same" if a_lock.digest == b_lock.digest else "different"
    diff = EnvDiff(lock=state, a_lock=_label(a_lock), b_lock=_label(b_lock))  # type: ignore[arg-type]
    if a_lock is not None and b_lock is not None:
        _packages(diff, a_lock.packages, b_lock.packages)
    _runtime(diff, a_rt, b_rt)
    return diff


def _label(lock: EnvLock | None) -> str | None:
    return f"{lock.kind} {lock.digest[:12]}" if lock else None


def _packages(diff: EnvDiff, a: dict[str, str], b: dict[str, str]) -> None:
    left = {normalize(k): (k, v) for k, v in a.items()}
    right = {normalize(k): (k, v) for k, v in b.items()}
    for key in sorted(left.keys() | right.keys()):
        if key not in left:
            name, version = right[key]
            diff.added[name] = version
        elif key not in right:
            name, version = left[key]
            diff.removed[name] = version
        else:
            (_, va), (name, vb) = left[key], right[key]
            if va == vb:
                diff.unchanged += 1
                continue
            order = compare_versions(va, vb)
            change = PackageChange(name=name, a=va, b=vb)
            if order == 0:
                diff.unchanged += 1  # 1.0 and 1.0.0 are the same release
            elif order == 1:
                diff.upgraded.append(change)
            elif order == -1:
                diff.downgraded.append(change)
            else:
                diff.changed.append(change)


def _runtime(diff: EnvDiff, a: Runtime | None, b: Runtime | None) -> None:
    if a is None or b is None:
        missing = [side for side, rt in (("a", a), ("b", b)) if rt is None]
        diff.runtime_note = f"no runtime facts recorded for {' and '.join(missing)}"
        return
    for field in RUNTIME_FIELDS:
        va, vb = getattr(a, field), getattr(b, field)
        if va != vb:
            diff.runtime.append(ValueChange(key=field, a=va, b=vb))


def describe(diff: EnvDiff) -> str:
    """``env: 2 upgraded, 1 added; python 3.11.7 -> 3.12.1``, or empty when nothing changed."""
    parts = []
    if diff.lock in ("missing_a", "missing_b"):
        parts.append(f"lock only on {'b' if diff.lock == 'missing_a' else 'a'}")
    elif diff.lock == "different":
        counts = [(len(diff.upgraded), "upgraded"), (len(diff.downgraded), "downgraded"), (len(diff.added), "added"),
                  (len(diff.removed), "removed"), (len(diff.changed), "changed")]  # fmt: skip
        listed = [f"{n} {what}" for n, what in counts if n]
        parts.append(f"packages {', '.join(listed)}" if listed else "lock changed, same packages")
    for change in diff.runtime:
        if change.key in ("python", "cuda"):
            parts.append(f"{change.key} {change.a or '?'} -> {change.b or '?'}")
    return "env: " + ", ".join(parts) if parts else ""
