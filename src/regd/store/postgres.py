"""The team catalog: one PostgreSQL database that many daemons read and write at once.

Same shape as the SQLite catalog: one writer connection and a small pool of readers, each a
synchronous psycopg 3 connection on its own thread (as aiosqlite gives each SQLite connection),
so a transaction body is plain code run in one hop off the event loop. The queries are SQLite's
own, through ``pg_queries``' adapter.

Several daemons writing at once stay correct through narrow transaction-scoped advisory locks
(``pg_write``): a change holds its model's lock from its first look-up of the model, so version
numbering, the single-production invariant (also a unique index), alias moves and rollbacks of one
model never interleave, while changes to different models run side by side; the audit rows are
chained and inserted at the end under the chain lock, held only until the commit. A failed round of
lock waits (a deadlock PostgreSQL broke) is run again. Reads take a ``REPEATABLE READ READ ONLY``
snapshot, as SQLite's WAL readers do.

Watches and what the watcher saw are each daemon's own: rows carry the daemon's ``scope`` (host
name, user), and a daemon reads and writes only its own (several hosts share one catalog).

Each commit with audit rows ``NOTIFY``s ``regd_events`` with its last audit id and its transaction
id; ``follow()`` LISTENs on its own connection while a remote listener wants other daemons' rows (a
subscriber, deploy pointers) and hands them over, telling this daemon's own rows by the transaction
that wrote them. The rows are read back from the audit table, so a missed notification (a dropped
connection) only delays them: the next wake-up, or the poll every ``POLL_S``, catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import psycopg

from regd.domain import AuditEvent
from regd.store.catalog import CommitListener, ReadTx, WriteTx
from regd.store.migrations import migrate_postgres
from regd.store.pg_prepared import Prepared
from regd.store.pg_queries import PgConnection, PgReader, pg_query
from regd.store.pg_write import RETRYABLE, LockingPgWriter, TxConnection
from regd.store.sqlite_read import (  # the one copy of an audit row's shape
    _AUDIT_COLS,
    _audit_event,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

READERS = 2
ATTEMPTS = 5
"""How often a write that lost a deadlock (see ``pg_write``) is tried in all."""
CHANNEL = "regd_events"
POLL_S = 5.0
"""How often ``follow`` looks for rows even without a notification."""
CATCH_UP_BATCH = 500
OWN_LIMIT = 100_000
OWN_LIMIT_UNLISTENED = 1_000
# a daemon that stops between BEGIN and COMMIT (SIGSTOP, a hung NFS read) must not hold a model's
# or the chain's lock for everyone: the server ends such a session, and no write waits on a lock forever
WRITER_SETUP = "SET idle_in_transaction_session_timeout = '60s'; SET lock_timeout = '60s'"


def local_scope() -> tuple[str, str]:
    """This daemon's (host, user): whose watches and ingest rows it reads and writes in a shared catalog."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a container)
        user = str(os.getuid())
    return socket.gethostname(), user


