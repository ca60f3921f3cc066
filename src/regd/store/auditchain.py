"""The audit log's hash chain: each row's hash covers its content and the hash before it.

Kept apart from any database so that the SQLite and PostgreSQL catalogs chain identically and
``regd migrate`` can carry a chain across them unchanged.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from regd.domain import AuditEvent
from regd.store.times import to_us

GENESIS = "0" * 64


def row_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the row's canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def content_of(
    *,
    id: int,
    at: int,
    actor: str,
    action: str,
    model: str | None,
    version: str | None,
    from_: str | None,
    to: str | None,
    reason: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The fields a row's hash covers (its id too, so a removed row breaks the chain)."""
    return {
        "id": id,
        "at": at,
        "actor": actor,
        "action": action,
        "model": model,
        "version": version,
        "from": from_,
        "to": to,
        "reason": reason,
        "details": details,
    }


def content_of_event(event: AuditEvent) -> dict[str, Any]:
    """The hashed content of a stored row, read back (times exactly, in microseconds)."""
    return content_of(
        id=event.id, at=to_us(event.at), actor=event.actor, action=event.action, model=event.model,
        version=event.version, from_=event.from_, to=event.to, reason=event.reason, details=event.details,
    )  # fmt: skip
