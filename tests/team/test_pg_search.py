"""Search on PostgreSQL answers exactly what it answers on SQLite: the same rows, in the same order.

The catalog of ``tests/unit/test_search.py`` is loaded into both databases; every filter that file
tries (its parametrised cases, then random well-formed filters) runs through each catalog's real
``search`` with several orders, page by page, and the two answers are compared.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from regd.errors import InvalidParams
from regd.store.migrations import migrate, migrate_postgres
from regd.store.sqlite_read import SQLiteReader
from tests.unit import test_search as cases

ORDERS = [None, "created_at", "version", "version desc", "name", "metrics.accuracy desc", "params.lr",
          "params.optimizer desc", "tags.team", "stage", "description"]  # fmt: skip


def _load(conn: Any) -> None:
    """The search test's catalog, through sqlite3 or the PostgreSQL adapter alike."""
    names = list(dict.fromkeys(v[0] for v in cases.VERSIONS.values()))
    models = {name: i for i, name in enumerate(names, 1)}
    for name, mid in models.items():
        conn.execute("INSERT INTO models (id, name, created_at, created_by, updated_at) VALUES (?, ?, 0, 'alice', 0)",
                     (mid, name))  # fmt: skip
    for vid, (model, version, stage, fmt, created, by, digest, description) in cases.VERSIONS.items():
        major, minor, patch = map(int, version.split("."))
        conn.execute(
            "INSERT INTO versions (id, model_id, major, minor, patch, version, stage, digest, size, kind, format,"
            " stored_path, source_path, store_mode, description, run_id, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 'file', ?, '/s', '/src', 'copy', ?, ?, ?, ?)",
            (vid, models[model], major, minor, patch, version, stage, digest, fmt, description, f"run-{vid}",
             cases._us(created), by),  # fmt: skip
        )
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?)", cases.METRICS)
    conn.executemany("INSERT INTO params VALUES (?, ?, ?, ?, ?)", cases.PARAMS)
    conn.executemany("INSERT INTO tags VALUES (?, ?, ?)", cases.TAGS)
    conn.executemany("INSERT INTO aliases VALUES (?, ?, ?, 0)", cases.ALIASES)


@pytest.fixture(scope="module")
def readers(pg_server, tmp_path_factory) -> Iterator[tuple[SQLiteReader, Any]]:  # type: ignore[no-untyped-def]
    import psycopg

    from regd.store.pg_queries import PgConnection, PgReader

    lite = sqlite3.connect(tmp_path_factory.mktemp("search") / "registry.db", isolation_level=None)
    migrate(lite)
    lite.execute("BEGIN")
    _load(lite)
    lite.execute("COMMIT")
    pg = psycopg.connect(pg_server.create_database(), autocommit=True)
    migrate_postgres(pg)
    with pg.transaction():
        _load(PgConnection(pg))
    yield SQLiteReader(lite), PgReader(PgConnection(pg))
    lite.close()
    pg.close()


def _answer(reader: Any, text: str, order: str | None, limit: int) -> list[str] | str:
    """Every page of the search, as model:version; or the error message."""
    out: list[str] = []
    cursor = None
    try:
        while True:
            page = reader.search(text, order, limit, cursor)
            out += [f"{s.model}:{s.version}" for s in page.items]
            cursor = page.next_cursor
            if cursor is None:
                return out
    except InvalidParams as exc:
        return f"invalid: {exc.message}"


def _agree(pg: list[str] | str, lite: list[str] | str, text: str) -> bool:
    """The same answer; or, for a value holding NUL (PostgreSQL text cannot), a clear refusal."""
    return pg == lite or ("\x00" in text and isinstance(pg, str) and "NUL character" in pg)


def _same(readers: tuple[SQLiteReader, Any], text: str, orders: list[str | None] = ORDERS, limits=(100, 2)) -> None:  # type: ignore[no-untyped-def]
    lite, pg = readers
    for order in orders:
        for limit in limits:
            expected = _answer(lite, text, order, limit)
            assert _agree(_answer(pg, text, order, limit), expected, text), (text, order, limit)


def _filters_tried_by_the_search_tests() -> list[str]:
    texts: list[str] = []
    for name in dir(cases):
        for mark in getattr(getattr(cases, name), "pytestmark", []):
            if mark.name != "parametrize":
                continue
            argnames = mark.args[0] if isinstance(mark.args[0], str) else ",".join(mark.args[0])
            names = [a.strip() for a in argnames.split(",")]
            if names[0] != "text" or "order" in name:
                continue
            texts += [case[0] if isinstance(case, tuple) else case for case in mark.args[1]]
    return list(dict.fromkeys(t for t in texts if isinstance(t, str)))


FILTERS = _filters_tried_by_the_search_tests()


def test_the_search_tests_were_found() -> None:
    assert len(FILTERS) > 100


@pytest.mark.parametrize("text", FILTERS)
def test_every_filter_answers_the_same(readers, text) -> None:  # type: ignore[no-untyped-def]
    _same(readers, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=cases._filters)
def test_random_filters_answer_the_same(readers, text) -> None:  # type: ignore[no-untyped-def]
    _same(readers, text, [None, "version desc", "params.lr"], (3,))


def test_models_and_audit_queries_run(readers) -> None:  # type: ignore[no-untyped-def]
    lite, pg = readers
    for reader in (lite, pg):
        page = reader.models(query="FRAUD", stage=None, tag=None, include_deprecated=True, limit=1, cursor=None)
        assert [m.name for m in page.items] == ["fraud-detector"] and page.next_cursor
        assert reader.audit(model=None, version=None, actor=None, action="version", since=None, limit=5,
                            cursor=None).items == []  # fmt: skip
    assert pg.row("fraud-detector", "latest").version == lite.row("fraud-detector", "latest").version == "1.10.0"
    assert pg.row("churn", "@champion").version == "2.0.0"
