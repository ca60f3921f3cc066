"""The team catalog: one PostgreSQL database that many daemons read and write at once.

Same shape as the SQLite catalog: one writer connection and a small pool of readers, each a
synchronous psycopg 3 connection on its own thread (as aiosqlite gives each SQLite connection),
so a transaction body is plain code run in one hop off the event loop. The queries are SQLite's
own, through ``pg_queries``' adapter.

Several daemons writing at once stay correct because every write transaction first takes one
transaction-scoped advisory lock (``WRITE_LOCK``): the changes of all daemons are serialised like
the writes of one, so the single-production invariant (also a unique index), alias history and the
audit hash chain (``append_audit`` reads the last hash, then inserts) never interleave. Reads take a
``REPEATABLE READ READ ONLY`` snapshot, as SQLite's WAL readers do.

After each commit the writer ``NOTIFY``s ``regd_events`` with the last audit id; ``follow()``
LISTENs on its own connection and hands the rows other daemons wrote to the remote listeners.
The rows are read back from the audit table, so a missed notification (a dropped connection) only
delays them: the next wake-up, or the poll every ``POLL_S``, catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from regd.domain import AuditEvent
from regd.store.catalog import CommitListener, ReadTx, WriteTx
from regd.store.migrations import migrate_postgres
from regd.store.pg_queries import PgConnection, PgReader, PgWriter

T = TypeVar("T")
log = logging.getLogger(__name__)

READERS = 2
WRITE_LOCK = 0x7265_6764_0002
"""The advisory lock every write transaction holds ('regd' 2; migrations use 'regd' 1)."""
CHANNEL = "regd_events"
POLL_S = 5.0
"""How often ``follow`` looks for rows even without a notification."""
WAIT_S = 0.25
CATCH_UP_BATCH = 500
OWN_LIMIT = 100_000
# a daemon that stops between BEGIN and COMMIT (SIGSTOP, a hung NFS read) must not hold the write
# lock for everyone: the server ends such a session, and no write waits on the lock forever
WRITER_SETUP = "SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '60s'"


def redacted(url: str) -> str:
    """The URL without its password, for status output and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class _Worker:
    """One psycopg connection and the one thread that uses it."""

    def __init__(self, url: str, name: str, setup: str = "") -> None:
        self._url = url
        self._setup = setup
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self._url, autocommit=True, application_name="regd")
            if self._setup:
                conn.execute(self._setup)  # SET, not connect options: the URL may carry options of its own
            self._conn = conn
        return conn

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(self._connection()))

    async def close(self) -> None:
        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=False)


