"""The live feed: one subscription over ``AsyncClient.events()``, kept up across daemon restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from regd.client import AsyncClient
from regd.domain import Event
from regd.errors import RegdError, Unreachable

RETRY_FIRST_S = 0.25
RETRY_MAX_S = 5.0


async def follow(
    client: AsyncClient,
    on_event: Callable[[Event], None],
    on_lost: Callable[[str], None],
    on_back: Callable[[dict[str, Any]], None],
    topics: list[str] | None = None,
) -> None:
    """Deliver every event until cancelled; when the daemon goes away, say so, retry, say when it is back.

    ``on_back`` gets the fresh ``daemon.status`` so the caller can reload what it shows: events
    published while the connection was down are not replayed.
    """
    lost = False
    delay = RETRY_FIRST_S
    while True:
        try:
            if lost:
                status = await client.call("daemon.status")
                lost, delay = False, RETRY_FIRST_S
                on_back(status)
            async for event in client.events(topics):
                on_event(event)
            raise Unreachable("the event stream ended")
        except (Unreachable, ConnectionError, OSError) as exc:
            if not lost:
                lost = True
                on_lost(exc.message if isinstance(exc, RegdError) else str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
