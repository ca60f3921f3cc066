"""The one migration source on PostgreSQL: every step applies, keeps rows, and runs once under races."""

from __future__ import annotations

import threading

import pytest

from regd.store import migrations


@pytest.fixture
def db(pg_url):  # type: ignore[no-untyped-def]
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


def test_from_empty_to_latest_and_idempotent(db) -> None:  # type: ignore[no-untyped-def]
    assert migrations.migrate_postgres(db) == list(range(1, migrations.LATEST + 1))
    assert migrations.postgres_schema_version(db) == migrations.LATEST
    assert migrations.migrate_postgres(db) == []


@pytest.mark.parametrize("start", range(1, migrations.LATEST))
def test_from_every_older_schema_keeping_its_rows(db, start) -> None:  # type: ignore[no-untyped-def]
    migrations.migrate_postgres(db, target=start)
    assert migrations.postgres_schema_version(db) == start
    db.execute("INSERT INTO models (name, created_at, created_by, updated_at) VALUES ('fraud', 1, 'alice', 1)")
    db.execute(
        "INSERT INTO versions (model_id, major, minor, patch, version, digest, size, kind, format, stored_path, "
        "source_path, store_mode, run_id, created_at, created_by) "
        "VALUES (1, 1, 0, 0, '1.0.0', 'ab', 3, 'file', 'safetensors', '/s', '/src', 'copy', 'r', 1, 'alice')"
    )
    if start >= 2:
        db.execute("INSERT INTO watches (path, spec) VALUES ('/runs', '{}')")
        db.execute("INSERT INTO ingest_seen (path, size, mtime_ns, inode, digest, outcome, detail, at) "
                   "VALUES ('/runs/m.pt', 3, 1, 7, 'ab', 'registered', NULL, 1)")  # fmt: skip
    assert migrations.migrate_postgres(db) == list(range(start + 1, migrations.LATEST + 1))
    assert db.execute("SELECT m.name, v.version FROM versions v JOIN models m ON m.id = v.model_id").fetchall() == [
        ("fraud", "1.0.0")
    ]
    if start >= 2:  # kept, with the scope no team daemon reads ('': the migration cannot know whose they were)
        assert db.execute("SELECT host, owner, path, spec FROM watches").fetchall() == [("", "", "/runs", "{}")]
        assert db.execute("SELECT host, owner, path, outcome FROM ingest_seen").fetchall() == [
            ("", "", "/runs/m.pt", "registered")
        ]


def test_daemons_starting_together_migrate_once(pg_url) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    done: list[list[int]] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                done.append(migrations.migrate_postgres(conn))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(step for steps in done for step in steps) == list(range(1, migrations.LATEST + 1))


def test_a_newer_catalog_is_refused(db) -> None:  # type: ignore[no-untyped-def]
    migrations.migrate_postgres(db)
    db.execute("UPDATE regd_schema SET version = %s", (migrations.LATEST + 1,))
    with pytest.raises(RuntimeError, match="newer"):
        migrations.migrate_postgres(db)


def test_one_production_version_per_model_is_the_database_s_rule(db) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    migrations.migrate_postgres(db)
    db.execute("INSERT INTO models (name, created_at, created_by, updated_at) VALUES ('fraud', 1, 'alice', 1)")
    insert = (
        "INSERT INTO versions (model_id, major, minor, patch, version, stage, digest, size, kind, format, stored_path, "
        "source_path, store_mode, run_id, created_at, created_by) "
        "VALUES (1, 1, %s, 0, %s, %s, %s, 3, 'file', 'safetensors', '/s', '/src', 'copy', 'r', 1, 'alice')"
    )
    db.execute(insert, (0, "1.0.0", "production", "a"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(insert, (1, "1.1.0", "production", "b"))
