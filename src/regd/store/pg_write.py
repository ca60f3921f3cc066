"""Write transactions on the shared PostgreSQL catalog: narrow locks, and the audit chain at the end.

Several daemons write one catalog at once. What must not interleave is per model (version numbering,
the single production version, alias moves, rollback's reading of the stage history) and the audit
hash chain (each row hashes the one before). So instead of one lock for every write (issue 9: four
daemons queued behind each other), a transaction takes:

* the model's lock, ``pg_advisory_xact_lock(MODEL_SPACE, hash of the name)``, the first time it looks
  a model up by name (every lifecycle change does so before reading anything of that model), so
  what it then reads is what the previous holder committed (READ COMMITTED: each statement sees the
  latest commits). Changes to different models run side by side; two names that share a hash only
  queue. A change that touches versions without naming a model (gc's pruning) takes the catalog's
  lock alone, ``GLOBAL``, which every model lock holds shared.
* the chain lock, only at the end: ``append_audit`` keeps its drafts, and ``commit`` sends, in one
  message, ``CHAIN``'s lock, the new rows (each INSERT takes the last row's id and hash and the
  server hashes the row after them), the NOTIFY and the COMMIT. Audit ids therefore commit in
  order, which ``follow`` relies on.

Locks are always taken in the order GLOBAL (shared) -> models -> CHAIN; a change naming two models
could still meet another naming them the other way round: PostgreSQL then aborts one with a
deadlock error, and the catalog runs it again (``RETRYABLE``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg

from regd.domain import AuditEvent, Stage, Version
from regd.store import auditchain
from regd.store.catalog import AuditDraft, VersionDraft, VersionRow
from regd.store.pg_prepared import Prepared
from regd.store.pg_queries import (
    PgConnection,
    PgCursor,
    PgWriter,
    nul_refused,
    with_returning_id,
)
from regd.store.times import now_us, to_dt

GLOBAL = 0x7265_6764_0002
"""The catalog-wide lock ('regd' 2): held shared by every model lock, alone by changes that name no model."""
CHAIN = 0x7265_6764_0003
"""The audit chain's lock ('regd' 3), held from reading the last row to the commit."""
MODEL_SPACE = 0x7265_6764
"""The first key of the two-key advisory locks of models (a key space apart from the one-key locks)."""
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_TXID = "SELECT txid_current() % 4294967296"
"""The transaction's id as ``xmin`` shows it (32 bits; ``txid_current`` counts wraparounds too)."""


