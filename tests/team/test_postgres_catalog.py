"""The registry's behaviours over a PostgreSQL catalog: the SQLite integration tests, run again.

``daemon_factory`` is overridden here so that every daemon those tests start uses a fresh
PostgreSQL database; the tests themselves are imported unchanged.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_lifecycle import *  # noqa: F403 - the same tests, another catalog
from tests.integration.test_registry import *  # noqa: F403


@pytest.fixture
def daemon_factory(daemon_factory, pg_server):  # type: ignore[no-untyped-def]
    def make(extra_config: str = "", start: bool = True, sub: str = "d"):  # type: ignore[no-untyped-def]
        url = pg_server.create_database()
        handle = daemon_factory(f'catalog = "{url}"\n{extra_config}', start=False, sub=sub)
        handle.catalog_url = url
        if start:
            handle.start()
        return handle

    return make


@pytest.mark.skip(reason="checks a path inside the data dir using registry.db, which a PostgreSQL daemon has not got")
def test_bad_paths_are_refused_with_clear_messages() -> None: ...


def test_the_audit_log_refuses_edits_and_verify_finds_them(client, daemon, tmp_path):  # type: ignore[no-untyped-def]
    import psycopg

    client.register(weights(tmp_path / "a.safetensors", 0), name="m")  # noqa: F405
    client.register(weights(tmp_path / "b.safetensors", 1), name="m")  # noqa: F405
    with psycopg.connect(daemon.catalog_url, autocommit=True) as db:
        for statement in ("UPDATE audit SET actor = 'mallory' WHERE id = 1", "DELETE FROM audit WHERE id = 1",
                          "TRUNCATE audit"):  # fmt: skip
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                db.execute(statement)
        # someone who disables the trigger can edit a row, but the chain shows it
        db.execute("ALTER TABLE audit DISABLE TRIGGER audit_no_update")
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    result = client.call("audit.verify")
    assert not result["ok"] and result["first_broken"] == 1


def test_a_read_only_or_lost_database_is_a_storage_error_and_the_daemon_recovers(client, daemon, tmp_path):  # type: ignore[no-untyped-def]
    """PostgreSQL's own refusals (a standby, a read-only database, a dropped connection) are -32002
    naming the cause, never -32603; reads go on, and writes work again once the database does."""
    import psycopg

    from regd.errors import StorageError

    client.register(weights(tmp_path / "a.safetensors", 0), name="m")  # noqa: F405
    db_name = daemon.catalog_url.rsplit("/", 1)[1]
    admin_url = daemon.catalog_url.rsplit("/", 1)[0] + "/postgres"

    def drop_regd_connections(admin: psycopg.Connection) -> None:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND application_name = 'regd'",
                      (db_name,))  # fmt: skip

    def tag(value: str) -> StorageError | None:
        try:
            client.tag("m", "1.0.0", set={"k": value})
        except StorageError as exc:
            return exc
        return None

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {db_name} SET default_transaction_read_only = on")
        drop_regd_connections(admin)
        time.sleep(0.2)  # the server's goodbye reaches the daemon's idle connections
        # the dropped connections are noticed before use: every call meets the read-only database itself
        assert client.version("m", "1.0.0").tags == {} and client.version("m", "1.0.0").tags == {}  # reads answer
        refusals = [tag(str(i)) for i in range(3)]
        assert all(r is not None and r.code == -32002 and r.data["storage"] == "read_only" for r in refusals), refusals
        assert "read-only" in refusals[0].message and "nothing was changed" in refusals[0].message
        admin.execute(f"ALTER DATABASE {db_name} SET default_transaction_read_only = off")
        drop_regd_connections(admin)
        time.sleep(0.2)
    assert tag("back") is None and client.version("m", "1.0.0").tags == {"k": "back"}
    assert client.call("audit.verify")["ok"]


def test_postgresql_failures_map_to_storage_errors_by_sqlstate() -> None:
    import psycopg

    from regd.store.failures import storage_error

    def kind(exc: Exception) -> str | None:
        mapped = storage_error(exc, Path("/data"), catalog_url="postgresql://h/db")
        return None if mapped is None else mapped.data["storage"]

    assert kind(psycopg.errors.DiskFull("could not extend file")) == "no_space"
    assert kind(psycopg.errors.OutOfMemory("out of memory")) == "insufficient_resources"
    assert kind(psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT")) == "read_only"
    assert kind(psycopg.errors.InsufficientPrivilege("permission denied for table tags")) == "permission_denied"
    assert kind(psycopg.errors.AdminShutdown("terminating connection")) == "unreachable"
    assert kind(psycopg.OperationalError("server closed the connection unexpectedly")) == "unreachable"
    # a bug stays a bug (-32603, logged), not a storage failure
    assert kind(psycopg.errors.UndefinedColumn("column x does not exist")) is None
    assert kind(psycopg.errors.UniqueViolation("duplicate key")) is None
