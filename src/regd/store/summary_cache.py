"""Version summaries rendered as JSON, kept per reader connection for as long as the database is unchanged.

Lists and searches answer pages of ``VersionSummary``; building each one (three side queries, pydantic
validation, JSON) costs about 10 µs, and a page of 100 cost more than the round trip of the call itself.
A registry is read far more than it is written (a TUI paging, scripts polling the same search), so the
rendered text of each version is kept here and reused while nothing has been committed.

Correctness rests on SQLite's ``PRAGMA data_version``: on a reader connection it changes whenever any
other connection has committed, and inside a read transaction it stays that of the transaction's
snapshot. A cache is owned by one connection (its thread) and holds only text rendered at one
``data_version``; the first read at another version empties it. Nothing can be served stale, and no
writer needs to know the cache exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from regd.domain import VersionSummary, json_text

CAPACITY = 4096
"""Rendered summaries kept per reader connection (about 400 bytes each)."""


class SummaryCache:
    """Rendered summaries by version id, for one database state of one connection."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._state: int | None = None
        self._text: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._text)

    def rendered(self, state: int, ids: Sequence[int], build: Callable[[list[int]], list[VersionSummary]]) -> list[str]:
        """The JSON of each version's summary; ``build`` makes the missing ones (in the order asked).

        ``state`` is the ``data_version`` read in the same transaction as ``ids``."""
        if state != self._state:
            self._text.clear()
            self._state = state
        text = self._text
        missing = [i for i in ids if i not in text]
        if missing:
            for vid, summary in zip(missing, build(missing), strict=True):
                text[vid] = json_text(summary)
        page = [text[i] for i in ids]
        if len(text) > self.capacity:
            for vid in list(text)[: len(text) - self.capacity]:  # oldest first: dicts keep insertion order
                del text[vid]
        return page
