"""The SQLite catalog's queries, run on PostgreSQL: a connection adapter and the few dialect spellings.

``sqlite_read``/``sqlite_write`` are the one copy of every query. Here a psycopg 3 connection is
made to look like the sqlite3 one they were written for:

* ``?`` placeholders become ``%s`` (outside string literals) and a literal ``%`` becomes ``%%``;
* an ``INSERT`` into a table with an identity ``id`` gets ``RETURNING id``, read back as ``lastrowid``;
* rows are tuples, ``BYTEA`` comes back as ``bytes``.

What SQLite and PostgreSQL spell differently is overridden in ``PgDialect``: the search join (SQLite
needs a ``CROSS JOIN`` to pin its plan, PostgreSQL has no ``CROSS JOIN ... ON``), ``instr``,
``LIKE`` (ASCII case-insensitive in SQLite: ``ILIKE`` on ``COLLATE "C"`` columns is exactly that), the
version sort key (``printf``) and the params sort key (``coalesce(num, text)`` mixes types).
Filters and orders are SQL made only of ``search_sql``'s constants (every user value is a
parameter), so rewriting their text is safe.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg

from regd.errors import InvalidParams
from regd.store.search import (
    CompiledFilter,
    CompiledOrder,
    compile_filter,
    compile_order,
)
from regd.store.sqlite_read import SQLiteReader
from regd.store.sqlite_write import SQLiteWriter

ID_TABLES = frozenset({"models", "versions", "alias_history", "stage_history", "audit"})
"""Tables whose ``id`` is an identity column (``INTEGER PRIMARY KEY`` in SQLite)."""

_INSERT_INTO = re.compile(r"\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


@functools.lru_cache(maxsize=2048)
def pg_query(sql: str) -> str:
    """``sql`` with psycopg's placeholders: ``?`` -> ``%s`` outside string literals, ``%`` -> ``%%``."""
    return _placeholders(sql, lambda n: "%s", "%%")


@functools.lru_cache(maxsize=2048)
def pg_numbered(sql: str) -> str:
    """``sql`` with PostgreSQL's own placeholders, ``?`` -> ``$1``, ``$2`` ... (for ``PREPARE``)."""
    return _placeholders(sql, lambda n: f"${n}", "%")


def _placeholders(sql: str, mark: Callable[[int], str], percent: str) -> str:
    out: list[str] = []
    quote = ""
    n = 0
    for ch in sql:
        if ch == "%":
            out.append(percent)
        elif quote:
            out.append(ch)
            if ch == quote:  # a doubled quote closes and reopens: still right
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            n += 1
            out.append(mark(n))
        else:
            out.append(ch)
    return "".join(out)


@functools.lru_cache(maxsize=2048)
def with_returning_id(sql: str) -> str | None:
    """``sql + RETURNING id`` for an INSERT into a table with an identity id; else None."""
    m = _INSERT_INTO.match(sql)
    if m and m[1] in ID_TABLES and "RETURNING" not in sql.upper():
        return sql + " RETURNING id"
    return None


class PgCursor:
    """The parts of ``sqlite3.Cursor`` the queries use."""

    def __init__(self, cur: Any, returning: bool) -> None:
        self._cur = cur
        self.lastrowid: int | None = None
        if returning:
            row = cur.fetchone()
            self.lastrowid = int(row[0]) if row else None

    @property
    def rowcount(self) -> int:
        return int(self._cur.rowcount)

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)


class PgConnection:
    """The parts of ``sqlite3.Connection`` the queries use, over a psycopg 3 connection."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        returning = with_returning_id(sql)
        cur = self.raw.cursor()
        try:
            cur.execute(pg_query(returning or sql), tuple(params))
        except psycopg.DataError as exc:
            raise nul_refused(exc) from exc
        return PgCursor(cur, returning is not None)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in seq]
        if rows:
            with self.raw.cursor() as cur:
                try:
                    cur.executemany(pg_query(sql), rows)
                except psycopg.DataError as exc:
                    raise nul_refused(exc) from exc


def nul_refused(exc: Exception) -> Exception:
    """PostgreSQL text cannot hold NUL (SQLite's can): a value with one is the caller's error, not ours."""
    if "NUL" in str(exc):
        return InvalidParams("a value contains a NUL character, which the PostgreSQL catalog cannot store or compare")
    return exc


_VERSION_KEY = (
    "(lpad(v.major::text, 9, '0') || '.' || lpad(v.minor::text, 9, '0') || '.' || lpad(v.patch::text, 9, '0'))"
    ' COLLATE "C"'
)


@functools.lru_cache(maxsize=512)
def pg_filter(flt: CompiledFilter) -> CompiledFilter:
    """A compiled filter as PostgreSQL says it."""
    where = "TRUE" if flt.where == "1" else flt.where.replace(" LIKE ? ESCAPE ", " ILIKE ? ESCAPE ")
    return dataclasses.replace(flt, where=where)


@functools.lru_cache(maxsize=512)
def pg_order(order: CompiledOrder) -> CompiledOrder:
    """A compiled order as PostgreSQL says it (same order as SQLite's, byte order for text)."""
    if order.expr is None:
        return order
    if order.field == "version":
        return dataclasses.replace(order, expr=_VERSION_KEY)
    if order.field.startswith("params."):
        expr = order.expr.replace("coalesce(num, text)", 'regd_param_key(num, text) COLLATE "C"')
        return dataclasses.replace(order, expr=expr)
    return order


class PgDialect:
    """What PostgreSQL spells differently from SQLite (see the module docstring)."""

    _PINNED_JOIN = "JOIN"
    _NAME_CONTAINS = "strpos(lower(m.name), lower(?)) > 0"

    def _compiled(self, filter_text: str, order_by: str | None) -> tuple[CompiledFilter, CompiledOrder]:
        return pg_filter(compile_filter(filter_text)), pg_order(compile_order(order_by))


class PgReader(PgDialect, SQLiteReader):
    """``ReadTx`` on PostgreSQL."""


class PgWriter(PgDialect, SQLiteWriter):
    """``WriteTx`` on PostgreSQL."""
