"""The schema migrates forward from empty and from every older version, keeping the data."""

from __future__ import annotations

import sqlite3

import pytest

from regd.store import migrations


def conn(path):
    return sqlite3.connect(path, isolation_level=None)


def test_from_empty_to_latest(tmp_path):
    c = conn(tmp_path / "r.db")
    assert migrations.migrate(c) == list(range(1, migrations.LATEST + 1))
    assert migrations.schema_version(c) == migrations.LATEST
    assert migrations.migrate(c) == []  # idempotent


@pytest.mark.parametrize("start", range(1, migrations.LATEST))
def test_from_every_older_schema_keeping_its_rows(tmp_path, start):
    c = conn(tmp_path / "r.db")
    migrations.migrate(c, target=start)
    c.execute("INSERT INTO models (name, created_at, created_by, updated_at) VALUES ('fraud', 1, 'alice', 1)")
    c.execute(
        "INSERT INTO versions (model_id, major, minor, patch, version, digest, size, kind, format, stored_path, "
        "source_path, store_mode, run_id, created_at, created_by) "
        "VALUES (1, 1, 0, 0, '1.0.0', 'ab', 3, 'file', 'safetensors', '/s', '/src', 'copy', 'r', 1, 'alice')"
    )
    if start >= 2:  # the watcher's tables exist: their rows are kept too, as the embedded store's own
        c.execute("INSERT INTO watches (path, spec) VALUES ('/runs', '{}')")
        c.execute("INSERT INTO ingest_seen (path, size, mtime_ns, inode, digest, outcome, detail, at) "
                  "VALUES ('/runs/m.pt', 3, 1, 7, 'ab', 'registered', NULL, 1)")  # fmt: skip
    assert migrations.migrate(c) == list(range(start + 1, migrations.LATEST + 1))
    assert c.execute("SELECT m.name, v.version FROM versions v JOIN models m ON m.id = v.model_id").fetchall() == [
        ("fraud", "1.0.0")
    ]
    if start >= 2:
        assert c.execute("SELECT host, owner, path, spec FROM watches").fetchall() == [("", "", "/runs", "{}")]
        assert c.execute("SELECT host, owner, path, digest, outcome FROM ingest_seen").fetchall() == [
            ("", "", "/runs/m.pt", "ab", "registered")
        ]


def test_watches_and_seen_rows_are_keyed_by_host_and_owner(tmp_path):
    c = conn(tmp_path / "r.db")
    migrations.migrate(c)
    for host in ("a", "b"):
        c.execute("INSERT INTO watches (host, owner, path, spec) VALUES (?, 'alice', '/runs', '{}')", (host,))
        c.execute("INSERT INTO ingest_seen (host, owner, path, size, mtime_ns, inode, outcome, at) "
                  "VALUES (?, 'alice', '/runs/m.pt', 3, 1, 7, 'failed', 1)", (host,))  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        c.execute("INSERT INTO watches (host, owner, path, spec) VALUES ('a', 'alice', '/runs', '{}')")
    assert c.execute("SELECT count(*) FROM watches WHERE path = '/runs'").fetchone()[0] == 2


def test_a_failing_step_leaves_the_previous_schema(tmp_path, monkeypatch):
    c = conn(tmp_path / "r.db")
    migrations.migrate(c, target=1)
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS[:1], "CREATE TABLE x (a); CREATE TABLE x (b);"])
    with pytest.raises(sqlite3.OperationalError):
        migrations.migrate(c, target=2)
    assert migrations.schema_version(c) == 1
    assert c.execute("SELECT count(*) FROM sqlite_master WHERE name = 'x'").fetchone()[0] == 0


def test_a_newer_database_is_refused(tmp_path):
    c = conn(tmp_path / "r.db")
    c.execute(f"PRAGMA user_version = {migrations.LATEST + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        migrations.migrate(c)


@pytest.mark.parametrize("dialect", migrations.DIALECTS)
@pytest.mark.parametrize("step", range(migrations.LATEST))
def test_every_step_renders_for_both_databases(step, dialect):
    sql = migrations.render(migrations.MIGRATIONS[step], dialect)
    assert not migrations._PLACEHOLDER.search(sql)  # noqa: SLF001 - every placeholder filled
    foreign = {
        "sqlite": ["BIGINT", "BYTEA", "IDENTITY", "plpgsql", 'COLLATE "C"'],
        "postgresql": ["WITHOUT ROWID", "RAISE(ABORT", "INTEGER PRIMARY KEY", " BLOB", " REAL"],
    }[dialect]
    assert not [word for word in foreign if word in sql]


def test_an_unknown_placeholder_is_named():
    with pytest.raises(ValueError, match=r"\{uuid\}"):
        migrations.render("CREATE TABLE t (id {uuid})", "postgresql")


def test_at_most_one_production_version_per_model(tmp_path):
    c = conn(tmp_path / "r.db")
    migrations.migrate(c)
    c.execute("INSERT INTO models (name, created_at, created_by, updated_at) VALUES ('fraud', 1, 'alice', 1)")
    insert = (
        "INSERT INTO versions (model_id, major, minor, patch, version, stage, digest, size, kind, format, stored_path, "
        "source_path, store_mode, run_id, created_at, created_by) "
        "VALUES (1, 1, ?, 0, ?, ?, ?, 3, 'file', 'safetensors', '/s', '/src', 'copy', 'r', 1, 'alice')"
    )
    c.execute(insert, (0, "1.0.0", "production", "a"))
    c.execute(insert, (1, "1.1.0", "archived", "b"))
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        c.execute(insert, (2, "1.2.0", "production", "c"))
    c.execute("UPDATE versions SET stage = 'archived' WHERE version = '1.0.0'")
    c.execute("UPDATE versions SET stage = 'production' WHERE version = '1.1.0'")  # archive first, then promote
