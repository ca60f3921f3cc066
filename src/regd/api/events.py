"""The event bus: every committed change, fanned out to ``events.subscribe`` connections.

Publishing never blocks and never fails the change that caused it: each subscriber has a bounded
queue, and a subscriber too slow to keep up loses events (it is told how many) rather than
growing the daemon's memory or slowing writers down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from regd.domain import AuditEvent, Event

QUEUE_SIZE = 1000

# audit actions that are worth a live event; the rest (hook outcomes, gc) stay in the log only
_TOPIC_OF_ACTION = {
    "version.registered": "version.registered",
    "version.stage": "version.stage",
    "version.archived": "version.stage",
    "version.rolled_back": "version.stage",
    "version.tagged": "tag",
    "version.approved": "approval",
    "alias.set": "alias",
    "alias.deleted": "alias",
    "model.deprecated": "model.deprecated",
    "guard.failed": "guard.failed",
    "gc.run": "gc",
    "watch.added": "watch",
    "watch.removed": "watch",
    "hook.failed": "hook",
    "hook.ok": "hook",
    "version.force": "version.stage",
}


def topic_matches(topic: str, wanted: Iterable[str]) -> bool:
    """A topic matches a wanted prefix at a dot boundary: ``version`` matches ``version.stage``."""
    return any(topic == w or topic.startswith(w + ".") for w in wanted)


class Subscription:
    """One subscriber's queue and topic filter."""

    def __init__(self, topics: list[str] | None) -> None:
        self.topics = topics
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.topics and not topic_matches(event.topic, self.topics):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class EventBus:
    """Fan-out of events to subscriptions on the event loop's thread."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.published = 0

    def subscribe(self, topics: list[str] | None) -> Subscription:
        sub = Subscription(topics)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, event: Event) -> None:
        self.published += 1
        for sub in list(self._subs):
            sub.offer(event)

    def emit(self, topic: str, *, model: str | None = None, version: str | None = None, actor: str | None = None,
             **data: Any) -> None:  # fmt: skip
        """Publish an event that has no audit row (ingest progress, daemon state)."""
        self.publish(Event(topic=topic, at=datetime.now(UTC), model=model, version=version, actor=actor, data=data))

    def publish_audit(self, rows: list[AuditEvent]) -> None:
        """Commit listener: turn the audit rows of a committed change into events."""
        for row in rows:
            topic = _TOPIC_OF_ACTION.get(row.action)
            if topic is None:
                continue
            data: dict[str, Any] = {"action": row.action, "audit_id": row.id}
            if row.from_ is not None:
                data["from"] = row.from_
            if row.to is not None:
                data["to"] = row.to
            if row.reason:
                data["reason"] = row.reason
            data.update(row.details)
            self.publish(Event(topic=topic, at=row.at, model=row.model, version=row.version, actor=row.actor, data=data))
