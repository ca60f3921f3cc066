"""Storage failures (a full disk, a read-only or unwritable data dir) told apart from bugs.

The blob store and the catalog raise what the OS and SQLite raise: ``OSError`` (ENOSPC, EROFS,
EACCES ...) and ``sqlite3.OperationalError`` ("database or disk is full", "attempt to write a
readonly database"). Both leave nothing half-written (a temp is removed, a transaction rolled back),
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


def storage_error(exc: BaseException, data_dir: Path, catalog_path: Path | None = None) -> RegdError | None:
    """The contract error for a storage failure ``exc``, or None when it is something else (a bug)."""
    if isinstance(exc, sqlite3.OperationalError):
        return _from_sqlite(exc, data_dir, catalog_path)
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