@functools.lru_cache(maxsize=4096)
def model_key(name: str) -> int:
    """A model name's lock key: a signed 32-bit hash (the same on every host and Python)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big", signed=True)


class TxConnection(PgConnection):
    """A connection that sends what is ``pending`` in the same round trip as the next query.

    Pending are statements nothing waits on: BEGIN, lock calls, and inside ``deferring()`` the writes
    whose outcome nobody reads (a stage change's UPDATEs and history row, a version's details,
    metrics, tags ...). One simple-protocol message carries them all, in order, with the next query
    or the COMMIT; an error in any of them fails that message, and the transaction rolls back as a
    whole. Each statement in it is rendered by ``pg_prepared``: an EXECUTE of the connection's
    prepared plan once it has one. Not psycopg's pipeline mode: it polls the socket while the server
    works, spinning a CPU through a lock wait.
    """

    def __init__(self, raw: Any, prepared: Prepared) -> None:
        super().__init__(raw)
        self.prepared = prepared
        self.begun = False
        self.pending: list[str] = ["BEGIN", self.render(_TXID)]
        self._untouched = list(self.pending)
        self.txid: int | None = None
        """This transaction's id as a row's ``xmin`` shows it, read with the first message: how the
        daemon's follower tells the audit rows this daemon wrote from other daemons' (``postgres``)."""
        self._defer: str | None = None  # None, "all", or "keep_ids": an INSERT whose id is wanted runs now

    @contextlib.contextmanager
    def deferring(self, *, keep_ids: bool = False) -> Iterator[None]:
        """Queue the writes made inside (a SELECT still runs at once, carrying them)."""
        outer, self._defer = self._defer, "keep_ids" if keep_ids else "all"
        try:
            yield
        finally:
            self._defer = outer

    def _deferred(self, sql: str) -> bool:
        if self._defer is None or sql.lstrip()[:6].upper() == "SELECT":
            return False
        return not (self._defer == "keep_ids" and with_returning_id(sql))

    def render(self, sql: str, params: Sequence[Any] = ()) -> str:
        """One statement of a message, its values in it (``?`` placeholders)."""
        return self.prepared.render(self.raw, sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> PgCursor:
        if self._deferred(sql):
            self.pending.append(self.render(sql, params))
            return _NO_RESULT
        returning = with_returning_id(sql)
        return PgCursor(self.send([self.render(returning or sql, params)]), returning is not None)

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> None:
        rows = [self.render(sql, row) for row in seq]
        if self._deferred(sql):
            self.pending.extend(rows)
        elif rows:
            self.send(rows)

    def queue_select(self, exprs: str, params: Sequence[Any]) -> None:
        """Queue ``SELECT exprs`` (lock calls): in the transaction id's statement while nothing else is
        queued, a statement fewer for the server to run."""
        if self.pending == self._untouched:
            self.pending[1] = self.render(f"{_TXID}, {exprs}", params)
        else:
            self.pending.append(self.render(f"SELECT {exprs}", params))

    @property
    def untouched(self) -> bool:
        """Nothing sent, nothing queued: the transaction has not begun."""
        return not self.begun and self.pending == self._untouched

    def flush(self, then: str = "") -> None:
        """Send what is pending now (and ``then``, a statement without parameters)."""
        if self.pending or then:
            self.send([then] if then else [])

    def send(self, statements: list[str]) -> Any:
        """Send the pending statements and then ``statements`` (rendered) in one message; the
        cursor, at the result of the first of ``statements``."""
        cur = psycopg.ClientCursor(self.raw)
        skip = len(self.pending)
        try:
            cur.execute("; ".join([*self.pending, *statements]))  # no parameters: a literal % stays one
        except psycopg.DataError as exc:
            raise nul_refused(exc) from exc
        finally:
            self.begun = True  # even a failed send may have begun the transaction: the caller rolls back
            self.pending.clear()
        for i in range(skip):
            if i == 1 and self.txid is None:  # BEGIN's result comes first, then this one's
                self.txid = int(cur.fetchone()[0])
            cur.nextset()
        return cur


class _NoResult(PgCursor):
    """What a deferred statement returns: no rows, no count, no id."""

    def __init__(self) -> None:
        self.lastrowid = None

    @property
    def rowcount(self) -> int:
        raise RuntimeError("a deferred statement has no row count yet")

    def fetchone(self) -> Any:
        raise RuntimeError("a deferred statement has no rows")

    def fetchall(self) -> list[Any]:
        raise RuntimeError("a deferred statement has no rows")


_NO_RESULT = _NoResult()


class LockingPgWriter(PgWriter):
    """``WriteTx`` on the shared catalog: takes the model's lock before reading it, defers the audit rows."""

    def __init__(self, conn: TxConnection, scope: tuple[str, str]) -> None:
        super().__init__(conn)
        self.conn: TxConnection = conn
        self.scope = scope
        self._models: set[int] = set()
        self._global = False
        self._drafts: list[AuditDraft] = []

    # ------------------------------------------------------------------ locks

    def lock_model(self, name: str) -> None:
        """Hold ``name``'s lock (and the catalog lock, shared) until the transaction ends: taken with
        the next statement, in its round trip (the look-up by name that follows)."""
        key = model_key(name)
        if key in self._models:
            return
        if self._models or self._global:
            self.conn.queue_select("pg_advisory_xact_lock(?, ?)", (MODEL_SPACE, key))
        else:  # in this order: the catalog's (shared), then the model's
            self.conn.queue_select("pg_advisory_xact_lock_shared(?), pg_advisory_xact_lock(?, ?)", (GLOBAL, MODEL_SPACE, key))
        self._models.add(key)

    def lock_catalog(self) -> None:
        """Hold the catalog-wide lock alone: no model changes meanwhile (on any daemon)."""
        if self._global:
            return
        if self._models:
            raise RuntimeError("a change that holds a model's lock cannot take the catalog lock (lock order)")
        self.conn.flush(f"SELECT pg_advisory_xact_lock({GLOBAL})")
        self._global = True

    # the lookups by name every change starts with

    def ensure_model(self, name: str, actor: str) -> int:
        self.lock_model(name)
        return super().ensure_model(name, actor)

    def model_id(self, name: str) -> int:
        self.lock_model(name)
        return super().model_id(name)

    def row(self, name: str, ref: str) -> VersionRow:
        self.lock_model(name)
        return super().row(name, ref)

    def model(self, name: str) -> Any:
        self.lock_model(name)
        return super().model(name)

    def promotion_subject(self, name: str, ref: str) -> tuple[VersionRow, Version, VersionRow | None]:
        self.lock_model(name)
        return super().promotion_subject(name, ref)

    def _batch(self, queries: list[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """The queries' rows, sent in one message (with whatever is pending)."""
        cur = self.conn.send([self.conn.render(sql, params) for sql, params in queries])
        found = []
        for i in range(len(queries)):
            if i:
                cur.nextset()
            found.append(cur.fetchall())
        return found

    # writes whose outcome nobody reads ride along with the next query (see ``TxConnection``)

    def insert_version(self, model_id: int, semver: tuple[int, int, int], d: VersionDraft) -> int:
        with self.conn.deferring(keep_ids=True):
            return super().insert_version(model_id, semver, d)

    def set_stage(self, row: VersionRow, to: Stage, *, action: str, actor: str, reason: str | None) -> None:
        with self.conn.deferring():
            super().set_stage(row, to, action=action, actor=actor, reason=reason)

    def mark_rolled_back(self, version_id: int, value: bool = True) -> None:
        with self.conn.deferring():
            super().mark_rolled_back(version_id, value)

    def set_tags(self, version_id: int, set_: dict[str, str], remove: list[str]) -> None:
        with self.conn.deferring():
            super().set_tags(version_id, set_, remove)

    def set_alias(self, model_id: int, alias: str, version_id: int, actor: str, reason: str | None) -> int | None:
        with self.conn.deferring():
            return super().set_alias(model_id, alias, version_id, actor, reason)

    def delete_alias(self, model_id: int, alias: str, actor: str, reason: str | None) -> int:
        with self.conn.deferring():
            return super().delete_alias(model_id, alias, actor, reason)

    def deprecate(self, model_id: int, reason: str) -> None:
        with self.conn.deferring():
            super().deprecate(model_id, reason)

    def mark_seen(self, path: str, size: int, mtime_ns: int, inode: int, digest: str | None, outcome: str,
                  detail: str | None) -> None:  # fmt: skip
        with self.conn.deferring():
            super().mark_seen(path, size, mtime_ns, inode, digest, outcome, detail)

    def mark_pruned(self, version_id: int) -> None:
        self.lock_catalog()  # gc prunes across models: no promotion of those versions meanwhile
        super().mark_pruned(version_id)

    # ------------------------------------------------------------------ audit

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        """Keep the row for ``commit``; the event returned is provisional (id 0, no hash yet)."""
        self._drafts.append(draft)
        return AuditEvent(
            id=0, at=to_dt(now_us()), actor=draft.actor, action=draft.action, model=draft.model,
            version=draft.version, from_=draft.from_, to=draft.to, reason=draft.reason, details=draft.details,
            prev_hash="", hash="",
        )  # fmt: skip

    def commit(self, channel: str, mark: Callable[[int, int], None]) -> list[AuditEvent]:
        """Append the kept audit rows to the chain, notify ``channel`` and commit: one round trip.

        The server chains the rows: under the chain lock each INSERT takes the last row's id and hash
        and hashes its own canonical JSON (made here, ``auditchain.around_id``) after them, so the lock
        is held for one message's work and the commit's flush, not across round trips. ``mark`` is
        told the transaction id and how many rows it appends before anything of that is sent.
        """
        if not self._drafts:
            if not self.conn.untouched:
                self.conn.flush("COMMIT")  # with any deferred writes
            return []
        if self.conn.txid is None:
            self.conn.flush()  # BEGIN and the transaction id: marking the rows ours needs it first
        assert self.conn.txid is not None
        mark(self.conn.txid, len(self._drafts))
        at = now_us()
        drafts, self._drafts = self._drafts, []
        inserts = []
        for n, d in enumerate(drafts, 1):
            head, tail = auditchain.around_id(auditchain.content_of(
                id=0, at=at, actor=d.actor, action=d.action, model=d.model, version=d.version,
                from_=d.from_, to=d.to, reason=d.reason, details=d.details,
            ))  # fmt: skip
            values = (at, d.actor, d.action, d.model, d.version, d.from_, d.to, d.reason, _dumps(d.details), head, tail)
            if n < len(drafts):
                inserts.append(self.conn.render(_CHAINED_INSERT, values))
            else:  # the last row notifies: the newest id and who wrote it (see ``postgres.follow``)
                inserts.append(self.conn.render(_CHAINED_INSERT_NOTIFYING, (*values, channel, str(self.conn.txid))))
        cur = self.conn.send([self.conn.render("SELECT pg_advisory_xact_lock(?)", (CHAIN,)), *inserts, "COMMIT"])
        events = []
        for d in drafts:
            cur.nextset()
            row_id, prev_hash, digest = cur.fetchone()[:3]
            events.append(AuditEvent(
                id=row_id, at=to_dt(at), actor=d.actor, action=d.action, model=d.model, version=d.version,
                from_=d.from_, to=d.to, reason=d.reason, details=d.details, prev_hash=prev_hash, hash=digest,
            ))  # fmt: skip
        self.appended.extend(events)
        return events


_CHAINED_INSERT = (
    "INSERT INTO audit (id, at, actor, action, model, version, from_value, to_value, reason, details, prev_hash, hash) "
    "SELECT m.id + 1, ?::bigint, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, ?::text, "
    "coalesce(a.hash, '" + auditchain.GENESIS + "'), "
    "encode(sha256(convert_to(coalesce(a.hash, '" + auditchain.GENESIS + "') || E'\\n' || ?::text || (m.id + 1)::text "
    "|| ?::text, "
    "'UTF8')), 'hex') "
    "FROM (SELECT coalesce(max(id), 0) AS id FROM audit) m LEFT JOIN audit a ON a.id = m.id "
    "RETURNING id, prev_hash, hash"
)
_CHAINED_INSERT_NOTIFYING = _CHAINED_INSERT + ", pg_notify(?, id::text || ' ' || ?)::text"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
