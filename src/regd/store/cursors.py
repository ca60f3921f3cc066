"""Opaque pagination cursors: the sort key of the last row a page returned.

Keyset pagination stays fast at any depth (no OFFSET scans) and stable while rows are added.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from regd.errors import InvalidParams


def encode(*key: Any) -> str:
    """Pack a sort key into a cursor string."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, arity: int) -> list[Any]:
    """Unpack a cursor made by ``encode``; anything else is invalid params, not a crash."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError) as exc:
        raise InvalidParams("invalid cursor: pass back the next_cursor of a previous page") from exc
    if not isinstance(key, list) or len(key) != arity or not all(
        isinstance(k, (int, float, str)) or k is None for k in key
    ):
        raise InvalidParams("invalid cursor: pass back the next_cursor of a previous page")
    return key
