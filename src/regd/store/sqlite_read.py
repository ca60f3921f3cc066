"""Queries of the SQLite catalog (the ``ReadTx`` side), run on a reader connection's thread."""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, NoReturn

from pydantic import TypeAdapter

from regd.domain import (
    SEMVER_RE,
    STAGE_NAMES,
    Artifact,
    AuditEvent,
    EnvLock,
    FileEntry,
    GitInfo,
    Lineage,
    Model,
    Runtime,
    Signature,
    Stage,
    TensorFingerprint,
    Version,
    VersionSummary,
    VersionWarning,
    WatchSpec,
    json_text,
)
from regd.errors import NotFound
from regd.store import cursors
from regd.store.catalog import AliasChange, PageOf, SeenEntry, StageChange, StoredArtifact, VersionRow
from regd.store.search import CompiledFilter, CompiledOrder, compile_filter, compile_order
from regd.store.summary_cache import SummaryCache
from regd.store.times import to_dt, to_us

_ROW_COLS = (
    "v.id, v.model_id, m.name, v.version, v.major, v.minor, v.patch, v.stage, v.digest, "
    "v.signature_digest, v.created_by, v.created_at, v.rolled_back, v.pruned_at"
)
_ROWS_FROM = "FROM versions v JOIN models m ON m.id = v.model_id"
_ROWS = f"SELECT {_ROW_COLS} {_ROWS_FROM}"
"""Version rows (``_version_row``), to be narrowed by a ``WHERE``."""
_MODEL_BY_NAME = "(SELECT id FROM models WHERE name = ?)"
_SUMMARY_COLS = (
    "v.id, m.name, v.version, v.stage, v.format, v.digest, v.size, v.warnings, v.created_at, v.created_by, v.pruned_at"
)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def _warning_codes(warnings: str, pruned_at: int | None) -> list[str]:
    """A summary's warning codes: those stored at registration, then ``pruned`` as ``version`` adds it."""
    codes = [] if warnings == "[]" else [w["code"] for w in json.loads(warnings)]
    return codes if pruned_at is None else [*codes, "pruned"]


def _version_row(r: Sequence[Any]) -> VersionRow:
    return VersionRow(
        id=r[0], model_id=r[1], model=r[2], version=r[3], major=r[4], minor=r[5], patch=r[6],
        stage=Stage(r[7]), digest=r[8], signature_digest=r[9], created_by=r[10],
        created_at=to_dt(r[11]), rolled_back=bool(r[12]), pruned=r[13] is not None,
    )  # fmt: skip


