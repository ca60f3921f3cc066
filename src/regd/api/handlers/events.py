"""``events.subscribe``: after the reply, this connection receives ``event`` notifications."""

from __future__ import annotations

import logging

from regd.api import jsonrpc
from regd.api.methods import Call, handler
from regd.errors import InvalidParams
from regd.protocol import SubscribeParams, SubscribeResult

log = logging.getLogger(__name__)


@handler("events.subscribe")
async def events_subscribe(call: Call, p: SubscribeParams) -> SubscribeResult:
    conn = call.connection
    if conn is None or call.request_id is None:
        raise InvalidParams("events.subscribe needs a connection and a request id (not a notification)")
    topics = list(p.topics or [])
    bus = call.daemon.bus
    sub = bus.subscribe(topics or None)
    conn.subscribed = True
    # with a shared catalog, other daemons' changes are read only while someone wants them: from the
    # reply on, they reach this subscriber too
    try:
        await call.daemon.catalog.want_remote_rows()
    except Exception as exc:  # noqa: BLE001 - the catalog is unreachable: this daemon's own events still flow
        log.warning("events.subscribe: other daemons' changes will follow once the catalog answers: %s", exc)

    async def pump() -> None:
        try:
            while True:
                event = await sub.queue.get()
                if sub.dropped:
                    await conn.send(jsonrpc.notification("events.dropped", {"count": sub.dropped}))
                    sub.dropped = 0
                await conn.send(jsonrpc.notification("event", event))
        finally:
            bus.unsubscribe(sub)

    call.after_reply.append(lambda: conn.spawn(pump()))
    return SubscribeResult(subscribed=topics or ["*"])