class PostgresCatalog:
    """``Catalog`` over a PostgreSQL database shared by many daemons."""

    def __init__(self, url: str, readers: int = READERS) -> None:
        self._dsn = url
        self.url = redacted(url)
        self._n_readers = readers
        self._writer: _Worker | None = None
        self._readers: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all_readers: list[_Worker] = []
        self._listeners: list[CommitListener] = []
        self._remote: list[CommitListener] = []
        self._own: dict[int, str] = {}
        """Audit id -> hash of the rows this daemon wrote (added before COMMIT), until ``follow`` passes them."""
        self._own_lock = threading.Lock()
        self._last_seen = 0

    # ------------------------------------------------------------------ life cycle

    async def open(self) -> None:
        writer = _Worker(self._dsn, "regd-pg-writer", WRITER_SETUP)
        try:
            await writer.run(migrate_postgres)
            for i in range(self._n_readers):
                reader = _Worker(self._dsn, f"regd-pg-reader{i}")
                await reader.run(lambda c: None)  # connect now: a bad URL fails the start, not the first read
                self._all_readers.append(reader)
                self._readers.put_nowait(reader)
        except psycopg.Error as exc:
            await writer.close()
            await self._close_readers()
            raise ConnectionError(f"cannot use the catalog {self.url}: {str(exc).strip()}") from exc
        self._writer = writer
        self._last_seen = await self.read(lambda r: _max_audit_id(r))

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await self._close_readers()

    async def _close_readers(self) -> None:
        for reader in self._all_readers:
            with contextlib.suppress(Exception):
                await reader.close()
        self._all_readers.clear()
        self._readers = asyncio.Queue()

    def add_commit_listener(self, listener: CommitListener, *, remote: bool = False) -> None:
        self._listeners.append(listener)
        if remote:
            self._remote.append(listener)

    # ------------------------------------------------------------------ transactions

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` against one consistent snapshot on a free reader connection."""
        worker = await self._readers.get()
        try:
            return await worker.run(lambda c: _in_read_tx(c, fn))
        finally:
            self._readers.put_nowait(worker)

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` as one transaction under the write lock; commit, or roll back everything on error."""
        if self._writer is None:
            raise RuntimeError("the catalog is closed")
        result, appended = await self._writer.run(lambda c: self._in_write_tx(c, fn))
        if appended:
            for listener in self._listeners:
                try:
                    listener(appended)
                except Exception:  # a broken listener must not undo a committed change
                    log.exception("commit listener failed")
        return result

    def _in_write_tx(self, conn: psycopg.Connection[Any], fn: Callable[[WriteTx], T]) -> tuple[T, list[AuditEvent]]:
        tx = PgWriter(PgConnection(conn))
        conn.execute(f"BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})")
        try:
            result = fn(tx)
            if tx.appended:
                self._mark_own(tx.appended)  # before COMMIT: follow() must never see them as someone else's
                conn.execute(f"NOTIFY {CHANNEL}, '{int(tx.appended[-1].id)}'; COMMIT")
            else:
                conn.execute("COMMIT")
        except BaseException:
            self._unmark_own(tx.appended)
            if not conn.broken:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        return result, tx.appended

    def _mark_own(self, rows: list[AuditEvent]) -> None:
        with self._own_lock:
            if len(self._own) > OWN_LIMIT:  # nobody follows (a CLI, a test): forget the oldest
                for key in sorted(self._own)[: OWN_LIMIT // 2]:
                    del self._own[key]
            self._own.update((r.id, r.hash) for r in rows)

    def _unmark_own(self, rows: list[AuditEvent]) -> None:
        with self._own_lock:
            for r in rows:
                if self._own.get(r.id) == r.hash:
                    del self._own[r.id]

    async def execute_raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement on the writer (maintenance and tests)."""
        assert self._writer is not None
        return await self._writer.run(lambda c: PgConnection(c).execute(sql, params).fetchall())

    # ------------------------------------------------------------------ other daemons' changes

    async def follow(self) -> None:
        """LISTEN for other daemons' commits and hand their audit rows to the remote listeners."""
        delay = 0.5
        while True:
            listener = _Worker(self._dsn, "regd-pg-listen")
            try:
                await listener.run(lambda c: c.execute(f"LISTEN {CHANNEL}"))
                delay = 0.5
                await self._catch_up()
                polled = asyncio.get_running_loop().time()
                while True:
                    payloads = await listener.run(_wait_for_notifications)
                    now = asyncio.get_running_loop().time()
                    if payloads:
                        await self._catch_up(payloads)
                    elif now - polled >= POLL_S:
                        polled = now
                        await self._catch_up()
            except psycopg.Error as exc:
                log.warning("following other daemons' changes: %s; retrying in %.0f s", str(exc).strip(), delay)
            finally:
                with contextlib.suppress(Exception):
                    await listener.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _catch_up(self, payloads: list[str] | None = None) -> None:
        """Deliver every row after the last one seen that this daemon did not write."""
        if payloads is not None:
            newest = max((int(p) for p in payloads if p.isdigit()), default=None)
            if newest is not None and newest <= self._last_seen:
                return
            if newest is not None and self._all_own(newest):
                return  # our own notification: nothing to read
        while True:
            rows = await self.read(lambda r, after=self._last_seen: r.audit_chain(after, CATCH_UP_BATCH))
            if not rows:
                return
            self._last_seen = rows[-1].id
            with self._own_lock:
                remote = [r for r in rows if self._own.pop(r.id, None) != r.hash]
            if remote:
                for listener in self._remote:
                    try:
                        listener(remote)
                    except Exception:
                        log.exception("remote commit listener failed")
            if len(rows) < CATCH_UP_BATCH:
                return

    def _all_own(self, newest: int) -> bool:
        """True (and those rows passed) when every row up to ``newest`` not yet seen is this daemon's."""
        with self._own_lock:
            ids = range(self._last_seen + 1, newest + 1)
            if not all(i in self._own for i in ids):
                return False
            for i in ids:
                del self._own[i]
        self._last_seen = newest
        return True


def _wait_for_notifications(conn: psycopg.Connection[Any]) -> list[str]:
    """The payloads of the notifications that arrive within ``WAIT_S`` (short, so a cancelled follow
    lets go of its thread quickly), with any already queued behind the first: when several daemons
    write at once, one read catches up with all of them."""
    got = [n.payload for n in conn.notifies(timeout=WAIT_S, stop_after=1)]
    if got:
        got += [n.payload for n in conn.notifies(timeout=0.001)]
    return got


def _in_read_tx(conn: psycopg.Connection[Any], fn: Callable[[ReadTx], T]) -> T:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        return fn(PgReader(PgConnection(conn)))
    finally:
        if not conn.broken:
            conn.execute("ROLLBACK")  # nothing to keep; ROLLBACK also ends a transaction a failed query aborted


def _max_audit_id(r: ReadTx) -> int:
    chain = r.audit(model=None, version=None, actor=None, action=None, since=None, limit=1, cursor=None)
    return chain.items[0].id if chain.items else 0