class SQLiteReader:
    """The read queries, over one sqlite3 connection (a snapshot inside a transaction).

    The SQL is written to run on PostgreSQL too (``pg_read`` adapts the connection); the few
    spellings that differ are the class attributes and ``_compiled`` below, overridden there.
    """

    _PINNED_JOIN = "CROSS JOIN"
    """Join versions to models keeping versions the outer loop (see ``search``)."""
    _NAME_CONTAINS = "instr(lower(m.name), lower(?)) > 0"

    scope: tuple[str, str] = ("", "")
    """(host, owner) of the watches and ``ingest_seen`` rows read and written: the embedded store is
    one daemon's own (''); a shared catalog sets its daemon's (issue 9)."""

    def __init__(self, conn: sqlite3.Connection, summary_cache: SummaryCache | None = None) -> None:
        self.conn = conn
        self.summary_cache = summary_cache
        """This connection's rendered summaries (SQLite readers only: it relies on ``PRAGMA data_version``)."""

    def _compiled(self, filter_text: str, order_by: str | None) -> tuple[CompiledFilter, CompiledOrder]:
        """The search filter and order as SQL for this database."""
        return compile_filter(filter_text), compile_order(order_by)

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.conn.execute(sql, params).fetchall()

    # ------------------------------------------------------------------ models

    def model_id(self, name: str) -> int:
        r = self._one("SELECT id FROM models WHERE name = ?", (name,))
        if r is None:
            raise NotFound(f"no model named {name!r}", {"name": name})
        return int(r[0])

    def model(self, name: str) -> Model:
        rows = self._all(
            "SELECT id, name, description, created_at, updated_at, deprecated, deprecated_reason "
            "FROM models WHERE name = ?",
            (name,),
        )
        if not rows:
            raise NotFound(f"no model named {name!r}", {"name": name})
        return self._models_from_rows(rows)[0]

    def _models_from_rows(self, rows: list[Any]) -> list[Model]:
        if not rows:
            return []
        # every model's production, staging, latest, count, aliases and latest metrics in ONE query
        # (a page of 100 models was 600 round trips); see ``_MODEL_FACTS``
        ids = [r[0] for r in rows]
        marks = _placeholders(len(ids))
        facts: dict[int, dict[str, Any]] = {
            i: {"production": None, "staging": [], "latest": None, "versions": 0, "aliases": {}, "metrics": {}} for i in ids
        }
        for kind, mid, text, text2, number, value in self._all(_MODEL_FACTS.format(ids=marks), ids * 5):
            f = facts[mid]
            if kind == 0:
                f["metrics"][text] = value
            elif kind == 1:
                f["staging"].append(text)
            elif kind == 2:
                f["production"] = text
            elif kind == 3:
                f["latest"], f["versions"] = text, int(number)
            else:
                f["aliases"][text] = text2
        out = []
        for mid, name, desc, created, updated, deprecated, dreason in rows:
            f = facts[mid]
            out.append(
                Model(
                    name=name, description=desc, created_at=to_dt(created), updated_at=to_dt(updated),
                    deprecated=bool(deprecated), deprecated_reason=dreason,
                    production=f["production"], staging=f["staging"], latest=f["latest"], versions=f["versions"],
                    aliases=f["aliases"], latest_metrics=f["metrics"],
                )  # fmt: skip
            )
        return out

    def aliases_of(self, model_id: int) -> dict[str, str]:
        """alias -> version of one model, by alias (what ``aliases.set`` answers, without a whole ``model``)."""
        return dict(self._all(
            "SELECT a.alias, v.version FROM aliases a JOIN versions v ON v.id = a.version_id "
            "WHERE a.model_id = ? ORDER BY a.alias", (model_id,),
        ))  # fmt: skip

    def models(
        self,
        *,
        query: str | None,
        stage: Stage | None,
        tag: tuple[str, str] | None,
        include_deprecated: bool,
        limit: int,
        cursor: str | None,
    ) -> PageOf[Model]:
        where, params = ["1 = 1"], []
        if not include_deprecated:
            where.append("m.deprecated = 0")
        if stage is not None:
            where.append("EXISTS (SELECT 1 FROM versions v WHERE v.model_id = m.id AND v.stage = ?)")
            params.append(stage.value)
        if tag is not None:
            where.append(
                "EXISTS (SELECT 1 FROM versions v JOIN tags t ON t.version_id = v.id "
                "WHERE v.model_id = m.id AND t.key = ? AND t.value = ?)"
            )
            params.extend(tag)
        glob = query if query and any(c in query for c in "*?[") else None
        if query and not glob:
            where.append(self._NAME_CONTAINS)
            params.append(query)
        if cursor:
            (after,) = cursors.decode(cursor, 1)
            where.append("m.name > ?")
            params.append(str(after))
        sql = (
            "SELECT m.id, m.name, m.description, m.created_at, m.updated_at, m.deprecated, m.deprecated_reason "
            f"FROM models m WHERE {' AND '.join(where)} ORDER BY m.name"
        )
        rows: list[Any] = []
        more = False
        for r in self.conn.execute(sql, params):
            if glob and not fnmatchcase(r[1].lower(), glob.lower()):
                continue
            if len(rows) == limit:
                more = True
                break
            rows.append(r)
        items = self._models_from_rows(rows)
        return PageOf(items, cursors.encode(items[-1].name) if more and items else None)

    # ------------------------------------------------------------------ version rows

    def row(self, name: str, ref: str) -> VersionRow:
        """Resolve ``1.2.0``, ``latest``, a stage name or ``@alias`` to a version of ``name``.

        One statement, the model looked up by name inside it (one round trip on a networked catalog);
        only when nothing is found is the model looked up alone, to say which of the two is missing.
        """
        pick, params = _picked(name, ref)
        r = self._one(f"{_ROWS} {pick}", params)
        if r is None:
            self._not_found(name, ref)
        return _version_row(r)

    def _not_found(self, name: str, ref: str) -> NoReturn:
        self.model_id(name)  # no such model: its own NotFound
        raise NotFound(_not_found_message(name, ref), {"name": name, "version": ref})

    def row_by_id(self, version_id: int) -> VersionRow:
        r = self._one(f"{_ROWS} WHERE v.id = ?", (version_id,))
        if r is None:
            raise NotFound(f"no version with id {version_id}")
        return _version_row(r)

    def latest_row(self, model_id: int) -> VersionRow | None:
        r = self._one(
            f"{_ROWS} WHERE v.model_id = ? "
            "ORDER BY v.major DESC, v.minor DESC, v.patch DESC LIMIT 1",
            (model_id,),
        )
        return _version_row(r) if r else None

    def row_by_digest(self, model_id: int, digest: str) -> VersionRow | None:
        r = self._one(
            f"{_ROWS} WHERE v.model_id = ? AND v.digest = ?",
            (model_id, digest),
        )
        return _version_row(r) if r else None

    def production_row(self, model_id: int) -> VersionRow | None:
        r = self._one(
            f"{_ROWS} WHERE v.model_id = ? AND v.stage = 'production'",
            (model_id,),
        )
        return _version_row(r) if r else None

    # ------------------------------------------------------------------ full versions

    def version(self, version_id: int, *, tensors: bool = False) -> Version:
        return self._version_from(self._batch(_version_queries(("?", (version_id,)), tensors)), version_id, tensors)

    def promotion_subject(self, name: str, ref: str) -> tuple[VersionRow, Version, VersionRow | None]:
        """The version ``name``/``ref`` names (its row and the whole version) and its model's production
        row: what a promotion reads before its guards, in one round trip on a networked catalog (each
        statement finds the version itself, none waits on another's answer)."""
        pick, params = _picked(name, ref)
        rows = (
            f"SELECT * FROM (SELECT {_ROW_COLS}, 0 AS production {_ROWS_FROM} {pick}) AS picked UNION ALL "
            f"SELECT {_ROW_COLS}, 1 {_ROWS_FROM} WHERE v.model_id = {_MODEL_BY_NAME} AND v.stage = 'production'"
        )
        found = self._batch([(rows, (*params, name)), *_version_queries((f"(SELECT v.id FROM versions v {pick})", params), False)])
        picked = [_version_row(r) for r in found[0] if not r[-1]]
        if not picked:
            self._not_found(name, ref)
        current = next((_version_row(r) for r in found[0] if r[-1]), None)
        return picked[0], self._version_from(found[1:], picked[0].id, False), current

    def _batch(self, queries: list[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Each query's rows. Here one after another; a catalog that can send them in one message does."""
        return [self._all(sql, params) for sql, params in queries]

    def _version_from(self, found: list[list[Any]], version_id: int, tensors: bool) -> Version:
        """A version from the rows of ``_version_queries``."""
        main, keyed = found
        if not main:
            raise NotFound(f"no version with id {version_id}")
        (name, ver, stage, desc, digest, size, kind, fmt, stored, source, mode, run_id, code_sha, data_version,
         parent, lock_digest, warnings, rolled_back, created_at, created_by, pruned_at,
         signature, files, git, runtime, fmeta, unsafe, tensor_blob, lock_kind, lock_source, lock_packages) = main[0]  # fmt: skip
        metrics: dict[str, float] = {}
        params: dict[str, Any] = {}
        tags: dict[str, str] = {}
        aliases: list[str] = []
        for table, key, number, text in keyed:
            if table == 0:
                metrics[key] = number
            elif table == 1:
                params[key] = json.loads(text)
            elif table == 2:
                tags[key] = text
            else:
                aliases.append(key)
        env_lock = None
        if lock_kind is not None:
            env_lock = EnvLock(digest=lock_digest, kind=lock_kind, source=lock_source, packages=json.loads(lock_packages))
        fingerprints = None
        if tensors:
            raw = json.loads(zlib.decompress(tensor_blob)) if tensor_blob else []
            fingerprints = [TensorFingerprint.model_validate(t) for t in raw]
        warn = [VersionWarning.model_validate(w) for w in json.loads(warnings)]
        if pruned_at is not None:
            warn.append(VersionWarning(code="pruned", message=f"the bytes were freed by gc on {to_dt(pruned_at):%Y-%m-%d}"))
        return Version(
            model=name, version=ver, stage=Stage(stage), aliases=aliases, description=desc,
            artifact=Artifact(
                digest=digest, size=size, kind=kind, format=fmt, stored_path=stored, source_path=source,
                store_mode=mode, files=[FileEntry.model_validate(f) for f in json.loads(files or "[]")],
            ),
            signature=Signature.model_validate_json(signature) if signature else None,
            metrics=metrics, params=params, tags=tags, env_lock=env_lock,
            runtime=Runtime.model_validate_json(runtime) if runtime else None,
            git=GitInfo.model_validate_json(git) if git else None,
            lineage=Lineage(run_id=run_id, code_sha=code_sha, data_version=data_version, parent=parent,
                            env_lock_digest=lock_digest),
            warnings=warn, unsafe_imports=json.loads(unsafe or "[]"),
            format_metadata=json.loads(fmeta or "{}"), tensors=fingerprints, rolled_back=bool(rolled_back),
            created_at=to_dt(created_at), created_by=created_by,
        )  # fmt: skip

    def _summaries(self, ids: list[int]) -> list[VersionSummary]:
        """The versions' summaries, in the order of ``ids``."""
        if not ids:
            return []
        marks = _placeholders(len(ids))
        found = {r[0]: r for r in self._all(
            f"SELECT {_SUMMARY_COLS} FROM versions v JOIN models m ON m.id = v.model_id WHERE v.id IN ({marks})", ids
        )}  # fmt: skip
        rows = [found[i] for i in ids]
        metrics: dict[int, dict[str, float]] = {i: {} for i in ids}
        tags: dict[int, dict[str, str]] = {i: {} for i in ids}
        aliases: dict[int, list[str]] = {i: [] for i in ids}
        # three IN queries: measured faster than one UNION ALL of them (whose ORDER BY sorts in temp b-trees)
        for vid, k, v in self._all(f"SELECT version_id, key, value FROM metrics WHERE version_id IN ({marks})", ids):
            metrics[vid][k] = v
        for vid, k, v in self._all(f"SELECT version_id, key, value FROM tags WHERE version_id IN ({marks})", ids):
            tags[vid][k] = v
        for vid, a in self._all(f"SELECT version_id, alias FROM aliases WHERE version_id IN ({marks}) ORDER BY alias", ids):
            aliases[vid].append(a)
        # validated as one list (pydantic-core's loop) rather than a Python constructor call per row: a
        # page of 100 costs about half as much; the dicts hold exactly what the constructor was given
        return _SUMMARY_LIST.validate_python([
            {
                "model": name, "version": ver, "stage": stage, "aliases": aliases[vid], "format": fmt, "digest": digest,
                "size": size, "metrics": metrics[vid], "tags": tags[vid],
                "warnings": _warning_codes(warnings, pruned_at),
                "created_at": to_dt(created_at), "created_by": created_by,
            }
            for vid, name, ver, stage, fmt, digest, size, warnings, created_at, created_by, pruned_at in rows
        ])  # fmt: skip

    def _rendered(self, ids: list[int]) -> list[str]:
        """The versions' summaries as JSON text, from this connection's cache when it has one."""
        if self.summary_cache is None:
            return [json_text(s) for s in self._summaries(ids)]
        if not ids:
            return []
        (state,) = self._one("PRAGMA data_version")  # after the page's query: this snapshot's version
        return self.summary_cache.rendered(state, ids, self._summaries)

    def versions(
        self, name: str, *, stage: Stage | None, newest_first: bool, limit: int, cursor: str | None
    ) -> PageOf[VersionSummary]:
        ids, next_cursor = self._version_rows(name, stage, newest_first, limit, cursor)
        return PageOf(self._summaries(ids), next_cursor)

    def versions_json(
        self, name: str, *, stage: Stage | None, newest_first: bool, limit: int, cursor: str | None
    ) -> PageOf[str]:
        ids, next_cursor = self._version_rows(name, stage, newest_first, limit, cursor)
        return PageOf(self._rendered(ids), next_cursor)

    def _version_rows(
        self, name: str, stage: Stage | None, newest_first: bool, limit: int, cursor: str | None
    ) -> tuple[list[int], str | None]:
        """One page of the model's version ids, and the next page's cursor."""
        mid = self.model_id(name)
        where, params = ["v.model_id = ?"], [mid]
        if stage is not None:
            where.append("v.stage = ?")
            params.append(stage.value)
        if cursor:
            (after,) = cursors.decode(cursor, 1)
            where.append("v.id < ?" if newest_first else "v.id > ?")
            params.append(after)
        order = "DESC" if newest_first else "ASC"
        rows = self._all(
            f"SELECT v.id FROM versions v WHERE {' AND '.join(where)} ORDER BY v.id {order} LIMIT ?",
            [*params, limit + 1],
        )
        more = len(rows) > limit
        ids = [r[0] for r in rows[:limit]]
        return ids, cursors.encode(ids[-1]) if more else None

    def search(self, filter_text: str, order_by: str | None, limit: int, cursor: str | None) -> PageOf[VersionSummary]:
        ids, next_cursor = self._search_rows(filter_text, order_by, limit, cursor)
        return PageOf(self._summaries(ids), next_cursor)

    def search_json(self, filter_text: str, order_by: str | None, limit: int, cursor: str | None) -> PageOf[str]:
        ids, next_cursor = self._search_rows(filter_text, order_by, limit, cursor)
        return PageOf(self._rendered(ids), next_cursor)

    def _search_rows(
        self, filter_text: str, order_by: str | None, limit: int, cursor: str | None
    ) -> tuple[list[int], str | None]:
        """One page of the matching version ids, and the next page's cursor."""
        flt, order = self._compiled(filter_text, order_by)
        where, params = [flt.where], list(flt.params)
        direction = "DESC" if order.descending else "ASC"
        cmp = "<" if order.descending else ">"
        if order.expr is None:
            if cursor:
                (after,) = cursors.decode(cursor, 1)
                where.append(f"v.id {cmp} ?")
                params.append(after)
            sql = (
                # CROSS JOIN pins versions as the outer loop: with statistics, SQLite otherwise puts
                # models outside for range filters and runs 10x slower (the filter never names m)
                f"SELECT v.id FROM versions v {self._PINNED_JOIN} models m ON m.id = v.model_id "
                f"WHERE {' AND '.join(f'({w})' for w in where)} ORDER BY v.id {direction} LIMIT ?"
            )
            rows = self._all(sql, [*params, limit + 1])
            more = len(rows) > limit
            ids = [r[0] for r in rows[:limit]]
            return ids, cursors.encode(ids[-1]) if more else None
        # ordered by a computed key: versions lacking it sort last; the cursor carries (is_null, key, id)
        key = order.expr
        if cursor:
            is_null, value, after = cursors.decode(cursor, 3)
            if is_null:
                where.append(f"(({key}) IS NULL AND v.id {cmp} ?)")
                params.extend([*order.params, after])
            else:
                where.append(f"(({key}) IS NULL OR ({key}) {cmp} ? OR (({key}) = ? AND v.id {cmp} ?))")
                params.extend([*order.params, *order.params, value, *order.params, value, after])
        sql = (
            f"SELECT v.id, ({key}) AS sort_key FROM versions v {self._PINNED_JOIN} models m ON m.id = v.model_id "
            f"WHERE {' AND '.join(f'({w})' for w in where)} "
            f"ORDER BY sort_key {direction} NULLS LAST, v.id {direction} LIMIT ?"
        )
        rows = self._all(sql, [*order.params, *params, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = None
        if more:
            last = rows[-1]
            next_cursor = cursors.encode(1 if last[-1] is None else 0, last[-1], last[0])
        return [r[0] for r in rows], next_cursor

    # ------------------------------------------------------------------ history, approvals, audit

    def stage_history(self, model_id: int) -> list[StageChange]:
        return [
            StageChange(id=r[0], version_id=r[1], version=r[2], from_stage=Stage(r[3]), to_stage=Stage(r[4]),
                        action=r[5], actor=r[6], at=to_dt(r[7]), reason=r[8])  # fmt: skip
            for r in self._all(
                "SELECT h.id, h.version_id, v.version, h.from_stage, h.to_stage, h.action, h.actor, h.at, h.reason "
                "FROM stage_history h JOIN versions v ON v.id = h.version_id WHERE h.model_id = ? ORDER BY h.id",
                (model_id,),
            )
        ]

    def metrics_of(self, version_id: int) -> dict[str, float]:
        """One version's metrics, by key (what a guard compares, without reading the whole version)."""
        return dict(self._all("SELECT key, value FROM metrics WHERE version_id = ? ORDER BY key", (version_id,)))

    def was_in_stage(self, version_id: int, stage: Stage) -> bool:
        """Whether the stage history ever moved this version into ``stage`` (one index probe)."""
        r = self._one(
            "SELECT 1 FROM stage_history WHERE version_id = ? AND to_stage = ? LIMIT 1", (version_id, stage.value)
        )
        return r is not None

    def production_history(self, model_id: int) -> list[tuple[int, str, bool]]:
        """(version id, version, rolled back) of each move of the model into production, oldest first."""
        return [
            (int(vid), ver, bool(rb))
            for vid, ver, rb in self._all(
                "SELECT h.version_id, v.version, v.rolled_back FROM stage_history h "
                "JOIN versions v ON v.id = h.version_id WHERE h.model_id = ? AND h.to_stage = 'production' ORDER BY h.id",
                (model_id,),
            )
        ]

    def alias_history(self, model_id: int) -> list[AliasChange]:
        return [
            AliasChange(id=r[0], alias=r[1], from_version=r[2], to_version=r[3], actor=r[4], at=to_dt(r[5]), reason=r[6])
            for r in self._all(
                "SELECT h.id, h.alias, fv.version, tv.version, h.actor, h.at, h.reason FROM alias_history h "
                "LEFT JOIN versions fv ON fv.id = h.from_version_id LEFT JOIN versions tv ON tv.id = h.to_version_id "
                "WHERE h.model_id = ? ORDER BY h.id",
                (model_id,),
            )
        ]

    def approvals(self, version_id: int) -> list[tuple[str, datetime, str | None]]:
        return [
            (a, to_dt(at), note)
            for a, at, note in self._all(
                "SELECT approver, at, note FROM approvals WHERE version_id = ? ORDER BY at", (version_id,)
            )
        ]

    def audit(
        self,
        *,
        model: str | None,
        version: str | None,
        actor: str | None,
        action: str | None,
        since: datetime | None,
        limit: int,
        cursor: str | None,
    ) -> PageOf[AuditEvent]:
        where, params = ["1 = 1"], []
        for col, val in (("model", model), ("version", version), ("actor", actor)):
            if val is not None:
                where.append(f"{col} = ?")
                params.append(val)
        if action is not None:
            # a topic prefix: "alias" matches alias.set and alias.deleted
            where.append("(action = ? OR substr(action, 1, ?) = ?)")
            params.extend([action, len(action) + 1, action + "."])
        if since is not None:
            where.append("at >= ?")
            params.append(to_us(since))
        if cursor:
            (after,) = cursors.decode(cursor, 1)
            where.append("id < ?")
            params.append(after)
        rows = self._all(
            f"SELECT {_AUDIT_COLS} FROM audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", [*params, limit + 1]
        )
        more = len(rows) > limit
        items = [_audit_event(r) for r in rows[:limit]]
        return PageOf(items, cursors.encode(items[-1].id) if more else None)

    def audit_chain(self, after_id: int, limit: int) -> list[AuditEvent]:
        return [
            _audit_event(r)
            for r in self._all(f"SELECT {_AUDIT_COLS} FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        ]

    # ------------------------------------------------------------------ artifacts, gc, lineage

    def artifacts(self, name: str | None, ref: str | None) -> list[StoredArtifact]:
        if name is not None and ref is not None:
            ids: Iterable[int] = [self.row(name, ref).id]
        elif name is not None:
            ids = [r[0] for r in self._all("SELECT id FROM versions WHERE model_id = ? ORDER BY id", (self.model_id(name),))]
        else:
            ids = [r[0] for r in self._all("SELECT id FROM versions ORDER BY id")]
        return self._artifacts_by_id(ids)

    def _artifacts_by_id(self, ids: Iterable[int]) -> list[StoredArtifact]:
        out = []
        for vid in ids:
            r = self._one(
                "SELECT m.name, v.version, v.digest, v.kind, v.store_mode, v.stored_path, v.source_path, "
                "d.files, v.pruned_at FROM versions v JOIN models m ON m.id = v.model_id "
                "LEFT JOIN version_details d ON d.version_id = v.id WHERE v.id = ?",
                (vid,),
            )
            out.append(
                StoredArtifact(
                    version_id=vid, model=r[0], version=r[1], digest=r[2], kind=r[3], store_mode=r[4],
                    stored_path=r[5], source_path=r[6],
                    files=[FileEntry.model_validate(f) for f in json.loads(r[7] or "[]")], pruned=r[8] is not None,
                )  # fmt: skip
            )
        return out

    def referenced_digests(self) -> set[str]:
        """Every blob digest a live (unpruned) version or an environment lock still needs."""
        refs = {d for (d,) in self._all("SELECT digest FROM versions WHERE pruned_at IS NULL AND store_mode = 'copy'")}
        refs.update(
            d
            for (d,) in self._all(
                "SELECT f.digest FROM version_files f JOIN versions v ON v.id = f.version_id "
                "WHERE v.pruned_at IS NULL AND v.store_mode = 'copy'"
            )
        )
        refs.update(d for (d,) in self._all("SELECT digest FROM env_locks"))
        return refs

    def prunable(self, keep_last: int, older_than_us: int | None) -> list[StoredArtifact]:
        """Versions gc may prune: beyond each model's newest ``keep_last``, older than the cutoff, stored
        by copy, not pruned yet, never in production, not in staging, and not pointed at by an alias."""
        where = ["ranked.rn > ?", "ranked.pruned_at IS NULL", "ranked.store_mode = 'copy'",
                 "ranked.stage IN ('none', 'archived')",
                 "NOT EXISTS (SELECT 1 FROM stage_history h WHERE h.version_id = ranked.id AND h.to_stage = 'production')",
                 "NOT EXISTS (SELECT 1 FROM aliases a WHERE a.version_id = ranked.id)"]  # fmt: skip
        params: list[Any] = [keep_last]
        if older_than_us is not None:
            where.append("ranked.created_at < ?")
            params.append(older_than_us)
        ids = [r[0] for r in self._all(
            "SELECT ranked.id FROM (SELECT v.*, row_number() OVER (PARTITION BY v.model_id ORDER BY v.id DESC) AS rn "
            f"FROM versions v) ranked WHERE {' AND '.join(where)} ORDER BY ranked.id", params,
        )]  # fmt: skip
        return [a for vid in ids for a in self._artifacts_by_id([vid])]

    def live_trees(self) -> set[str]:
        """Directory digests whose hard-linked trees a live version still serves from."""
        return {d for (d,) in self._all(
            "SELECT digest FROM versions WHERE kind = 'directory' AND store_mode = 'copy' AND pruned_at IS NULL"
        )}  # fmt: skip

    def children(self, name: str, version: str) -> list[VersionRow]:
        return [
            _version_row(r)
            for r in self._all(
                f"{_ROWS} WHERE v.parent = ? ORDER BY v.id",
                (f"{name}:{version}",),
            )
        ]

    def counts(self) -> tuple[int, int]:
        models = self._one("SELECT count(*) FROM models")[0]
        versions = self._one("SELECT max(id) FROM versions")[0] or 0  # ids are never reused: max(id) is O(1)
        return int(models), int(versions)

    def watches(self) -> list[WatchSpec]:
        rows = self._all("SELECT spec FROM watches WHERE host = ? AND owner = ? ORDER BY path", self.scope)
        return [WatchSpec.model_validate_json(spec) for (spec,) in rows]

    def seen_under(self, root: str) -> dict[str, SeenEntry]:
        # a range scan on the primary key: every path that starts with "<root>/" ("0" follows "/")
        base = root.rstrip("/")
        return {
            r[0]: SeenEntry(*r)
            for r in self._all(
                "SELECT path, size, mtime_ns, inode, digest, outcome FROM ingest_seen "
                "WHERE host = ? AND owner = ? AND (path = ? OR (path >= ? AND path < ?))",
                (*self.scope, base, base + "/", base + "0"),
            )
        }


def _version_queries(version: tuple[str, Sequence[Any]], tensors: bool) -> list[tuple[str, Sequence[Any]]]:
    """A whole version's two statements: its row with its details and environment lock, and its keyed
    rows (neither waits on the other's answer). ``version``: SQL for its id (``?`` or a subquery)
    and that SQL's parameters."""
    vid, params = version
    return [
        (_VERSION_ROW.format(tensors="d.tensors" if tensors else "NULL", version=vid), tuple(params)),
        # the four keyed tables in one statement
        (_KEYED_OF_VERSION.format(version=vid), tuple(params) * 4),
    ]


def _picked(name: str, ref: str) -> tuple[str, tuple[Any, ...]]:
    """``WHERE`` (and order) picking the version ``ref`` names of model ``name`` from ``versions v``:
    ``1.2.0``, ``latest``, a stage name or ``@alias``; and its parameters."""
    where = f"WHERE v.model_id = {_MODEL_BY_NAME}"
    if SEMVER_RE.match(ref):
        major, minor, patch = (int(x) for x in ref.split("."))
        return where + " AND v.major = ? AND v.minor = ? AND v.patch = ?", (name, major, minor, patch)
    if ref == "latest":
        return where + " ORDER BY v.major DESC, v.minor DESC, v.patch DESC LIMIT 1", (name,)
    if ref in STAGE_NAMES:
        return where + " AND v.stage = ? ORDER BY v.id DESC LIMIT 1", (name, ref)
    alias = ref[1:] if ref.startswith("@") else ref
    # not correlated with v: found once, then the version by its id (not a probe per version of the model)
    return where + f" AND v.id = (SELECT version_id FROM aliases WHERE model_id = {_MODEL_BY_NAME} AND alias = ?)", (name, name, alias)


_VERSION_ROW = (
    "SELECT m.name, v.version, v.stage, v.description, v.digest, v.size, v.kind, v.format, v.stored_path, "
    "v.source_path, v.store_mode, v.run_id, v.code_sha, v.data_version, v.parent, v.env_lock_digest, "
    "v.warnings, v.rolled_back, v.created_at, v.created_by, v.pruned_at, "
    "d.signature, d.files, d.git, d.runtime, d.format_metadata, d.unsafe_imports, {tensors}, "
    "e.kind, e.source, e.packages "
    "FROM versions v JOIN models m ON m.id = v.model_id LEFT JOIN version_details d ON d.version_id = v.id "
    "LEFT JOIN env_locks e ON e.digest = v.env_lock_digest "
    "WHERE v.id = {version}"
)
_KEYED_OF_VERSION = (
    "SELECT 0, key, value, NULL FROM metrics WHERE version_id = {version} "
    "UNION ALL SELECT 1, key, NULL, value FROM params WHERE version_id = {version} "
    "UNION ALL SELECT 2, key, NULL, value FROM tags WHERE version_id = {version} "
    "UNION ALL SELECT 3, alias, NULL, NULL FROM aliases WHERE version_id = {version} "
    "ORDER BY 1, 2"
)
_SUMMARY_LIST = TypeAdapter(list[VersionSummary])
_LATEST_OF_MODEL = "(SELECT id FROM versions WHERE model_id = m.id ORDER BY major DESC, minor DESC, patch DESC LIMIT 1)"
_MODEL_FACTS = (
    # (kind, model id, text, text2, number, value), ordered so that staging comes newest first and
    # aliases and metrics by name; the first branch types the columns (PostgreSQL resolves a UNION's
    # column types pair by pair, and two NULLs would make a text column)
    "SELECT 0, m.id, mt.key, CAST(NULL AS TEXT), CAST(NULL AS BIGINT), mt.value FROM models m "
    f"JOIN metrics mt ON mt.version_id = {_LATEST_OF_MODEL} WHERE m.id IN ({{ids}}) "
    "UNION ALL SELECT 1, v.model_id, v.version, NULL, v.id, NULL FROM versions v "
    "WHERE v.stage = 'staging' AND v.model_id IN ({ids}) "
    "UNION ALL SELECT 2, v.model_id, v.version, NULL, NULL, NULL FROM versions v "
    "WHERE v.stage = 'production' AND v.model_id IN ({ids}) "
    "UNION ALL SELECT 3, m.id, lv.version, NULL, (SELECT count(*) FROM versions c WHERE c.model_id = m.id), NULL "
    f"FROM models m JOIN versions lv ON lv.id = {_LATEST_OF_MODEL} WHERE m.id IN ({{ids}}) "
    "UNION ALL SELECT 4, a.model_id, a.alias, v.version, NULL, NULL FROM aliases a "
    "JOIN versions v ON v.id = a.version_id WHERE a.model_id IN ({ids}) "
    "ORDER BY 1, 2, 5 DESC, 3"
)
_AUDIT_COLS = "id, at, actor, action, model, version, from_value, to_value, reason, details, prev_hash, hash"


def _audit_event(r: Sequence[Any]) -> AuditEvent:
    return AuditEvent(
        id=r[0], at=to_dt(r[1]), actor=r[2], action=r[3], model=r[4], version=r[5], from_=r[6], to=r[7],
        reason=r[8], details=json.loads(r[9]), prev_hash=r[10], hash=r[11],
    )  # fmt: skip


def _not_found_message(name: str, ref: str) -> str:
    if SEMVER_RE.match(ref):
        return f"model {name!r} has no version {ref}"
    if ref == "latest":
        return f"model {name!r} has no versions"
    if ref in STAGE_NAMES:
        return f"model {name!r} has no version in {ref}"
    return f"model {name!r} has no alias {ref.lstrip('@')!r} (a version is 1.2.0, latest, a stage or @alias)"

