"""``regd migrate --to postgresql://... --objects s3://...``: move an embedded registry into a team store.

Runs against the data dir with its daemon stopped (it takes the daemon's flock, so none can start
meanwhile). Three phases, each safe to run again:

1. rows: every table, in foreign-key order, ids kept, into a PostgreSQL catalog migrated to the same
   schema; ``ON CONFLICT DO NOTHING`` and one commit per batch, so a second run after an interruption
   adds what is missing and duplicates nothing. The audit rows keep their ids and hashes, so the chain
   verifies on the target. A stored path into the local store is rewritten to the same blob or tree in
   the S3 store's local cache (``<data_dir>/cache``), which the blobs are hard-linked into. Watches and
   the watcher's record (``ingest_seen``) become this host's and user's (``postgres.local_scope``):
   the daemon started here on the team store goes on watching the same folders, and no other does.
2. blobs: every blob of the local store uploaded (skipped when the bucket has it at the right size);
   model directories' trees built in the cache.
3. verify: row counts table by table, the audit chain recomputed on the target, and the SHA-256 of
   every blob read back from the bucket. Anything off: exit code 1, saying what.

The target must be empty or hold exactly what an earlier run of this migration put there: rows from
another registry under the same ids are refused, never merged.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:  # the CLI imports every verb's module: keep this one light until it runs
    import sqlite3

BATCH = 2000
# (table, its primary key, the columns that identify a row of another registry under the same key)
TABLES = [
    ("models", "id", "name"), ("env_locks", "digest", "digest"), ("versions", "id", "model_id, version, digest"),
    ("version_details", "version_id", "version_id"), ("version_files", "version_id, path", "digest"),
    ("metrics", "version_id, key", "key"), ("params", "version_id, key", "key"), ("tags", "version_id, key", "key"),
    ("aliases", "model_id, alias", "alias"), ("alias_history", "id", "alias, at"), ("stage_history", "id", "version_id, at"),
    ("approvals", "version_id, approver", "approver"), ("audit", "id", "hash"),
    ("watches", "host, owner, path", "path"), ("ingest_seen", "host, owner, path", "path"),
]  # fmt: skip
SCOPED = frozenset({"watches", "ingest_seen"})
"""Tables whose rows are one daemon's (host, user): the embedded store's ('', '') become this host's and user's."""
IDENTITY = ["models", "versions", "alias_history", "stage_history", "audit"]


class MigrationError(Exception):
    """The migration cannot go on; the message says why and what to do."""


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common], help="move this registry into a team store (PostgreSQL + S3)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Copy the embedded registry of the config's data dir (rows with their ids, the\n"
                                   "audit chain unchanged, environment locks, blobs) into a PostgreSQL catalog and an\n"
                                   "S3-compatible bucket, then verify it all there. Stop the daemon first. Safe to run\n"
                                   "again after an interruption: it finishes the job without duplicates.\n\n"
                                   "  regd stop\n"
                                   "  regd migrate --to postgresql://regd@db:5432/registry --objects s3://models/regd\n"
                                   "  # then in the config: catalog = \"postgresql://...\", objects = \"s3://...\"")  # fmt: skip
    p.add_argument("--to", required=True, metavar="URL", help="the PostgreSQL catalog: postgresql://user@host:5432/db")
    p.add_argument("--objects", required=True, metavar="URL", help="the bucket: s3://bucket/prefix (endpoint and keys "
                                                                   "from the AWS environment)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="blobs moved and checked at once (4)")
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    from regd.config import (
        ConfigError,
        check_catalog_url,
        check_objects_url,
        load_config,
    )

    try:
        config = load_config(args.config)
        target_url, objects_url = check_catalog_url(args.to), check_objects_url(args.objects)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"regd: {exc}\n")
        return EXIT_USAGE
    if not target_url.startswith(("postgresql://", "postgres://")) or not objects_url.startswith("s3://"):
        sys.stderr.write("regd: migrate moves a registry to --to postgresql://... and --objects s3://...\n")
        return EXIT_USAGE
    if config.catalog.startswith(("postgresql://", "postgres://")) or config.objects != "local":
        sys.stderr.write(f"regd: this config already uses a team store ({config.catalog}, {config.objects}): "
                         "migrate moves an embedded registry (catalog = \"sqlite\", objects = \"local\")\n")  # fmt: skip
        return EXIT_USAGE
    db_path = config.data_dir / "registry.db" if config.catalog == "sqlite" else Path(config.catalog.removeprefix("sqlite:///"))
    try:
        with _data_dir_locked(config.data_dir):
            report = Migration(db_path, config.data_dir, target_url, objects_url, jobs=max(1, args.jobs),
                               quiet=bool(args.json)).run()  # fmt: skip
    except MigrationError as exc:
        sys.stderr.write(f"regd: {exc}\n")
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report, target_url, objects_url)
    return EXIT_OK if report["ok"] else EXIT_FAILED


@contextmanager
def _data_dir_locked(data_dir: Path) -> Iterator[None]:
    from regd.api.daemon import DataDirLock
    from regd.errors import Conflict

    if not (data_dir / "registry.db").exists() and not data_dir.is_dir():
        raise MigrationError(f"{data_dir} holds no registry")
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except Conflict as exc:
        raise MigrationError(f"{exc.message}: stop it first (`regd stop`), then run regd migrate again") from None
    try:
        yield
    finally:
        lock.release()


class Migration:
    """One run of the three phases (see the module docstring)."""

    def __init__(self, db_path: Path, data_dir: Path, target_url: str, objects_url: str, *, jobs: int = 4,
                 quiet: bool = False) -> None:  # fmt: skip
        from regd.store.blobs import LocalBlobStore
        from regd.store.postgres import local_scope, redacted
        from regd.store.s3blobs import S3BlobStore

        if not db_path.is_file():
            raise MigrationError(f"{db_path} does not exist: nothing to migrate")
        self.db_path, self.target_url, self.shown_url = db_path, target_url, redacted(target_url)
        self.local = LocalBlobStore(data_dir)
        self.s3 = S3BlobStore(objects_url, data_dir / "cache")
        self.jobs, self.quiet = jobs, quiet
        self.scope = local_scope()
        """The daemon that will serve this data dir's watches from now on: this host, this user."""

    def _source(self, source: sqlite3.Connection, table: str) -> tuple[str, tuple[Any, ...]]:
        """The source table as the target holds it (for ``FROM``), and the parameters that takes."""
        if table not in SCOPED:
            return table, ()
        # the embedded store's rows (scope ''), stamped with the scope of the daemon that takes them over
        rest = [r[1] for r in source.execute(f"PRAGMA table_info({table})") if r[1] not in ("host", "owner")]
        return (f"(SELECT ? AS host, ? AS owner, {', '.join(rest)} FROM {table} WHERE host = '' AND owner = '')",
                self.scope)  # fmt: skip

    def run(self) -> dict[str, Any]:
        import sqlite3

        import psycopg
        from botocore.exceptions import BotoCoreError, ClientError

        from regd.store.migrations import migrate, migrate_postgres

        source = sqlite3.connect(self.db_path, isolation_level=None)
        try:
            migrate(source)  # the daemon would on its next start; the copy needs the latest schema
            target = psycopg.connect(self.target_url, autocommit=True, application_name="regd migrate")
        except sqlite3.Error as exc:
            source.close()
            raise MigrationError(f"{self.db_path}: {exc}") from None
        except psycopg.Error as exc:
            source.close()
            raise MigrationError(f"cannot reach {self.shown_url}: {str(exc).strip()}") from None
        try:
            migrate_postgres(target)
            with _progress(self.quiet) as bar:
                source.execute("BEGIN")  # one snapshot of the source throughout
                self._refuse_foreign_rows(source, target)
                self._copy_rows(source, target, bar)
                digests = sorted(self.local.digests())
                self._copy_blobs(source, digests, bar)
                report = self._verify(source, target, digests, bar)
                source.execute("COMMIT")
        except psycopg.Error as exc:
            raise MigrationError(f"{self.shown_url}: {str(exc).strip()} (run regd migrate again to finish)") from None
        except (BotoCoreError, ClientError, OSError) as exc:
            raise MigrationError(f"{self.s3.url}: {exc} (run regd migrate again to finish)") from None
        finally:
            source.close()
            target.close()
        return report

    # -- rows ----------------------------------------------------------------------------------

    def _refuse_foreign_rows(self, source: sqlite3.Connection, target: Any) -> None:
        """The target's newest row of each table must be this registry's own (an earlier run's)."""
        for table, key, ident in TABLES:
            newest_first = ", ".join(f"{k} DESC" for k in key.split(", "))
            mine_only = " WHERE host = %s AND owner = %s" if table in SCOPED else ""
            last = target.execute(f"SELECT {key}, {ident} FROM {table}{mine_only} ORDER BY {newest_first} LIMIT 1",
                                  self.scope if mine_only else None).fetchone()  # fmt: skip
            if last is None:
                continue
            nkey = len(key.split(","))
            where = " AND ".join(f"{k} = ?" for k in key.split(", "))
            rows_from, params = self._source(source, table)
            mine = source.execute(f"SELECT {key}, {ident} FROM {rows_from} WHERE {where}", (*params, *last[:nkey])).fetchone()
            if mine is None or tuple(mine) != tuple(last):
                raise MigrationError(
                    f"{self.shown_url} already holds rows of another registry ({table} {last[:nkey]} differs): "
                    "regd migrate moves a registry into an empty team catalog, or finishes its own earlier run"
                )

    def _copy_rows(self, source: sqlite3.Connection, target: Any, bar: Any) -> None:
        from regd.store.pg_queries import pg_query

        counts = {t: source.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t, _, _ in TABLES}
        task = bar.add_task("rows", total=sum(counts.values()))
        for table, key, _ in TABLES:
            columns = [r[1] for r in source.execute(f"PRAGMA table_info({table})")]
            insert = pg_query(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
                              "ON CONFLICT DO NOTHING")  # fmt: skip
            fix = self._stored_path_fixer(columns) if table == "versions" else None
            rows_from, params = self._source(source, table)
            cur = source.execute(f"SELECT {', '.join(columns)} FROM {rows_from} ORDER BY {key}", params)
            while batch := cur.fetchmany(BATCH):
                rows = [fix(r) for r in batch] if fix else batch
                with target.transaction(), target.cursor() as tc:
                    tc.executemany(insert, rows)
                bar.advance(task, len(batch))
        for table in IDENTITY:  # later inserts by the daemons number on from the copied ids
            target.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                           f"coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")  # fmt: skip

    def _stored_path_fixer(self, columns: list[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
        """A copy-mode version's path into the local store becomes the same blob or tree in the S3 cache."""
        at = {c: i for i, c in enumerate(columns)}

        def fix(row: tuple[Any, ...]) -> tuple[Any, ...]:
            digest, stored, kind = row[at["digest"]], row[at["stored_path"]], row[at["kind"]]
            if row[at["store_mode"]] != "copy":
                return row
            local = self.local.tree_path(digest) if kind == "directory" else self.local.path(digest)
            if stored != str(local):
                return row
            cached = self.s3.tree_path(digest) if kind == "directory" else self.s3.cache.path(digest)
            out = list(row)
            out[at["stored_path"]] = str(cached)
            return tuple(out)

        return fix

    # -- blobs ---------------------------------------------------------------------------------

    def _copy_blobs(self, source: sqlite3.Connection, digests: list[str], bar: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        sizes = {d: self.local.path(d).stat().st_size for d in digests}
        task = bar.add_task("blobs", total=sum(sizes.values()))

        def one(digest: str) -> None:
            self.s3.put_blob(digest, self.local.path(digest))
            bar.advance(task, sizes[digest])

        with ThreadPoolExecutor(self.jobs, thread_name_prefix="regd-migrate") as pool:
            list(pool.map(one, digests))
        for digest, files in source.execute(
            "SELECT v.digest, d.files FROM versions v JOIN version_details d ON d.version_id = v.id "
            "WHERE v.kind = 'directory' AND v.store_mode = 'copy' AND v.pruned_at IS NULL"
        ):
            pairs = [(f["path"], f["digest"]) for f in json.loads(files)]
            if all(self.s3.cache.path(d).is_file() for _, d in pairs):
                self.s3.cache.build_tree(pairs)

    # -- verification --------------------------------------------------------------------------

    def _verify(self, source: sqlite3.Connection, target: Any, digests: list[str], bar: Any) -> dict[str, Any]:
        from concurrent.futures import ThreadPoolExecutor

        problems: list[str] = []
        tables = {}
        for table, _, _ in TABLES:
            want = source.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if table in SCOPED:  # other daemons' rows may be there already: count this one's
                got = target.execute(f"SELECT count(*) FROM {table} WHERE host = %s AND owner = %s", self.scope).fetchone()[0]
            else:
                got = target.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            tables[table] = got
            if want != got:
                problems.append(f"{table}: {got} rows on the target, {want} here")
        chain = _verify_chain(target)
        if chain:
            problems.append(chain)
        task = bar.add_task("verify", total=len(digests))

        def check(digest: str) -> str:
            state = self.s3.verify(digest)
            bar.advance(task, 1)
            return state

        with ThreadPoolExecutor(self.jobs, thread_name_prefix="regd-verify") as pool:
            states = dict(zip(digests, pool.map(check, digests), strict=True))
        bad = {d: s for d, s in states.items() if s != "ok"}
        problems += [f"blob {d}: {s} in {self.s3.url}" for d, s in sorted(bad.items())[:20]]
        size = sum(self.local.path(d).stat().st_size for d in digests)
        return {"ok": not problems, "tables": tables, "audit_rows": tables["audit"], "blobs": len(digests),
                "bytes": size, "problems": problems}  # fmt: skip


def _verify_chain(target: Any) -> str:
    """Recompute the audit chain on the target; a message for the first broken row, or ''."""
    from regd.store import auditchain
    from regd.store.pg_queries import PgConnection, PgReader

    reader = PgReader(PgConnection(target))
    prev, after = auditchain.GENESIS, 0
    while page := reader.audit_chain(after, 5000):
        for event in page:
            if event.prev_hash != prev or event.hash != auditchain.row_hash(prev, auditchain.content_of_event(event)):
                return f"audit row {event.id} does not verify on the target"
            prev, after = event.hash, event.id
    return ""


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    if quiet:
        yield _Silent()
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeRemainingColumn,
    )

    with Progress("[progress.description]{task.description:>6}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), transient=False) as bar:  # fmt: skip
        yield bar


class _Silent:
    def add_task(self, *_: Any, **__: Any) -> int:
        return 0

    def advance(self, *_: Any) -> None:
        pass


def _print_report(report: dict[str, Any], target: str, objects: str) -> None:
    from regd.cli import output
    from regd.store.postgres import redacted

    if not report["ok"]:
        sys.stderr.write("regd: the migration did not verify:\n" + "".join(f"  {p}\n" for p in report["problems"]))
        sys.stderr.write("regd: run regd migrate again to finish it\n")
        return
    t = report["tables"]
    print(f"migrated {t['models']} models, {t['versions']} versions, {report['audit_rows']} audit rows and "
          f"{report['blobs']} blobs ({output.size(report['bytes'])}); all verified on the target.")  # fmt: skip
    print(f'Now set in the config of every daemon:\n  catalog = "{redacted(target)}"\n  objects = "{objects}"')
