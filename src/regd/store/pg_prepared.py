"""Server-side prepared statements for the writer's batched messages.

The writer sends several statements in one simple-protocol message (``pg_write.TxConnection``), and
the simple protocol plans every statement it is sent, each time: for the catalog's statements that
is ~100 µs of the server's CPU apiece, most of what a promotion costs PostgreSQL, and what four
daemons writing at once queue on. So each statement the writer sends goes out as text once; then,
outside any transaction, it is ``PREPARE``d on that connection, and from then on it is sent as
``EXECUTE name(literals)``, which PostgreSQL parses in a few µs and runs on its cached plan
(measured: five statements in one message, 600 µs of server CPU as text, 133 µs as EXECUTEs).

A ``PREPARE`` lasts for the session and is not undone by a rollback, which is why it is sent on its
own, after the transaction, and counted only once it succeeded: a statement whose parameter types
PostgreSQL cannot infer stays text, and a failed transaction leaves nothing in doubt. A new
connection starts with a new, empty ``Prepared``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from regd.store.pg_queries import nul_refused, pg_numbered, pg_query

log = logging.getLogger(__name__)

LIMIT = 512
"""At most this many statements prepared on one connection (a search's IN lists vary in length:
the writer's statements are a few dozen; past this, new ones stay text)."""


class Prepared:
    """The statements prepared on one connection, and those waiting to be."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        """SQL (with ``?`` placeholders) -> its prepared statement's name on this connection."""
        self.wanted: dict[str, None] = {}
        """Sent as text in a transaction; prepared by ``prepare_wanted`` after it (insertion-ordered)."""
        self.refused: set[str] = set()
        self._count = 0
        self._cursor: psycopg.ClientCursor[Any] | None = None  # renders only: one will do

    def render(self, conn: psycopg.Connection[Any], sql: str, params: Sequence[Any]) -> str:
        """``sql`` with ``params`` as one statement of a message: an EXECUTE when it is prepared."""
        cur = self._cursor
        if cur is None or cur.connection is not conn:
            cur = self._cursor = psycopg.ClientCursor(conn)
        name = self.names.get(sql)
        try:
            if name is None:
                if sql not in self.refused and len(self.names) + len(self.wanted) < LIMIT:
                    self.wanted[sql] = None
                return cur.mogrify(pg_query(sql), tuple(params))
            if not params:
                return f"EXECUTE {name}"
            return f"EXECUTE {name}({', '.join([_literal(v) or cur.mogrify('%s', (v,)) for v in params])})"
        except psycopg.DataError as exc:  # a NUL in a value
            raise nul_refused(exc) from exc

    def forget(self) -> None:
        """The server no longer has them (``DISCARD ALL``, a pooler that moved the session): text again."""
        self.names.clear()
        self.wanted.clear()

    def prepare_wanted(self, conn: psycopg.Connection[Any]) -> None:
        """PREPARE what went out as text, one statement at a time, outside any transaction."""
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return  # a ROLLBACK that did not get through: a PREPARE now would fail for that, not for itself
        while self.wanted and not (conn.closed or conn.broken):
            sql = next(iter(self.wanted))
            del self.wanted[sql]
            self._count += 1
            name = f"regd_w{self._count}"
            try:
                conn.execute(f"PREPARE {name} AS {pg_numbered(sql)}")
            except psycopg.Error as exc:
                # e.g. "could not determine data type of parameter $1": it keeps being sent as text
                log.debug("not preparing %r: %s", sql, exc)
                self.refused.add(sql)
            else:
                self.names[sql] = name


def _literal(value: Any) -> str | None:
    """The common values as literals, as psycopg writes them, without its per-value machinery (a
    tenth of a team daemon's CPU per promotion went to mogrify); None: psycopg's to write.

    A string is quoted here only when it is ASCII without a backslash or a NUL: then doubling its
    quotes is all the escaping there is, whatever ``standard_conforming_strings`` says; any other
    string (and every other type) goes through psycopg, which knows the connection's encoding and
    refuses NUL.
    """
    kind = type(value)
    if kind is str:
        if value.isascii() and "\\" not in value and "\x00" not in value:
            return "'" + value.replace("'", "''") + "'"
        return None
    if kind is int:  # not bool (a subclass of int, written true/false)
        return str(value) if value >= 0 else f" {value}"  # as psycopg: "x - -1" never reads as a comment
    if value is None:
        return "NULL"
    return None
