"""The registry's behaviours over a PostgreSQL catalog: the SQLite integration tests, run again.

``daemon_factory`` is overridden here so that every daemon those tests start uses a fresh
PostgreSQL database; the tests themselves are imported unchanged.
"""

from __future__ import annotations

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
