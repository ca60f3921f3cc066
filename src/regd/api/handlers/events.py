"""``events.subscribe``: after the reply, this connection receives ``event`` notifications."""

from __future__ import annotations

from regd.api import jsonrpc
from regd.api.methods import Call, handler
from regd.errors import InvalidParams
from regd.protocol import SubscribeParams, SubscribeResult


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
    await call.daemon.catalog.want_remote_rows()

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
