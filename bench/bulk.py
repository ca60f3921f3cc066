"""A regd catalog of 100k or 1M versions, filled by SQL in the daemon's own schema.

Registering a million files through the socket one by one would take hours, so the big catalogs
are cloned from one real registration: the daemon registers ``names[0]`` 1.0.0 (a real small
safetensors file with its three tags), is stopped, and every other version gets that version's
rows (``versions``, ``version_details``, three ``tags``, and its ``version.registered`` audit row,
chained with the store's own ``auditchain``) with its own number, digest, paths, tags and time.
The stored paths point at blobs that do not exist: the operations measured on these catalogs
(get, alias set, search, register of new files) never open old blobs.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH = 20_000


def fill(data_dir: Path, names: list[str], per_model: int, tags_of: Callable[[int], dict[str, str]]) -> float:
    """Grow the stopped daemon's catalog to ``len(names) * per_model`` versions; the seconds it took.

    Version ``v`` of model ``m`` is workload item ``k = v * len(names) + m`` (round robin, the order
    the API fill uses), numbered ``1.<v>.0`` as regd numbers same-signature versions.
    """
    from regd.store import auditchain

    t0 = time.perf_counter()
    conn = sqlite3.connect(data_dir / "registry.db", isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA synchronous = OFF")  # the fill is not what is measured
        conn.execute("PRAGMA foreign_keys = ON")
        tpl = dict(conn.execute(
            "SELECT v.* FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = ? AND v.version = '1.0.0'",
            (names[0],),
        ).fetchone())  # fmt: skip
        details = dict(conn.execute("SELECT * FROM version_details WHERE version_id = ?", (tpl["id"],)).fetchone())
        audit_tpl = dict(conn.execute(
            "SELECT * FROM audit WHERE action = 'version.registered' AND model = ? AND version = '1.0.0'", (names[0],)
        ).fetchone())  # fmt: skip
        model_tpl = dict(conn.execute("SELECT * FROM models WHERE name = ?", (names[0],)).fetchone())
        last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        audit_id, prev_hash = int(last[0]), str(last[1])
        version_id = int(conn.execute("SELECT max(id) FROM versions").fetchone()[0])
        objects = tpl["stored_path"].rsplit("/", 2)[0]
        src_dir = tpl["source_path"].rsplit("/", 1)[0]
        tpl_digest = tpl["digest"]
        audit_details = json.loads(audit_tpl["details"])

        conn.execute("BEGIN")
        model_ids = {names[0]: int(model_tpl["id"])}
        for name in names[1:]:
            cur = conn.execute(
                "INSERT INTO models (name, created_at, created_by, updated_at) VALUES (?, ?, ?, ?)",
                (name, model_tpl["created_at"], model_tpl["created_by"], model_tpl["updated_at"]),
            )
            model_ids[name] = int(cur.lastrowid)

        vcols = [c for c in tpl]
        dcols = [c for c in details]
        vsql = f"INSERT INTO versions ({','.join(vcols)}) VALUES ({','.join('?' * len(vcols))})"
        dsql = f"INSERT INTO version_details ({','.join(dcols)}) VALUES ({','.join('?' * len(dcols))})"
        tsql = "INSERT INTO tags (version_id, key, value) VALUES (?, ?, ?)"
        asql = (
            "INSERT INTO audit (id, at, actor, action, model, version, from_value, to_value, reason, details, "
            "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
        )
        vrows: list[list[Any]] = []
        drows: list[list[Any]] = []
        trows: list[tuple[Any, ...]] = []
        arows: list[tuple[Any, ...]] = []

        def flush() -> None:
            conn.executemany(vsql, vrows)
            conn.executemany(dsql, drows)
            conn.executemany(tsql, trows)
            conn.executemany(asql, arows)
            vrows.clear(), drows.clear(), trows.clear(), arows.clear()

        n = len(names)
        at = int(tpl["created_at"])
        for v in range(per_model):
            number = f"1.{v}.0"
            for m, name in enumerate(names):
                if m == 0 and v == 0:
                    continue
                k = v * n + m
                version_id += 1
                at += 1
                digest = hashlib.sha256(f"bulk-{k}".encode()).hexdigest()
                source = f"{src_dir}/bulk-{k}.safetensors"
                row = dict(tpl, id=version_id, model_id=model_ids[name], major=1, minor=v, patch=0, version=number,
                           digest=digest, stored_path=f"{objects}/{digest[:2]}/{digest}", source_path=source,
                           created_at=at)  # fmt: skip
                vrows.append([row[c] for c in vcols])
                drow = dict(details, version_id=version_id, files=details["files"].replace(tpl_digest, digest))
                drows.append([drow[c] for c in dcols])
                trows.extend((version_id, key, value) for key, value in tags_of(k).items())
                audit_id += 1
                det = dict(audit_details, digest=digest, source=source)
                content = auditchain.content_of(
                    id=audit_id, at=at, actor=audit_tpl["actor"], action="version.registered", model=name,
                    version=number, from_=None, to=None, reason=None, details=det,
                )  # fmt: skip
                digest_row = auditchain.row_hash(prev_hash, content)
                arows.append((audit_id, at, audit_tpl["actor"], "version.registered", name, number, None, None, None,
                              json.dumps(det, separators=(",", ":"), ensure_ascii=False), prev_hash, digest_row))  # fmt: skip
                prev_hash = digest_row
                if len(vrows) >= BATCH:
                    flush()
        flush()
        conn.execute("UPDATE models SET updated_at = ?", (at,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


def analyze(data_dir: Path) -> float:
    """Refresh the planner's statistics (what ``PRAGMA optimize`` at a daemon's stop does after growth)."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(data_dir / "registry.db", isolation_level=None)
    try:
        conn.execute("ANALYZE")
    finally:
        conn.close()
    return time.perf_counter() - t0
