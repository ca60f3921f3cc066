"""Mappings compared key by key, nested ones flattened to dotted keys (``flavors.sklearn.sklearn_version``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regd.diffmodel import KeyDiff, ValueChange

MAX_KEYS = 5000
"""Flattening stops here: a descriptor with more keys than this is not a descriptor."""
MAX_DEPTH = 16


def flatten(value: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None, depth: int = 0) -> dict[str, Any]:
    """Nested mappings to ``{"a.b.c": leaf}``; lists stay whole values (their order is their meaning)."""
    out = {} if out is None else out
    for key, item in value.items():
        if len(out) >= MAX_KEYS:
            break
        dotted = f"{prefix}{key}"
        if isinstance(item, Mapping) and item and depth < MAX_DEPTH:
            flatten(item, dotted + ".", out, depth + 1)
        else:
            out[dotted] = item
    return out


def same_value(a: Any, b: Any) -> bool:
    """Equal, without ``1 == True`` or ``"1" == 1`` confusion hiding a change in a config file (``1 == 1.0`` is equal)."""
    if type(a) is not type(b) and not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
        return False
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


def key_diff(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None, *, nested: bool = False) -> KeyDiff:
    """Compare two mappings: added, removed and changed keys (sorted), and how many are unchanged."""
    left = flatten(a or {}) if nested else dict(a or {})
    right = flatten(b or {}) if nested else dict(b or {})
    diff = KeyDiff()
    for key in sorted(left.keys() | right.keys()):
        if key not in left:
            diff.added[key] = right[key]
        elif key not in right:
            diff.removed[key] = left[key]
        elif same_value(left[key], right[key]):
            diff.unchanged += 1
        else:
            diff.changed.append(ValueChange(key=key, a=left[key], b=right[key]))
    return diff
