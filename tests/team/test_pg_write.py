"""The shared catalog's write path: each daemon's own watches, narrow locks, the audit chain at the end."""

from __future__ import annotations

import asyncio
import hashlib

import psycopg
import pytest

from regd.domain import Stage, WatchSpec
from regd.errors import InvalidParams, NotFound
from regd.lifecycle import promotion, registration
from regd.store.catalog import AuditDraft, VersionDraft
from regd.store.pg_prepared import Prepared
from regd.store.pg_write import GLOBAL, MODEL_SPACE, model_key
from regd.store.postgres import PostgresCatalog, _newest


def _draft(name: str, i: int) -> VersionDraft:
    return VersionDraft(name=name, digest=f"{i:064x}", size=3, kind="file", format="safetensors", stored_path="/s",
                        source_path="/src", store_mode="copy", run_id="r", created_by="alice",
                        metrics={"acc": 0.5 + i / 100}, tags={"team": "risk"}, params={"lr": "1%"})  # fmt: skip


async def _open(url: str, scope: tuple[str, str] = ("host-a", "alice")) -> PostgresCatalog:
    catalog = PostgresCatalog(url, scope=scope)
    await catalog.open()
    return catalog


async def test_watches_and_seen_rows_are_each_daemons_own(pg_url) -> None:  # type: ignore[no-untyped-def]
    a = await _open(pg_url, ("host-a", "alice"))
    b = await _open(pg_url, ("host-b", "alice"))
    bob = await _open(pg_url, ("host-a", "bob"))
    try:
        for cat, root in ((a, "/runs"), (b, "/runs"), (b, "/b-only"), (bob, "/bob")):
            await cat.write(lambda tx, root=root: tx.add_watch(WatchSpec(path=root, patterns=["*.pt"])))
            await cat.write(lambda tx, root=root: tx.mark_seen(f"{root}/m.pt", 3, 1, 7, None, "failed", "x"))
        assert [w.path for w in await a.read(lambda r: r.watches())] == ["/runs"]
        assert [w.path for w in await b.read(lambda r: r.watches())] == ["/b-only", "/runs"]
        assert [w.path for w in await bob.read(lambda r: r.watches())] == ["/bob"]
        assert list(await a.read(lambda r: r.seen_under("/runs"))) == ["/runs/m.pt"]
        assert await a.read(lambda r: r.seen_under("/b-only")) == {}
        # removing a root on one host leaves the other host's watch of the same path alone
        assert await a.write(lambda tx: tx.remove_watch("/runs"))
        assert not await a.write(lambda tx: tx.remove_watch("/b-only"))
        assert [w.path for w in await b.read(lambda r: r.watches())] == ["/b-only", "/runs"]
    finally:
        for cat in (a, b, bob):
            await cat.close()