def redacted(url: str) -> str:
    """The URL without its password, for status output and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _settle(answer: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if answer.cancelled():  # the caller stopped waiting (its task was cancelled): nobody to tell
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)


def _hung_up(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server has sent something to an idle connection: when it ends a session it says
    so ("terminating connection ...") and closes the socket, which psycopg notices only on the next
    query, failing it. Checking first (one poll, no round trip) lets that query go out on a new one."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return True


class _Worker:
    """One psycopg connection and the one thread that uses it."""

    def __init__(self, url: str, name: str, setup: str = "", *, own_prepares: bool = False) -> None:
        self._url = url
        self._setup = setup
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: psycopg.Connection[Any] | None = None
        self.prepared = Prepared() if own_prepares else None
        """The statements this worker prepared on its current connection (a new connection has none);
        None on a worker that leaves preparing to psycopg (the readers)."""

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is not None and not (conn.closed or conn.broken) and _hung_up(conn):
            conn.close()  # the server ended it while idle (a restart, pg_terminate_backend, a timeout)
        if conn is None or conn.closed or conn.broken:
            conn = psycopg.connect(self._url, autocommit=True, application_name="regd")
            if self.prepared is not None:
                # psycopg answers a ROLLBACK with DEALLOCATE ALL when it has prepared something
                # itself, which would drop ``prepared``'s statements too: it prepares nothing here
                conn.prepare_threshold = None
                self.prepared = Prepared()
            if self._setup:
                conn.execute(self._setup)  # SET, not connect options: the URL may carry options of its own
            self._conn = conn
        return conn

    async def run(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``fn`` on this worker's thread and connection. The answer comes back with one
        ``call_soon_threadsafe`` (not ``run_in_executor``'s chain of futures and callbacks: a
        measured part of the event loop's work per write)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def job() -> None:
            try:
                result = fn(self._connection())
            except BaseException as exc:  # everything, as concurrent.futures does: the caller re-raises it
                loop.call_soon_threadsafe(_settle, answer, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, answer, result, None)

        self._pool.submit(job)
        return await answer

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

    def __init__(self, url: str, readers: int = READERS, scope: tuple[str, str] | None = None) -> None:
        self._dsn = url
        self.url = redacted(url)
        self.scope = scope or local_scope()
        self._n_readers = readers
        self._writer: _Worker | None = None
        self._readers: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all_readers: list[_Worker] = []
        self._listeners: list[CommitListener] = []
        self._remote: list[CommitListener] = []
        self._wanted: list[Callable[[], bool]] = []
        """Whether the remote listeners want rows now; none does: other daemons' rows are passed over unread."""
        self._own: dict[int, _Own] = {}
        """This daemon's write transactions (by id, as rows' ``xmin`` show it) whose audit rows
        ``follow`` has not passed yet: added before their COMMIT is sent."""
        self._own_lock = threading.Lock()
        self._last_seen = 0
        self._listening = False
        """The follower LISTENs (some remote listener wants rows); when none does it does not even
        receive the notifications: each of n daemons would otherwise wake for every change."""
        self._anchored = False
        """``_last_seen`` is where delivery resumes when the follower next listens (it goes stale while
        it does not): set by ``want_remote_rows``, or by the follower itself when it starts listening."""
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ life cycle

    async def open(self) -> None:
        writer = _Worker(self._dsn, "regd-pg-writer", WRITER_SETUP, own_prepares=True)
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
        self._last_seen = await self.read(_max_audit_id)

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

    def add_commit_listener(
        self, listener: CommitListener, *, remote: bool = False, local: bool = True, wanted: Callable[[], bool] | None = None
    ) -> None:
        if local:
            self._listeners.append(listener)
        if remote:
            self._remote.append(listener)
            self._wanted.append(wanted or (lambda: True))

    def _rows_wanted(self) -> bool:
        return any(w() for w in self._wanted)

    async def want_remote_rows(self) -> None:
        """A remote listener has begun to want rows (a subscriber arrived): every change committed
        after this returns is delivered, even if the follower was not listening."""
        if not (self._listening or self._anchored):
            # where delivery starts, read before the caller goes on: rows committed between this read
            # and the follower's LISTEN are read by the follower after it, later ones are notified
            newest = await self.read(_max_audit_id)
            if not (self._listening or self._anchored):  # nobody anchored meanwhile (an earlier anchor stands)
                self._pass_over(newest)
                self._anchored = True
        self._wake.set()

    # ------------------------------------------------------------------ transactions

    async def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` against one consistent snapshot on a free reader connection."""
        worker = await self._readers.get()
        try:
            return await worker.run(lambda c: _in_read_tx(c, fn, self.scope))
        finally:
            self._readers.put_nowait(worker)

    async def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` as one transaction (see ``pg_write`` for its locks); commit, or roll back everything on error."""
        if self._writer is None:
            raise RuntimeError("the catalog is closed")
        writer = self._writer

        def in_tx(c: psycopg.Connection[Any]) -> tuple[T, list[AuditEvent]]:
            assert writer.prepared is not None  # the writer prepares its own (``open``)
            return self._in_write_tx(c, fn, writer.prepared)

        result, appended = await writer.run(in_tx)
        if appended:
            # on the loop's next pass, in commit order, as the embedded catalog does: the reply to the
            # change goes out first (events and effects are scheduled work anyway)
            asyncio.get_running_loop().call_soon(self._notify, appended)
        return result

    def _notify(self, rows: list[AuditEvent]) -> None:
        for listener in self._listeners:
            try:
                listener(rows)
            except Exception:  # a broken listener must not undo a committed change
                log.exception("commit listener failed")

    def _in_write_tx(
        self, conn: psycopg.Connection[Any], fn: Callable[[WriteTx], T], prepared: Prepared
    ) -> tuple[T, list[AuditEvent]]:
        try:
            for attempt in range(1, ATTEMPTS + 1):
                tx = LockingPgWriter(TxConnection(conn, prepared), self.scope)
                try:
                    result = fn(tx)
                    # the rows are marked ours before COMMIT: follow() must never see them as someone else's
                    appended = tx.commit(CHANNEL, self._mark_own)
                except BaseException as exc:
                    self._unmark_own(tx.conn.txid)
                    if not conn.broken:
                        with contextlib.suppress(psycopg.Error):
                            conn.execute("ROLLBACK")
                    if isinstance(exc, RETRYABLE) and attempt < ATTEMPTS:
                        log.info("write lost a lock wait (%s); running it again", type(exc).__name__)
                        continue
                    if isinstance(exc, psycopg.errors.InvalidSqlStatementName) and attempt < ATTEMPTS:
                        # our prepared statements are gone (DISCARD ALL, a pooler): failed at the first
                        # EXECUTE, so nothing was written; again as text, prepared anew afterwards
                        log.warning("the catalog's prepared statements are gone (%s); preparing them again", exc)
                        prepared.forget()
                        continue
                    raise
                if appended:
                    self._own_committed(tx.conn.txid, appended[-1].id)
                return result, appended
            raise AssertionError("unreachable")
        finally:
            # outside the transaction, after it: what went out as text is prepared for the next ones
            with contextlib.suppress(psycopg.Error):
                prepared.prepare_wanted(conn)

    def _mark_own(self, txid: int, rows: int) -> None:
        with self._own_lock:
            # nobody follows (a CLI, a test) or the follower is not listening: forget the oldest; only
            # the newest can still come back as a notification once it listens again
            limit = OWN_LIMIT if self._listening else OWN_LIMIT_UNLISTENED
            if len(self._own) > limit:
                for key in list(self._own)[: len(self._own) - limit // 2]:
                    del self._own[key]
            self._own[txid] = _Own(rows)

    def _own_committed(self, txid: int | None, last_id: int) -> None:
        with self._own_lock:
            own = self._own.get(txid) if txid is not None else None
            if own is not None:
                own.last_id = last_id

    def _unmark_own(self, txid: int | None) -> None:
        if txid is not None:
            with self._own_lock:
                self._own.pop(txid, None)

    async def execute_raw(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement on the writer (maintenance and tests)."""
        assert self._writer is not None

        def run(c: psycopg.Connection[Any]) -> list[Any]:
            cur = c.execute(pg_query(sql), params)  # ``?`` placeholders, as every query here
            return cur.fetchall() if cur.description is not None else []  # a statement without rows: none

        return await self._writer.run(run)

    # ------------------------------------------------------------------ other daemons' changes

    async def follow(self) -> None:
        """LISTEN for other daemons' commits and hand their audit rows to the remote listeners.

        On an asyncio connection of its own: waiting costs no thread, a notification of this
        daemon's own commit is dropped on the event loop without a query, and another daemon's
        rows are read with one statement. It listens only while a remote listener wants rows (a
        subscriber, deploy pointers): otherwise every daemon of a team would wake for every change
        (n - 1 times each) to throw the rows away.
        """
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, application_name="regd")
                async with conn:
                    delay = 0.5
                    await self._follow_on(conn)
            except psycopg.Error as exc:
                log.warning("following other daemons' changes: %s; retrying in %.0f s", str(exc).strip(), delay)
            finally:
                # not ``_set_listening(False)``: if it was listening, ``_last_seen`` is still where delivery
                # resumes, so the rows committed while it reconnects are read once it listens again
                self._listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _follow_on(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            self._wake.clear()  # with the look at ``wanted``: a wake-up set after this is not lost
            wanted = self._rows_wanted()
            if wanted and not self._listening:
                await conn.execute(f"LISTEN {CHANNEL}")
                self._set_listening(True)
                if not self._anchored:  # at start (deploy pointers), or wanted without ``want_remote_rows``
                    self._pass_over(await _max_id(conn))
                    self._anchored = True
                self._deliver(await self._rows_after_last(conn, None))
            elif not wanted and self._listening:
                self._set_listening(False)  # before the await: a subscriber arriving meanwhile anchors anew
                await conn.execute(f"UNLISTEN {CHANNEL}")
            if self._listening:
                # a poll every POLL_S even without a notification: a missed one only delays rows.
                # No waiting for more: a read takes every row committed by then, and the
                # notifications of those rows that come after it are passed over unread.
                payloads = [n.payload async for n in conn.notifies(timeout=POLL_S, stop_after=1)]
                self._deliver(await self._rows_after_last(conn, payloads or None))
            else:
                # nobody wants other daemons' rows: sleep until someone does (``want_remote_rows``)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), POLL_S)

    def _set_listening(self, on: bool) -> None:
        self._listening = on
        if not on:
            self._anchored = False

    def _deliver(self, remote: list[AuditEvent]) -> None:
        if not remote:
            return
        for listener in self._remote:
            try:
                listener(remote)
            except Exception:
                log.exception("remote commit listener failed")

    async def _rows_after_last(self, conn: psycopg.AsyncConnection[Any], payloads: list[str] | None) -> list[AuditEvent]:
        """Every row after the last one seen that this daemon did not write."""
        if payloads is not None:
            newest, writer = _newest(payloads)
            if newest is not None and newest <= self._last_seen:
                return []
            if newest is not None and self._all_own(newest, writer):
                return []  # our own notification: nothing to read
            if newest is not None and not self._rows_wanted():
                # nobody wants them any more (the last subscriber left): the notification says how far
                # the chain got, so no query; the follower stops listening next
                self._pass_over(newest)
                return []
        remote: list[AuditEvent] = []
        while True:
            cur = await conn.execute(_AUDIT_AFTER, (self._last_seen, CATCH_UP_BATCH))
            rows = await cur.fetchall()
            if not rows:
                return remote
            self._last_seen = int(rows[-1][0])
            with self._own_lock:
                remote += [_audit_event(r[:-1]) for r in rows if not self._passed_own(int(r[-1]))]
            if len(rows) < CATCH_UP_BATCH:
                return remote

    def _passed_own(self, xmin: int) -> bool:
        """Whether a row read is one of this daemon's (counted off its transaction's; under the lock)."""
        own = self._own.get(xmin)
        if own is None:
            return False
        own.rows -= 1
        if own.rows <= 0:
            del self._own[xmin]
        return True

    def _pass_over(self, newest: int) -> None:
        """Count every row up to ``newest`` as seen without reading it (our own marks included)."""
        with self._own_lock:
            for key in [k for k, o in self._own.items() if o.last_id is not None and o.last_id <= newest]:
                del self._own[key]
        self._last_seen = max(self._last_seen, newest)

    def _all_own(self, newest: int, writer: int | None) -> bool:
        """True (and those rows passed) when every row up to ``newest`` not yet seen is this daemon's:
        the notification names one of its transactions, and that one appended exactly those rows."""
        if writer is None:
            return False
        with self._own_lock:
            own = self._own.get(writer)
            if own is None or newest - own.rows != self._last_seen:
                return False
            del self._own[writer]
        self._last_seen = newest
        return True


class _Own:
    """One of this daemon's write transactions, as ``follow`` needs it."""

    __slots__ = ("last_id", "rows")

    def __init__(self, rows: int) -> None:
        self.rows = rows
        """Its audit rows ``follow`` has not passed yet."""
        self.last_id: int | None = None
        """Its last row's id, once its COMMIT has answered."""


def _newest(payloads: list[str]) -> tuple[int | None, int | None]:
    """The newest row a batch of notifications names, and the transaction that wrote it. A payload
    is ``"<audit id> <transaction id>"`` (an older regd sent the id alone: no writer named)."""
    newest: int | None = None
    writer: int | None = None
    for payload in payloads:
        parts = payload.split()
        if not parts or not parts[0].isdigit():
            continue
        row = int(parts[0])
        if newest is None or row > newest:
            newest = row
            writer = int(parts[1]) if len(parts) == 2 and parts[1].isdigit() else None
    return newest, writer


async def _max_id(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT coalesce(max(id), 0) FROM audit")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def _in_read_tx(conn: psycopg.Connection[Any], fn: Callable[[ReadTx], T], scope: tuple[str, str]) -> T:
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        reader = PgReader(PgConnection(conn))
        reader.scope = scope
        return fn(reader)
    finally:
        if not conn.broken:
            # nothing to keep, and COMMIT also ends a transaction a failed query aborted; not ROLLBACK,
            # which makes psycopg drop the statements it prepared (its plans cache on readers too)
            conn.execute("COMMIT")


# xmin: the transaction that wrote the row, which tells this daemon's own rows from others'
_AUDIT_AFTER = f"SELECT {_AUDIT_COLS}, xmin::text::bigint FROM audit WHERE id > %s ORDER BY id LIMIT %s"


def _max_audit_id(r: ReadTx) -> int:
    chain = r.audit(model=None, version=None, actor=None, action=None, since=None, limit=1, cursor=None)
    return chain.items[0].id if chain.items else 0
