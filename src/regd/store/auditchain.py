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
    return hashlib.sha256(f"{prev_hash}\n{_canonical(content)}".encode()).hexdigest()


def around_id(content: dict[str, Any]) -> tuple[str, str]:
    """The row's canonical JSON before and after its id's digits, for a hash the database finishes.

    ``row_hash(p, content)`` is SHA-256 of ``f"{p}\\n{head}{content['id']}{tail}"``: a writer that
    learns the id (and ``p``) only under the chain lock, on the server, sends these two and lets the
    server hash (see ``pg_write``). Sorted keys make the split exact: what sorts before "id" is
    written before it, the rest after.
    """
    before = {k: v for k, v in content.items() if k < "id"}
    after = {k: v for k, v in content.items() if k > "id"}
    head = _canonical(before)[:-1] + ("," if before else "") + '"id":'
    tail = "," + _canonical(after)[1:] if after else "}"
    return head, tail


def _canonical(content: dict[str, Any]) -> str:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


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
