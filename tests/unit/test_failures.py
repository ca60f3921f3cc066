"""Storage failures become contract errors naming the cause and the place; everything else stays a bug."""

from __future__ import annotations

import errno
import json
import sqlite3
from pathlib import Path

import pytest

from regd.api.jsonrpc import loads
from regd.errors import Conflict, InvalidParams, StorageError
from regd.store.failures import storage_error

DATA = Path("/srv/regd-data")


@pytest.mark.parametrize(
    ("err", "kind", "words"),
    [
        (errno.ENOSPC, "no_space", "no space left"),
        (errno.EDQUOT, "no_space", "no space left"),
        (errno.EROFS, "read_only", "read-only"),
        (errno.EACCES, "permission_denied", "permission denied"),
    ],
)
def test_an_os_error_writing_the_data_dir_is_a_storage_conflict_naming_cause_and_path(err, kind, words):
    path = str(DATA / "objects" / "tmp" / "0123.tmp")
    mapped = storage_error(OSError(err, "whatever", path), DATA)
    assert isinstance(mapped, StorageError) and isinstance(mapped, Conflict) and mapped.code == -32002
    assert words in mapped.message and path in mapped.message and str(DATA) in mapped.message
    assert mapped.data["storage"] == kind and mapped.data["path"] == path


def test_the_store_s_own_context_is_kept_and_a_nameless_error_names_the_data_dir():
    mapped = storage_error(OSError(errno.ENOSPC, "No space left on device (storing /runs/m.pt in /srv)"), DATA)
    assert mapped is not None
    assert "(storing /runs/m.pt in /srv)" in mapped.message and str(DATA) in mapped.message


def test_permission_denied_outside_the_data_dir_is_a_file_we_cannot_read():
    mapped = storage_error(PermissionError(errno.EACCES, "Permission denied", "/runs/bert/model.safetensors"), DATA)
    assert isinstance(mapped, InvalidParams)
    assert mapped.message == "cannot read /runs/bert/model.safetensors: permission denied"


@pytest.mark.parametrize(
    ("message", "kind"),
    [("database or disk is full", "no_space"), ("attempt to write a readonly database", "read_only")],
)
def test_sqlite_full_and_readonly_name_the_catalog(message, kind):
    mapped = storage_error(sqlite3.OperationalError(message), DATA, DATA / "registry.db")
    assert isinstance(mapped, StorageError) and mapped.data["storage"] == kind
    assert str(DATA / "registry.db") in mapped.message


@pytest.mark.parametrize(
    "exc",
    [
        FileNotFoundError(errno.ENOENT, "gone", "/x"),
        OSError(errno.EIO, "I/O error"),
        sqlite3.OperationalError("no such table: versions"),
        ValueError("x"),
    ],
)
def test_anything_else_is_not_a_storage_failure(exc):
    assert storage_error(exc, DATA) is None


def test_a_real_full_sqlite_database_is_recognised(tmp_path):
    db = sqlite3.connect(tmp_path / "tiny.db", isolation_level=None)
    db.execute("PRAGMA max_page_count = 2")
    db.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.OperationalError) as caught:
        db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
    db.close()
    mapped = storage_error(caught.value, tmp_path, tmp_path / "tiny.db")
    assert mapped is not None and mapped.data["storage"] == "no_space"


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", '{"id": NaN}', "[1e400]"])
def test_the_parser_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        loads(text)


def test_the_parser_reads_ordinary_numbers_as_json_does():
    text = '{"a": 1.5, "b": -2e-5, "c": 1e308, "d": 10, "e": [0.1]}'
    assert loads(text) == json.loads(text)
