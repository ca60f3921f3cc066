"""Storage failures (a full disk, a read-only or unwritable data dir) told apart from bugs.

The blob store and the catalog raise what the OS and SQLite raise: ``OSError`` (ENOSPC, EROFS,
EACCES ...) and ``sqlite3.OperationalError`` ("database or disk is full", "attempt to write a
readonly database"); a PostgreSQL catalog raises psycopg errors, told apart by their SQLSTATE. Both leave nothing half-written (a temp is removed, a transaction rolled back),
so the request is refused as a conflict with the state of the machine, naming the cause and where.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from regd.errors import InvalidParams, RegdError, StorageError

_OS_CAUSES = {
    errno.ENOSPC: ("no_space", "no space left on device"),
    errno.EDQUOT: ("no_space", "no space left (disk quota exceeded)"),
    errno.EROFS: ("read_only", "read-only file system"),
    errno.EACCES: ("permission_denied", "permission denied"),
    errno.EPERM: ("permission_denied", "permission denied (operation not permitted)"),
}
_SQLITE_CAUSES = {
    "SQLITE_FULL": ("no_space", "no space left (database or disk is full)"),
    "SQLITE_READONLY": ("read_only", "read-only (attempt to write a readonly database)"),
    "SQLITE_PERM": ("permission_denied", "permission denied"),
    "SQLITE_CANTOPEN": ("permission_denied", "cannot open the database file (permission denied?)"),
    "SQLITE_IOERR": ("io_error", "disk I/O error"),
}


_PG_CAUSES = {  # SQLSTATE, or its class (the first two characters), -> (kind, cause)
    "53100": ("no_space", "no space left on the PostgreSQL server (disk full)"),
    "53200": ("insufficient_resources", "the PostgreSQL server is out of memory"),
    "53300": ("insufficient_resources", "the PostgreSQL server has too many connections"),
    "53": ("insufficient_resources", "the PostgreSQL server is out of resources"),
    "25006": ("read_only", "read-only (the database refuses writes: a standby, or default_transaction_read_only)"),
    "42501": ("permission_denied", "permission denied (the database role may not write there)"),
    "57P01": ("unreachable", "the PostgreSQL server is shutting down"),
    "57P02": ("unreachable", "the PostgreSQL server crashed"),
    "57P03": ("unreachable", "the PostgreSQL server is not accepting connections yet"),
    "08": ("unreachable", "the connection to PostgreSQL failed"),
}


def storage_error(
    exc: BaseException, data_dir: Path, catalog_path: Path | None = None, catalog_url: str | None = None
) -> RegdError | None:
    """The contract error for a storage failure ``exc``, or None when it is something else (a bug)."""
    if isinstance(exc, sqlite3.OperationalError):
        return _from_sqlite(exc, data_dir, catalog_path)
    if type(exc).__module__.partition(".")[0] == "psycopg":  # not imported here: the team extra is optional
        return _from_postgres(exc, catalog_url or "(PostgreSQL)")
    if not isinstance(exc, OSError) or exc.errno not in _OS_CAUSES:
        return None
    kind, cause = _OS_CAUSES[exc.errno]
    extra = (exc.strerror or "").removeprefix(os.strerror(exc.errno)).strip()  # "(storing X in Y)" from the store
    cause = f"{cause} {extra}" if extra else cause
    path = _filename(exc)
    inside = path is None or _inside(path, data_dir)
    if kind == "permission_denied" and not inside:
        # not the store: a file the caller asked us to read (a file inside a model directory, say)
        return InvalidParams(f"cannot read {path}: {cause}", {"path": path})
    if path is None:
        where = f"regd's data dir {data_dir}"
    else:
        where = f"{path} (regd's data dir is {data_dir})" if inside else path
    return StorageError(
        f"cannot write {where}: {cause}; nothing was changed",
        {"storage": kind, "path": path or str(data_dir), "errno": errno.errorcode.get(exc.errno or 0, "")},
    )


def _from_sqlite(exc: sqlite3.OperationalError, data_dir: Path, catalog_path: Path | None) -> RegdError | None:
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    base = next((k for k in _SQLITE_CAUSES if name == k or name.startswith(k + "_")), None)
    if base is None:  # older SQLite bindings: only the message says
        if "disk is full" in text:
            base = "SQLITE_FULL"
        elif "readonly database" in text or "read-only" in text:
            base = "SQLITE_READONLY"
        elif "disk i/o error" in text:
            base = "SQLITE_IOERR"
        else:
            return None
    kind, cause = _SQLITE_CAUSES[base]
    path = str(catalog_path) if catalog_path is not None else str(data_dir / "registry.db")
    return StorageError(
        f"cannot write the catalog {path}: {cause}; nothing was changed",
        {"storage": kind, "path": path, "sqlite": name or str(exc)},
    )


def _from_postgres(exc: BaseException, url: str) -> RegdError | None:
    state = getattr(exc, "sqlstate", None) or ""
    found = _PG_CAUSES.get(state) or _PG_CAUSES.get(state[:2])
    if found is None and not state and type(exc).__name__ == "OperationalError":
        found = ("unreachable", "the connection to PostgreSQL was lost")  # no SQLSTATE: the server never answered
    if found is None:
        return None
    kind, cause = found
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if kind == "unreachable":
        # the outcome of a COMMIT whose answer was lost is unknown to the client: say so, never "nothing changed"
        message = f"cannot reach the catalog {url}: {cause}; regd reconnects on the next call, and a change that was in flight may or may not have been made (`regd audit` shows)"
    else:
        message = f"cannot write the catalog {url}: {cause}; nothing was changed"
    return StorageError(message, {"storage": kind, "catalog": url, "sqlstate": state or None, "detail": detail})


def _filename(exc: OSError) -> str | None:
    name = exc.filename
    if name is None:
        return None
    return os.fsdecode(name) if isinstance(name, (bytes, os.PathLike)) else str(name)


def _inside(path: str, data_dir: Path) -> bool:
    here = os.path.abspath(path)
    for root in {os.path.abspath(data_dir), os.path.realpath(data_dir)}:
        if here == root or here.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False
