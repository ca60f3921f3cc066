"""The catalog schema as forward-only migrations, numbered by ``PRAGMA user_version``.

Each entry of ``MIGRATIONS`` moves the schema from version ``i`` to ``i + 1`` and is never edited
once released: a database written by any older regd is brought forward step by step, inside one
transaction per step, so a crash mid-migration leaves the previous schema intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the registry core (issue 3)
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT,
        created_at INTEGER NOT NULL,           -- unix microseconds, UTC
        created_by TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        deprecated INTEGER NOT NULL DEFAULT 0,
        deprecated_reason TEXT
    );
    CREATE TABLE env_locks (
        digest TEXT PRIMARY KEY,               -- sha256 of the lock file's bytes (also a blob)
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        packages TEXT NOT NULL                 -- JSON {package: version}
    );
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        major INTEGER NOT NULL,
        minor INTEGER NOT NULL,
        patch INTEGER NOT NULL,
        version TEXT NOT NULL,
        stage TEXT NOT NULL DEFAULT 'none',
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        kind TEXT NOT NULL,
        format TEXT NOT NULL,
        stored_path TEXT NOT NULL,
        source_path TEXT NOT NULL,
        store_mode TEXT NOT NULL,
        description TEXT,
        signature_digest TEXT,
        run_id TEXT NOT NULL,
        code_sha TEXT,
        data_version TEXT,
        parent TEXT,
        env_lock_digest TEXT REFERENCES env_locks(digest),
        warnings TEXT NOT NULL DEFAULT '[]',   -- JSON [{code, message}]
        rolled_back INTEGER NOT NULL DEFAULT 0,
        pruned_at INTEGER,                     -- gc freed the bytes; the row stays for history and lineage
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        UNIQUE (model_id, major, minor, patch),
        UNIQUE (model_id, digest)
    );
    CREATE INDEX versions_model_created ON versions(model_id, id);
    CREATE INDEX versions_stage ON versions(stage, model_id);
    CREATE INDEX versions_digest ON versions(digest);
    CREATE INDEX versions_created_at ON versions(created_at);
    -- the wide, rarely filtered parts of a version, kept out of the rows that lists scan
    CREATE TABLE version_details (
        version_id INTEGER PRIMARY KEY REFERENCES versions(id),
        signature TEXT,
        files TEXT NOT NULL DEFAULT '[]',
        git TEXT,
        runtime TEXT,
        format_metadata TEXT NOT NULL DEFAULT '{}',
        unsafe_imports TEXT NOT NULL DEFAULT '[]',
        tensors BLOB                             -- zlib(JSON [TensorFingerprint])
    );
    CREATE TABLE version_files (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        path TEXT NOT NULL,
        digest TEXT NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (version_id, path)
    ) WITHOUT ROWID;
    CREATE INDEX version_files_digest ON version_files(digest);
    CREATE TABLE metrics (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        key TEXT NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (version_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX metrics_key_value ON metrics(key, value, version_id);
    CREATE TABLE params (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        key TEXT NOT NULL,
        value TEXT NOT NULL,                   -- JSON
        text TEXT NOT NULL,                    -- a string as is, anything else as JSON: what filters compare
        num REAL,                              -- the number, when the value is one
        PRIMARY KEY (version_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX params_key_text ON params(key, text, version_id);
    CREATE INDEX params_key_num ON params(key, num, version_id);
    CREATE TABLE tags (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (version_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX tags_key_value ON tags(key, value, version_id);
    CREATE TABLE aliases (
        model_id INTEGER NOT NULL REFERENCES models(id),
        alias TEXT NOT NULL,
        version_id INTEGER NOT NULL REFERENCES versions(id),
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (model_id, alias)
    );
    CREATE INDEX aliases_version ON aliases(version_id);
    CREATE INDEX aliases_alias ON aliases(alias);
    CREATE TABLE alias_history (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        alias TEXT NOT NULL,
        from_version_id INTEGER REFERENCES versions(id),
        to_version_id INTEGER REFERENCES versions(id),
        actor TEXT NOT NULL,
        at INTEGER NOT NULL,
        reason TEXT
    );
    CREATE INDEX alias_history_model ON alias_history(model_id, id);
    CREATE TABLE stage_history (
        id INTEGER PRIMARY KEY,
        model_id INTEGER NOT NULL REFERENCES models(id),
        version_id INTEGER NOT NULL REFERENCES versions(id),
        from_stage TEXT NOT NULL,
        to_stage TEXT NOT NULL,
        action TEXT NOT NULL,                  -- promote, demote, archive, rollback, rolled_back
        actor TEXT NOT NULL,
        at INTEGER NOT NULL,
        reason TEXT
    );
    CREATE INDEX stage_history_model ON stage_history(model_id, id);
    CREATE INDEX stage_history_version ON stage_history(version_id);
    CREATE TABLE approvals (
        version_id INTEGER NOT NULL REFERENCES versions(id),
        approver TEXT NOT NULL,
        at INTEGER NOT NULL,
        note TEXT,
        PRIMARY KEY (version_id, approver)
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        model TEXT,
        version TEXT,
        from_value TEXT,
        to_value TEXT,
        reason TEXT,
        details TEXT NOT NULL DEFAULT '{}',
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_model ON audit(model, id);
    CREATE INDEX audit_actor ON audit(actor, id);
    CREATE INDEX audit_action ON audit(action, id);
    CREATE INDEX audit_at ON audit(at);
    -- the audit log is append-only: the store itself refuses to rewrite history
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    # 2: auto-registration (issue 4): watches added at runtime, and what the watcher has already
    # handled, so a restart registers what arrived while the daemon was down without rehashing the rest
    """
    CREATE TABLE watches (
        path TEXT PRIMARY KEY,
        spec TEXT NOT NULL                     -- JSON WatchSpec
    );
    CREATE TABLE ingest_seen (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        inode INTEGER NOT NULL,
        digest TEXT,
        outcome TEXT NOT NULL,                 -- registered, known, failed
        detail TEXT,
        at INTEGER NOT NULL
    );
    """,
]

LATEST = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """Read the schema version a database is at."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = LATEST) -> list[int]:
    """Bring the database forward to ``target``, one transaction per step; return the steps run."""
    current = schema_version(conn)
    if current > LATEST:
        raise RuntimeError(
            f"registry.db is at schema {current}, newer than this regd understands ({LATEST}); "
            "upgrade regd instead of downgrading the database"
        )
    done: list[int] = []
    for step in range(current, target):
        # executescript would COMMIT first; run the statements one by one inside our own transaction
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append(step + 1)
    return done


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements (triggers contain semicolons)."""
    text = "\n".join(line.split("--", 1)[0] for line in script.splitlines())  # our scripts quote no "--"
    out: list[str] = []
    start = 0
    for pos, char in enumerate(text):
        if char == ";" and sqlite3.complete_statement(text[start : pos + 1]):
            statement = text[start : pos + 1].strip()
            if statement != ";":
                out.append(statement)
            start = pos + 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return out
