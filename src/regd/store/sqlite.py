"""The embedded catalog: one SQLite file in WAL mode, one writer and a small pool of readers.

Readers never wait behind the writer (WAL lets them read the last committed snapshot), and all
writes go through a single connection, one ``BEGIN IMMEDIATE ... COMMIT`` per change, so two
changes can never interleave and ``database is locked`` cannot happen inside the daemon.
Each connection lives on its own aiosqlite thread: the event loop never blocks on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from regd.domain import AuditEvent
from regd.store.catalog import CommitListener, ReadTx, WriteTx
from regd.store.migrations import migrate
from regd.store.sqlite_read import SQLiteReader
from regd.store.sqlite_write import SQLiteWriter
from regd.store.summary_cache import SummaryCache

T = TypeVar("T")
log = logging.getLogger(__name__)

READERS = 2
OPTIMIZE_EVERY = 1000
CACHE_KIB = 4096
"""Page cache per connection (writer and each reader), in KiB."""


def _configure(conn: sqlite3.Connection, *, reader: bool) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk before the daemon answers; a kill -9 or a power cut loses nothing acknowledged
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA temp_store = MEMORY")
    # 4 MiB per connection (SQLite's default is 2): a bound on what the page caches add to the daemon's RSS.
    # At 16 MiB the writer's cache filled for minutes as the catalog grew (RSS +38 MiB in a 5-minute
    # 50-client soak, Python objects flat), and the readers' caches are dropped at every commit anyway
    # (WAL), so a bigger one mostly left freed pages in malloc's arenas. A miss costs a read from the
    # OS page cache. See docs/decisions.md (Store) for the measurement.
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    if reader:
        conn.execute("PRAGMA query_only = ON")


class SQLiteCatalog:
    """``Catalog`` over a SQLite file."""

    def __init__(self, path: Path, readers: int = READERS) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._n_readers = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all_readers: list[aiosqlite.Connection] = []
        self._summary_caches: dict[int, SummaryCache] = {}
        """Per reader connection (by id): each is only touched on that connection's thread."""
        self._listeners: list[CommitListener] = []
        self._writes = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        await _run(self._writer, lambda c: (_configure(c, reader=False), migrate(c), c.execute("PRAGMA optimize=0x10002")))
        for _ in range(self._n_readers):
            reader = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
            await _run(reader, lambda c: _configure(c, reader=True))
            self._all_readers.append(reader)
            self._summary_caches[id(reader)] = SummaryCache()
            self._readers.put_nowait(reader)

    async def close(self) -> None:
        if self._writer is not None:
            try:
                await _run(self._writer, lambda c: c.execute("PRAGMA optimize"))
            except sqlite3.Error:
                pass
            await self._writer.close()
            self._writer = None
        for reader in self._all_readers:
            await reader.close()
        self._all_readers.clear()

    def add_commit_listener(
        self, listener: CommitListener, *, remote: bool = False, local: bool = True, wanted: Callable[[], bool] | None = None
    ) -> None:
        if local:  # no other daemon writes this file: a listener for remote rows only is never called
            self._listeners.append(listener)

    async def follow(self) -> None:
        """Nothing to follow: the data dir's lock makes this daemon the file's only writer."""
        return

    async def want_remote_rows(self) -> None:
        return

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` against one consistent snapshot on a free reader connection."""
        conn = await self._readers.get()
        try:
            cache = self._summary_caches[id(conn)]
            return await _run(conn, lambda c: _in_read_tx(c, fn, cache))
        finally:
            self._readers.put_nowait(conn)

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` as one transaction on the writer; commit, or roll back everything on error."""
        if self._writer is None:
            raise RuntimeError("the catalog is closed")
        tx_holder: list[SQLiteWriter] = []

        def body(conn: sqlite3.Connection) -> T:
            tx = SQLiteWriter(conn)
            tx_holder.append(tx)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(tx)
                conn.execute("COMMIT")
            except BaseException:
                # a COMMIT that failed (SQLITE_FULL, an I/O error) may have rolled back already: a ROLLBACK
                # then raises "no transaction is active" and would hide the reason (the disk is full)
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._writes += 1
            if self._writes % OPTIMIZE_EVERY == 0:
                # keep the planner's statistics current as the registry grows (cheap when nothing changed)
                conn.execute("PRAGMA optimize")
            return result

        result = await _run(self._writer, body)
        if tx_holder and tx_holder[0].appended:
            # on the loop's next pass, in commit order: the reply to the change goes out first (events and
            # effects are scheduled work anyway), and no later message is read before they have run
            asyncio.get_running_loop().call_soon(self._notify, tx_holder[0].appended)
        return result

    def _notify(self, rows: list[AuditEvent]) -> None:
        for listener in self._listeners:
            try:
                listener(rows)
            except Exception:  # a broken listener must not undo a committed change
                log.exception("commit listener failed")

    async def execute_raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement on the writer (maintenance and tests: integrity_check, optimize)."""
        assert self._writer is not None
        return await _run(self._writer, lambda c: c.execute(sql, params).fetchall())


def _in_read_tx(conn: sqlite3.Connection, fn: Callable[[ReadTx], T], cache: SummaryCache | None = None) -> T:
    # a read transaction pins one WAL snapshot, so a multi-query read sees a single moment
    conn.execute("BEGIN")
    try:
        return fn(SQLiteReader(conn, cache))
    finally:
        conn.execute("COMMIT")


async def _run(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # aiosqlite runs each call on the connection's own thread; ``_execute`` is the hook all of its
    # public methods use, and the only way to run several statements in one hop (one thread
    # round-trip per transaction instead of one per statement: the difference between 0.2 and 2 ms).
    return await conn._execute(lambda: fn(conn._conn))  # noqa: SLF001