async def test_changes_to_two_models_do_not_wait_for_each_other(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalog = await _open(pg_url)
    try:
        await catalog.write(lambda tx: registration.record(tx, _draft("other", 1), "alice"))
        # another session holds the lock of model "held" (as a daemon mid-promotion would)
        with psycopg.connect(pg_url, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute(f"SELECT pg_advisory_xact_lock({MODEL_SPACE}, {model_key('held')})")
            await asyncio.wait_for(catalog.write(lambda tx: registration.record(tx, _draft("other", 2), "alice")), 10)
            blocked = asyncio.ensure_future(catalog.write(lambda tx: registration.record(tx, _draft("held", 3), "alice")))
            await asyncio.sleep(0.5)
            assert not blocked.done(), "a change to a model went ahead while another daemon held its lock"
            holder.execute("COMMIT")
            version, created = await asyncio.wait_for(blocked, 10)
        assert (version.version, created) == ("1.0.0", True)
    finally:
        await catalog.close()


async def test_gc_pruning_waits_for_every_model_change(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalog = await _open(pg_url)
    try:
        v, _ = await catalog.write(lambda tx: registration.record(tx, _draft("m", 1), "alice"))
        row_id = await catalog.read(lambda r: r.row("m", v.version).id)
        with psycopg.connect(pg_url, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute(f"SELECT pg_advisory_xact_lock_shared({GLOBAL})")  # a model change in flight
            pruning = asyncio.ensure_future(catalog.write(lambda tx: tx.mark_pruned(row_id)))
            await asyncio.sleep(0.5)
            assert not pruning.done()
            holder.execute("COMMIT")
            await asyncio.wait_for(pruning, 10)
    finally:
        await catalog.close()


async def test_the_chain_stays_whole_with_many_writers_and_deferred_writes(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalogs = [await _open(pg_url, (f"host-{i}", "alice")) for i in range(4)]
    try:
        async def work(i: int, cat: PostgresCatalog) -> None:
            for n in range(6):
                name = f"m{n % 2}"  # two models shared by all four: model locks contended, chain lock too
                v, _ = await cat.write(lambda tx, i=i, n=n, name=name: registration.record(tx, _draft(name, i * 100 + n), "alice"))
                await cat.write(lambda tx, name=name, v=v: promotion.promote(
                    tx, name, v.version, Stage.PRODUCTION, reason="go", actor="bob", force=False, policies=[]).unwrap())
                await cat.write(lambda tx: tx.append_audit(AuditDraft(actor="regd", action="hook.ok", details={"i": i})))

        await asyncio.gather(*(work(i, c) for i, c in enumerate(catalogs)))
        ok, checked, broken = await catalogs[0].read(_verify_chain)
        # registered, promoted, hook.ok for each of 24; a demotion for every promotion but each model's first
        assert ok and broken is None and checked == 24 * 3 + 22
    finally:
        for cat in catalogs:
            await cat.close()
    with psycopg.connect(pg_url, autocommit=True) as db:
        assert db.execute("SELECT count(*) FROM versions WHERE stage = 'production'").fetchone()[0] == 2
        # versions were numbered without gaps or duplicates per model, and the tags and params rode along
        for model in ("m0", "m1"):
            minors = [r[0] for r in db.execute(
                "SELECT v.minor FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = %s ORDER BY 1", (model,))]
            assert minors == list(range(12))
        assert db.execute("SELECT count(*) FROM params WHERE text = '1%'").fetchone()[0] == 24


def _verify_chain(r):  # type: ignore[no-untyped-def]
    from regd.store import auditchain

    prev, checked = auditchain.GENESIS, 0
    for e in r.audit_chain(0, 100_000):
        if e.prev_hash != prev or e.hash != auditchain.row_hash(prev, auditchain.content_of_event(e)):
            return False, checked, e.id
        prev, checked = e.hash, checked + 1
    return True, checked, None


async def test_a_write_that_fails_commits_nothing_and_the_next_one_chains_on(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalog = await _open(pg_url)
    try:
        await catalog.write(lambda tx: registration.record(tx, _draft("m", 1), "alice"))

        def broken(tx):  # type: ignore[no-untyped-def]
            tx.append_audit(AuditDraft(actor="nul\x00", action="x", model="m"))

        with pytest.raises(Exception, match="NUL"):
            await catalog.write(broken)
        await catalog.write(lambda tx: registration.record(tx, _draft("m", 2), "alice"))
        ok, checked, _ = await catalog.read(_verify_chain)
        assert ok and checked == 2
    finally:
        await catalog.close()


def test_model_keys_are_stable_32_bit() -> None:
    assert model_key("fraud") == model_key("fraud") != model_key("churn")
    assert all(-(2**31) <= model_key(n) < 2**31 for n in ("", "a", "x" * 128))
    assert model_key("fraud") == -1989549689  # blake2b, not hash(): the same key on every host and process


async def test_the_server_hashes_each_row_exactly_as_regd_verifies_it(pg_url) -> None:  # type: ignore[no-untyped-def]
    # the chain's hashes are made by PostgreSQL from the JSON regd renders around the row's id
    # (``auditchain.around_id``), and checked in Python by ``audit.verify``: any text must agree
    catalog = await _open(pg_url)
    texts = ["naïve ✓ 模型 🚀", 'quote " and \\ backslash', "line\nbreak\ttab", "100% of 'it'", "\u2028\u00a0", ""]
    try:
        for i, text in enumerate(texts):
            await catalog.write(lambda tx, i=i, text=text: tx.append_audit(AuditDraft(
                actor=text or "x", action="note", model=text, version=None, reason=text,
                details={"id": i, "nested": {"text": text, "n": [1.5, -2, 10**18, None, True]}, "": text},
            )))  # fmt: skip
        await catalog.write(lambda tx: [tx.append_audit(AuditDraft(actor="a", action=f"batch.{k}")) for k in range(3)])
        ok, checked, broken = await catalog.read(_verify_chain)
        assert ok and broken is None and checked == len(texts) + 3
    finally:
        await catalog.close()


async def test_writes_run_on_prepared_statements_and_a_failed_write_keeps_them(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalog = await _open(pg_url)
    try:
        for i in range(3):
            await catalog.write(lambda tx, i=i: registration.record(tx, _draft("m", i), "alice"))
        for _ in range(6):  # often enough on the writer's connection for psycopg to prepare it itself
            prepared = await _prepared_by_regd(catalog)
        assert len(prepared) >= 8

        def refused(tx):  # type: ignore[no-untyped-def]
            promotion.promote(tx, "m", "9.9.9", Stage.PRODUCTION, reason="x", actor="bob", force=False, policies=[])

        with pytest.raises(NotFound):
            await catalog.write(refused)  # rolled back: psycopg would answer a ROLLBACK with DEALLOCATE ALL
        assert await _prepared_by_regd(catalog) >= prepared
        await catalog.write(lambda tx: registration.record(tx, _draft("m", 9), "alice"))
        ok, checked, _ = await catalog.read(_verify_chain)
        assert ok and checked == 4
    finally:
        await catalog.close()


async def _prepared_by_regd(catalog: PostgresCatalog) -> set[str]:
    """The statements ``pg_prepared`` prepared on the writer's connection."""
    return {r[0] for r in await catalog.execute_raw("SELECT name FROM pg_prepared_statements") if r[0].startswith("regd_w")}


def test_a_notification_names_the_newest_row_and_its_writer() -> None:
    assert _newest(["5 123", "7 456", "6 9"]) == (7, 456)
    assert _newest(["9"]) == (9, None)  # an older regd's payload: the id alone
    assert _newest(["junk", ""]) == (None, None)


def test_the_json_around_the_id_hashes_as_the_whole_row() -> None:
    from regd.store import auditchain

    for content in (
        auditchain.content_of(id=0, at=1, actor="a", action="b", model=None, version="1.0.0", from_=None, to="x",
                              reason="é\n\"", details={"id": 3, "z": [1.5]}),  # fmt: skip
        {"id": 0}, {"a": 1, "id": 0}, {"id": 0, "z": "ü"},
    ):
        head, tail = auditchain.around_id(content)
        for row_id in (1, 42, 10**12):
            whole = auditchain.row_hash("p" * 64, {**content, "id": row_id})
            assert hashlib.sha256(f"{'p' * 64}\n{head}{row_id}{tail}".encode()).hexdigest() == whole


async def test_a_write_after_the_server_lost_the_prepared_statements_goes_through(pg_url) -> None:  # type: ignore[no-untyped-def]
    catalog = await _open(pg_url)
    try:
        for i in range(2):
            await catalog.write(lambda tx, i=i: registration.record(tx, _draft("m", i), "alice"))
        assert await _prepared_by_regd(catalog)
        await catalog.execute_raw("DEALLOCATE ALL")  # what DISCARD ALL or a pooler handing over a new session does
        v, _ = await catalog.write(lambda tx: registration.record(tx, _draft("m", 7), "alice"))
        assert v.version == "1.2.0"
        await catalog.write(lambda tx: registration.record(tx, _draft("m", 8), "alice"))
        assert await _prepared_by_regd(catalog)  # prepared anew
        ok, checked, _ = await catalog.read(_verify_chain)
        assert ok and checked == 4
    finally:
        await catalog.close()


_AWKWARD = [
    "", "plain", "it's", "''", "a\\b", "\\'", "E'x'", "--", "-- comment", "/* c */", "; DROP TABLE audit; --",
    "$1", "$$", "%s", "%%", "?", "é", "日本", "\U0001f600", "tab\there", "new\nline", "\r\n", "\u2028", " lead",
] + [chr(c) for c in range(1, 128)]


def test_values_reach_the_server_exactly_through_a_prepared_statement(pg_url) -> None:  # type: ignore[no-untyped-def]
    """The writer writes most values into its EXECUTEs itself (``pg_prepared._literal``): each comes
    back from the server as it went in, and one with a NUL is the caller's error."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        prepared = Prepared()
        sql = "SELECT ?::text, ?::bigint, ?::double precision, ?::boolean, ?::bytea"
        for text in _AWKWARD:
            for number in (0, 7, -1, -(2**63), 2**63 - 1):
                values = (text, number, -0.5, True, b"\x00\xff'\\")
                query = prepared.render(conn, sql, values)
                if not prepared.names:  # the first goes out as text; prepare it as the writer does
                    conn.execute(query)
                    prepared.prepare_wanted(conn)
                    query = prepared.render(conn, sql, values)
                assert query.startswith("EXECUTE regd_w1(")
                assert conn.execute(query).fetchone() == values, query
        with pytest.raises(InvalidParams):
            prepared.render(conn, sql, ("a\x00b", 1, 1.0, True, b""))
