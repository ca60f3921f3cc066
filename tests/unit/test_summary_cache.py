"""Rendered version summaries: the same JSON as pydantic's, reused only while the database is unchanged."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from regd.api.jsonrpc import page_of_rendered
from regd.domain import VersionSummary
from regd.protocol import Page
from regd.store.sqlite_read import SQLiteReader
from regd.store.summary_cache import SummaryCache
from tests.unit.test_search import db  # noqa: F401 - the fixture: six versions with metrics, tags, aliases

FILTERS = ["", "tags.team = 'risk'", "metrics.accuracy > 0.9", "name like 'fraud%'", "stage = 'production'"]
ORDERS = [None, "version", "metrics.accuracy desc", "name"]


@pytest.fixture
def reader(db: sqlite3.Connection) -> Iterator[tuple[SQLiteReader, sqlite3.Connection]]:  # noqa: F811
    """A second connection on the fixture's file, as the daemon's readers are, with a cache."""
    db.execute("PRAGMA journal_mode = WAL")
    path = db.execute("PRAGMA database_list").fetchone()[2]
    conn = sqlite3.connect(path, isolation_level=None)
    yield SQLiteReader(conn, SummaryCache()), conn
    conn.close()


def _in_tx(conn: sqlite3.Connection, fn):  # type: ignore[no-untyped-def]
    conn.execute("BEGIN")
    try:
        return fn()
    finally:
        conn.execute("COMMIT")


@pytest.mark.parametrize("text", FILTERS)
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("limit", [100, 2])
def test_rendered_pages_are_the_bytes_pydantic_gives(reader, text, order, limit) -> None:
    r, conn = reader
    cursor = None
    while True:
        objects = _in_tx(conn, lambda: r.search(text, order, limit, cursor))
        rendered = _in_tx(conn, lambda: r.search_json(text, order, limit, cursor))
        assert rendered.next_cursor == objects.next_cursor
        assert rendered.items == [s.model_dump_json() for s in objects.items]
        page = Page[VersionSummary](items=objects.items, next_cursor=objects.next_cursor)
        # the reply's bytes are exactly what the pydantic page would have made
        assert page_of_rendered(rendered.items, rendered.next_cursor).text == page.model_dump_json()
        cursor = objects.next_cursor
        if cursor is None:
            break


def test_versions_json_matches_versions(reader) -> None:
    r, conn = reader
    for newest_first in (True, False):
        objects = _in_tx(conn, lambda: r.versions("fraud-detector", stage=None, newest_first=newest_first, limit=2, cursor=None))
        rendered = _in_tx(conn, lambda: r.versions_json("fraud-detector", stage=None, newest_first=newest_first, limit=2, cursor=None))
        assert rendered.items == [s.model_dump_json() for s in objects.items]
        assert rendered.next_cursor == objects.next_cursor


def test_a_commit_by_another_connection_is_seen_at_once(reader, db) -> None:  # noqa: F811
    r, conn = reader
    first = _in_tx(conn, lambda: r.search_json("name = 'churn'", None, 100, None)).items
    assert len(r.summary_cache) == 2 and all('"env":"prod"' not in t or "2.0.0" in t for t in first)
    db.execute("UPDATE tags SET value = 'staging-box' WHERE version_id = 5 AND key = 'env'")
    db.execute("UPDATE versions SET stage = 'archived' WHERE id = 5")
    again = _in_tx(conn, lambda: r.search_json("name = 'churn'", None, 100, None)).items
    churn_2 = json.loads(next(t for t in again if '"2.0.0"' in t))
    assert churn_2["tags"]["env"] == "staging-box" and churn_2["stage"] == "archived"
    db.execute("UPDATE tags SET value = 'prod' WHERE version_id = 5 AND key = 'env'")
    db.execute("UPDATE versions SET stage = 'production' WHERE id = 5")


def test_a_read_transaction_keeps_its_snapshot_while_others_commit(reader, db) -> None:  # noqa: F811
    """Text rendered inside a snapshot is never handed to a later one, nor the reverse."""
    r, conn = reader
    conn.execute("BEGIN")
    old = r.search_json("name = 'churn'", None, 100, None).items
    db.execute("UPDATE tags SET value = 'moved' WHERE version_id = 6 AND key = 'env'")
    assert r.search_json("name = 'churn'", None, 100, None).items == old  # same snapshot, same answer
    conn.execute("COMMIT")
    new = _in_tx(conn, lambda: r.search_json("name = 'churn'", None, 100, None)).items
    assert json.loads(next(t for t in new if '"2.1.0"' in t))["tags"]["env"] == "moved"
    db.execute("UPDATE tags SET value = '' WHERE version_id = 6 AND key = 'env'")


def test_unchanged_reads_are_served_from_the_cache() -> None:
    built: list[list[int]] = []

    def build(ids: list[int]) -> list[VersionSummary]:
        built.append(ids)
        return [VersionSummary(model="m", version=f"1.{i}.0", digest="d", size=i, created_at="2026-01-01T00:00:00Z",
                               created_by="u") for i in ids]  # fmt: skip

    cache = SummaryCache(capacity=3)
    assert cache.rendered(7, [1, 2], build) == cache.rendered(7, [1, 2], build)
    assert built == [[1, 2]]
    cache.rendered(7, [2, 3], build)
    assert built[-1] == [3]
    cache.rendered(8, [2], build)  # another database state: everything is rebuilt
    assert built[-1] == [2] and len(cache) == 1
    page = cache.rendered(8, [10, 11, 12, 13, 14], build)  # a page larger than the cache is still whole
    assert [json.loads(t)["size"] for t in page] == [10, 11, 12, 13, 14] and len(cache) == 3
