"""Changes to the SQLite catalog (the ``WriteTx`` side), run inside the writer's one transaction."""

from __future__ import annotations

import json
import math
import zlib
from typing import Any

from regd.domain import AuditEvent, Stage, WatchSpec
from regd.errors import Conflict, NotFound
from regd.store import auditchain
from regd.store.catalog import AuditDraft, VersionDraft, VersionRow
from regd.store.sqlite_read import SQLiteReader
from regd.store.times import now_us, to_dt


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _param_columns(value: Any) -> tuple[str, str, float | None]:
    """A param as stored: its JSON, the text filters compare, and its number if it is one."""
    text = value if isinstance(value, str) else _dumps(value)
    num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if num is not None and not math.isfinite(num):
        num = None
    return _dumps(value), text, num


class SQLiteWriter(SQLiteReader):
    """The write primitives; ``appended`` collects the audit rows for the commit listeners."""

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.appended: list[AuditEvent] = []
        self._touched: set[int] = set()

    # ------------------------------------------------------------------ models

    def ensure_model(self, name: str, actor: str) -> int:
        r = self._one("SELECT id FROM models WHERE name = ?", (name,))
        if r is not None:
            return int(r[0])
        now = now_us()
        cur = self.conn.execute(
            "INSERT INTO models (name, created_at, created_by, updated_at) VALUES (?, ?, ?, ?)", (name, now, actor, now)
        )
        return int(cur.lastrowid)

    def _touch(self, model_id: int) -> None:
        if model_id in self._touched:
            return  # once per transaction: a promotion changes two versions of one model
        self._touched.add(model_id)
        self.conn.execute("UPDATE models SET updated_at = ? WHERE id = ?", (now_us(), model_id))

    def deprecate(self, model_id: int, reason: str) -> None:
        self.conn.execute("UPDATE models SET deprecated = 1, deprecated_reason = ? WHERE id = ?", (reason, model_id))
        self._touch(model_id)

    # ------------------------------------------------------------------ versions

    def insert_version(self, model_id: int, semver: tuple[int, int, int], d: VersionDraft) -> int:
        major, minor, patch = semver
        now = now_us()
        if d.env_lock is not None:
            self.conn.execute(
                "INSERT INTO env_locks (digest, kind, source, packages) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (d.env_lock.digest, d.env_lock.kind, d.env_lock.source, _dumps(d.env_lock.packages)),
            )
        try:
            cur = self.conn.execute(
                "INSERT INTO versions (model_id, major, minor, patch, version, digest, size, kind, format, stored_path, "
                "source_path, store_mode, description, signature_digest, run_id, code_sha, data_version, parent, "
                "env_lock_digest, warnings, created_at, created_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    model_id, major, minor, patch, f"{major}.{minor}.{patch}", d.digest, d.size, d.kind, d.format,
                    d.stored_path, d.source_path, d.store_mode, d.description, d.signature_digest, d.run_id,
                    d.code_sha, d.data_version, d.parent, d.env_lock.digest if d.env_lock else None,
                    _dumps([w.model_dump() for w in d.warnings]), now, d.created_by,
                ),  # fmt: skip
            )
        except Exception as exc:  # sqlite3.IntegrityError or psycopg's UniqueViolation: kept generic
            if "UNIQUE" in str(exc).upper():
                raise Conflict(f"{d.name} {major}.{minor}.{patch} already exists", {"name": d.name}) from exc
            raise
        vid = int(cur.lastrowid)
        tensors = zlib.compress(_dumps([t.model_dump(exclude_none=True) for t in d.tensors]).encode(), 6) if d.tensors else None
        self.conn.execute(
            "INSERT INTO version_details (version_id, signature, files, git, runtime, format_metadata, unsafe_imports, "
            "tensors) VALUES (?,?,?,?,?,?,?,?)",
            (
                vid,
                d.signature.model_dump_json() if d.signature else None,
                _dumps([f.model_dump() for f in d.files]),
                d.git.model_dump_json() if d.git else None,
                d.runtime.model_dump_json() if d.runtime else None,
                _dumps(d.format_metadata),
                _dumps(d.unsafe_imports),
                tensors,
            ),
        )
        if d.kind == "directory":
            self.conn.executemany(
                "INSERT INTO version_files (version_id, path, digest, size) VALUES (?, ?, ?, ?)",
                [(vid, f.path, f.digest, f.size) for f in d.files],
            )
        self.conn.executemany(
            "INSERT INTO metrics (version_id, key, value) VALUES (?, ?, ?)", [(vid, k, v) for k, v in d.metrics.items()]
        )
        self.conn.executemany(
            "INSERT INTO params (version_id, key, value, text, num) VALUES (?, ?, ?, ?, ?)",
            [(vid, k, *_param_columns(v)) for k, v in d.params.items()],
        )
        self.conn.executemany(
            "INSERT INTO tags (version_id, key, value) VALUES (?, ?, ?)", [(vid, k, v) for k, v in d.tags.items()]
        )
        self._touch(model_id)
        return vid

    def set_tags(self, version_id: int, set_: dict[str, str], remove: list[str]) -> None:
        self.conn.executemany("DELETE FROM tags WHERE version_id = ? AND key = ?", [(version_id, k) for k in remove])
        self.conn.executemany(
            "INSERT INTO tags (version_id, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (version_id, key) DO UPDATE SET value = excluded.value",
            [(version_id, k, v) for k, v in set_.items()],
        )
        self._touch(self.row_by_id(version_id).model_id)

    def set_stage(self, row: VersionRow, to: Stage, *, action: str, actor: str, reason: str | None) -> None:
        self.conn.execute("UPDATE versions SET stage = ? WHERE id = ?", (to.value, row.id))
        self.conn.execute(
            "INSERT INTO stage_history (model_id, version_id, from_stage, to_stage, action, actor, at, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row.model_id, row.id, row.stage.value, to.value, action, actor, now_us(), reason),
        )
        self._touch(row.model_id)

    def mark_rolled_back(self, version_id: int, value: bool = True) -> None:
        self.conn.execute("UPDATE versions SET rolled_back = ? WHERE id = ?", (int(value), version_id))

    def mark_pruned(self, version_id: int) -> None:
        self.conn.execute("UPDATE versions SET pruned_at = ? WHERE id = ?", (now_us(), version_id))

    def add_approval(self, version_id: int, approver: str, note: str | None) -> bool:
        cur = self.conn.execute(
            "INSERT INTO approvals (version_id, approver, at, note) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (version_id, approver, now_us(), note),
        )
        return cur.rowcount == 1

    # ------------------------------------------------------------------ aliases

    def set_alias(self, model_id: int, alias: str, version_id: int, actor: str, reason: str | None) -> int | None:
        prev = self._one("SELECT version_id FROM aliases WHERE model_id = ? AND alias = ?", (model_id, alias))
        now = now_us()
        self.conn.execute(
            "INSERT INTO aliases (model_id, alias, version_id, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (model_id, alias) DO UPDATE SET version_id = excluded.version_id, updated_at = excluded.updated_at",
            (model_id, alias, version_id, now),
        )
        self.conn.execute(
            "INSERT INTO alias_history (model_id, alias, from_version_id, to_version_id, actor, at, reason) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (model_id, alias, prev[0] if prev else None, version_id, actor, now, reason),
        )
        self._touch(model_id)
        return int(prev[0]) if prev else None

    def delete_alias(self, model_id: int, alias: str, actor: str, reason: str | None) -> int:
        prev = self._one("SELECT version_id FROM aliases WHERE model_id = ? AND alias = ?", (model_id, alias))
        if prev is None:
            raise NotFound(f"no alias {alias!r} on this model", {"alias": alias})
        self.conn.execute("DELETE FROM aliases WHERE model_id = ? AND alias = ?", (model_id, alias))
        self.conn.execute(
            "INSERT INTO alias_history (model_id, alias, from_version_id, to_version_id, actor, at, reason) "
            "VALUES (?, ?, ?, NULL, ?, ?, ?)",
            (model_id, alias, prev[0], actor, now_us(), reason),
        )
        self._touch(model_id)
        return int(prev[0])

    # ------------------------------------------------------------------ watches

    def add_watch(self, spec: WatchSpec) -> None:
        self.conn.execute(
            "INSERT INTO watches (host, owner, path, spec) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (host, owner, path) DO UPDATE SET spec = excluded.spec",
            (*self.scope, spec.path, spec.model_dump_json()),
        )

    def remove_watch(self, path: str) -> bool:
        cur = self.conn.execute("DELETE FROM watches WHERE host = ? AND owner = ? AND path = ?", (*self.scope, path))
        return cur.rowcount == 1

    def mark_seen(self, path: str, size: int, mtime_ns: int, inode: int, digest: str | None, outcome: str,
                  detail: str | None) -> None:  # fmt: skip
        self.conn.execute(
            "INSERT INTO ingest_seen (host, owner, path, size, mtime_ns, inode, digest, outcome, detail, at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (host, owner, path) DO UPDATE SET size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, inode = excluded.inode, digest = excluded.digest, "
            "outcome = excluded.outcome, detail = excluded.detail, at = excluded.at",
            (*self.scope, path, size, mtime_ns, inode, digest, outcome, detail, now_us()),
        )

    # ------------------------------------------------------------------ audit

    def append_audit(self, draft: AuditDraft) -> AuditEvent:
        # the chain's tail: this transaction's own last row when it already appended one (a promotion
        # appends two), else the table's; the writer holds the write lock, so nobody appends in between
        tail = self.appended[-1] if self.appended else None
        last = (tail.id, tail.hash) if tail else self._one("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1")
        prev_hash = last[1] if last else auditchain.GENESIS
        row_id = (last[0] if last else 0) + 1
        at = now_us()
        content = auditchain.content_of(
            id=row_id, at=at, actor=draft.actor, action=draft.action, model=draft.model, version=draft.version,
            from_=draft.from_, to=draft.to, reason=draft.reason, details=draft.details,
        )  # fmt: skip
        digest = auditchain.row_hash(prev_hash, content)
        self.conn.execute(
            "INSERT INTO audit (id, at, actor, action, model, version, from_value, to_value, reason, details, "
            "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (row_id, at, draft.actor, draft.action, draft.model, draft.version, draft.from_, draft.to, draft.reason,
             _dumps(draft.details), prev_hash, digest),  # fmt: skip
        )
        event = AuditEvent(
            id=row_id, at=to_dt(at), actor=draft.actor, action=draft.action, model=draft.model, version=draft.version,
            from_=draft.from_, to=draft.to, reason=draft.reason, details=draft.details, prev_hash=prev_hash, hash=digest,
        )  # fmt: skip
        self.appended.append(event)
        return event
