"""The live feed: one subscription over ``AsyncClient.events()``, kept up across daemon restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from regd.client import AsyncClient
from regd.errors import RegdError, Unreachable
from regtui.fmt import parse_time, ref

if TYPE_CHECKING:
    from regd.domain import Event

RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0

TOPIC_OF_ACTION = {
    "version.registered": "version.registered",
    "version.stage": "version.stage",
    "version.archived": "version.stage",
    "version.rolled_back": "version.stage",
    "version.force": "version.stage",
    "version.tagged": "tag",
    "version.approved": "approval",
    "alias.set": "alias",
    "alias.deleted": "alias",
    "model.deprecated": "model.deprecated",
}
"""The audit actions the daemon publishes, and as which topic (as ``events.subscribe`` does)."""


@dataclass(frozen=True)
class CaughtUp:
    """A change read back from the audit log, in the shape of ``regd.domain.Event``."""

    topic: str
    at: datetime
    model: str | None = None
    version: str | None = None
    actor: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


async def last_audit_id(client: AsyncClient) -> int:
    """The newest audit row's id: changes after it are news."""
    rows = (await client.call("audit.list", {"limit": 1}))["items"]
    return int(rows[0]["id"]) if rows else 0


async def catch_up(client: AsyncClient, after: int, limit: int = 200) -> list[CaughtUp]:
    """The changes recorded after audit row ``after`` (oldest first), for those the feed did not bring.

    The subscription starts after the first screen, and a daemon drops events for a slow reader:
    the audit log has them all.
    """
    rows = (await client.call("audit.list", {"limit": limit}))["items"]  # newest first
    out = []
    for row in reversed(rows):
        topic = TOPIC_OF_ACTION.get(row.get("action", ""))
        if topic is None or int(row["id"]) <= after:
            continue
        data: dict[str, Any] = {"action": row["action"], "audit_id": row["id"], **(row.get("details") or {})}
        for key in ("from", "to", "reason"):
            if row.get(key) is not None:
                data[key] = row[key]
        at = parse_time(row.get("at")) or datetime.now().astimezone()
        out.append(CaughtUp(topic, at, row.get("model"), row.get("version"), row.get("actor"), data))
    return out


async def follow(
    client: AsyncClient,
    on_event: Callable[[Event], None],
    on_lost: Callable[[str], None],
    on_back: Callable[[dict[str, Any]], None],
    topics: list[str] | None = None,
    *,
    lost: bool = False,
    on_subscribed: Callable[[], None] | None = None,
) -> None:
    """Deliver every event until cancelled; when the daemon goes away, say so, retry, say when it is back.

    ``on_back`` gets the fresh ``daemon.status`` so the caller can reload what it shows: events
    published while the connection was down are not replayed. ``lost=True`` starts by waiting for
    a daemon (none answered at start). ``on_subscribed`` is called each time the daemon has
    accepted the subscription (from then on nothing is missed).
    """
    delay = RETRY_FIRST_S
    while True:
        try:
            if lost:
                status = await client.call("daemon.status")
                lost, delay = False, RETRY_FIRST_S
                on_back(status)
            async for event in client.events(topics, on_subscribed=on_subscribed):
                on_event(event)
            raise Unreachable("the event stream ended")
        except (Unreachable, ConnectionError, OSError) as exc:
            if not lost:
                lost = True
                on_lost(exc.message if isinstance(exc, RegdError) else str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


def describe_event(event: Event | CaughtUp) -> str:
    """One line for a live event: what happened to which version, and who did it."""
    who = f" by {event.actor}" if event.actor else ""
    what = ref(event.model or "?", event.version)
    data = event.data
    if event.topic == "version.registered":
        return f"new version {what}{who}"
    if event.topic == "version.stage":
        return f"{what} {data.get('from', '?')} → {data.get('to', '?')}{who}"
    if event.topic == "alias":
        return f"alias {data.get('alias', '')} {data.get('action', '')} {what}{who}".replace("  ", " ")
    return f"{event.topic} {what}{who}"
