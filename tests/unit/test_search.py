"""The search filter language: parsed by lark, compiled to parameterised SQL, run on a real SQLite file."""

from __future__ import annotations

import sqlite3
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regd.errors import InvalidParams
from regd.store import search_grammar
from regd.store.migrations import migrate
from regd.store.search import CompiledFilter, CompiledOrder, compile_filter, compile_order

INJECTED_KEY = "a' or '1'='1"


def _us(text: str) -> int:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# id: model, version, stage, format, created_at (UTC), created_by, digest, description
VERSIONS = {
    1: ("fraud-detector", "1.0.0", "archived", "pickle", "2025-12-15T09:00:00", "alice", "aaaa" + "0" * 60, "first cut"),
    2: ("fraud-detector", "1.2.0", "production", "onnx", "2026-01-01T00:00:00", "alice", "ab12" + "0" * 60, None),
    3: ("fraud-detector", "1.10.0", "staging", "onnx", "2026-01-05T12:00:00", "bob", "ab13" + "0" * 60,
        'it\'s "quoted"'),
    4: ("fraud-lite", "1.0.0", "none", "safetensors", "2026-01-01T23:59:59.999999", "bob", "cd00" + "0" * 60, None),
    5: ("churn", "2.0.0", "production", "pickle", "2026-02-01T00:00:00", "carol", "ef00" + "0" * 60, "50% off_sale"),
    6: ("churn", "2.1.0", "none", "gguf", "2026-02-02T00:00:00", "alice", "ff00" + "0" * 60, None),
}
METRICS = [
    (1, "accuracy", 0.85), (1, "loss", 0.4), (2, "accuracy", 0.93), (2, "loss", 0.2), (3, "accuracy", 0.95),
    (4, "accuracy", 0.91), (4, INJECTED_KEY, 1.0), (5, "auc", 0.7),
]
# version, key, JSON value, text, num
PARAMS = [
    (1, "optimizer", '"adam"', "adam", None), (1, "lr", "0.1", "0.1", 0.1),
    (2, "optimizer", '"adam"', "adam", None), (2, "lr", "0.001", "0.001", 0.001),
    (3, "optimizer", '"sgd"', "sgd", None), (3, "lr", "0.005", "0.005", 0.005),
    (4, "lr", '"0.01"', "0.01", None), (4, "use_bn", "true", "true", None),
    (5, "optimizer", '"adam"', "adam", None), (5, "epochs", "10", "10", 10.0),
]
TAGS = [
    (1, "team", "risk"), (2, "team", "risk"), (2, "team/owner", "x"), (3, "team", "growth"),
    (4, "team", "risk"), (4, "note", "héllo ünïcode ☃"), (5, "team/owner", "x"), (5, "env", "prod"),
    (6, "env", ""), (6, "comment", "'' OR 1=1 --"),
]
ALIASES = [(1, "champion", 2), (1, "challenger", 3), (3, "champion", 5), (2, "best", 4)]
ALL = set(VERSIONS)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path: Path = tmp_path_factory.mktemp("search") / "registry.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    models = {name: i for i, name in enumerate(dict.fromkeys(v[0] for v in VERSIONS.values()), 1)}
    conn.execute("BEGIN")
    for name, mid in models.items():
        conn.execute("INSERT INTO models (id, name, created_at, created_by, updated_at) VALUES (?, ?, 0, 'alice', 0)",
                     (mid, name))
    for vid, (model, version, stage, fmt, created, by, digest, description) in VERSIONS.items():
        major, minor, patch = map(int, version.split("."))
        conn.execute(
            "INSERT INTO versions (id, model_id, major, minor, patch, version, stage, digest, size, kind, format,"
            " stored_path, source_path, store_mode, description, run_id, created_at, created_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, 'file', ?, '/s', '/src', 'copy', ?, ?, ?, ?)",
            (vid, models[model], major, minor, patch, version, stage, digest, fmt, description, f"run-{vid}",
             _us(created), by),
        )
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?)", METRICS)
    conn.executemany("INSERT INTO params VALUES (?, ?, ?, ?, ?)", PARAMS)
    conn.executemany("INSERT INTO tags VALUES (?, ?, ?)", TAGS)
    conn.executemany("INSERT INTO aliases VALUES (?, ?, ?, 0)", ALIASES)
    conn.execute("COMMIT")
    yield conn
    conn.close()


def run(db: sqlite3.Connection, compiled: CompiledFilter) -> set[int]:
    sql = f"SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE {compiled.where}"
    return {row[0] for row in db.execute(sql, compiled.params)}


def matches(db: sqlite3.Connection, text: str) -> set[int]:
    return run(db, compile_filter(text))


def error(text: str) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        compile_filter(text)
    return info.value


def tables_intact(db: sqlite3.Connection) -> None:
    counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
              for t in ("models", "versions", "metrics", "params", "tags", "aliases")}
    assert counts == {"models": 3, "versions": 6, "metrics": len(METRICS), "params": len(PARAMS),
                      "tags": len(TAGS), "aliases": len(ALIASES)}


# --- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.accuracy > 0.9 and (tags.team = 'risk' or stage = 'production')", {2, 4}),
        ("name like 'fraud%' and not stage = 'archived'", {2, 3, 4}),
        ("stage in ('staging', 'production')", {2, 3, 5}),
        ("version >= '1.2.0'", {2, 3, 5, 6}),
        ("version > '1.9.0'", {3, 5, 6}),  # semver, not text: 1.10.0 > 1.9.0
        ("version = '1.0.0'", {1, 4}),
        ("version != '1.0.0'", {2, 3, 5, 6}),
        ("version in ('1.2.0', '2.1.0')", {2, 6}),
        ("version not in ('1.2.0', '2.1.0')", {1, 3, 4, 5}),
        ("version like '1.1%'", {3}),
        ("created_at >= '2026-01-01'", {2, 3, 4, 5, 6}),
        ("created_at = '2026-01-01'", {2, 4}),  # a date is the whole UTC day
        ("created_at != '2026-01-01'", {1, 3, 5, 6}),
        ("created_at < '2026-01-01'", {1}),
        ("created_at <= '2026-01-01'", {1, 2, 4}),
        ("created_at > '2026-01-01'", {3, 5, 6}),
        ("created_at >= '2026-01-05T12:00:00Z'", {3, 5, 6}),
        ("created_at >= '2026-01-05T13:00:00+01:00'", {3, 5, 6}),
        ("created_at > '2026-01-05T12:00:00'", {5, 6}),  # no offset: UTC
        ("created_at = '2026-01-01T23:59:59.999999'", {4}),
        ('params.optimizer = "adam" and params.lr < 0.01', {2}),
        ("alias = 'champion'", {2, 5}),
        ("alias != 'champion'", {1, 3, 4, 6}),
        ("alias in ('best', 'challenger')", {3, 4}),
        ("alias not in ('best', 'challenger')", {1, 2, 5, 6}),
        ("alias like 'champ%'", {2, 5}),
        ("alias = null", {1, 6}),
        ("alias != null", {2, 3, 4, 5}),
        ("alias = 'champion' or alias = 'best'", {2, 4, 5}),
        ("format != 'pickle'", {2, 3, 4, 6}),
        ("created_by = 'alice'", {1, 2, 6}),
        ("tags.\"team/owner\" = 'x'", {2, 5}),
        ("tags.team/owner = 'x'", {2, 5}),
        ("model = 'churn'", {5, 6}),
        ("name != 'churn'", {1, 2, 3, 4}),
        ("name in ('churn', 'fraud-lite')", {4, 5, 6}),
        ("name not like 'fraud%'", {5, 6}),
        ("digest like 'ab1%'", {2, 3}),
        ("digest like 'AB12%'", {2}),
        (f"digest = '{'ab13' + '0' * 60}'", {3}),
        ("digest like '%0000'", ALL),
        ("run_id = 'run-3'", {3}),
        ("description like '%quoted%'", {3}),
        ("description = null", {2, 4, 6}),
        ("description != null", {1, 3, 5}),
        ("description != 'first cut'", {3, 5}),  # a missing description matches neither = nor !=
        ("not description = 'first cut'", {2, 3, 4, 5, 6}),
        ("description like '50\\%%'", {5}),  # \% is a literal percent sign
        ("description like '%\\_%'", {5}),
        ("description like '%_%'", {1, 3, 5}),
        ("description = 'it''s \"quoted\"'", {3}),
        ("description = \"it's \\\"quoted\\\"\"", {3}),
        ("description = 'it\\'s \"quoted\"'", {3}),
    ],
)
def test_examples(db: sqlite3.Connection, text: str, expected: set[int]) -> None:
    assert matches(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.accuracy = 0.93", {2}),
        ("metrics.accuracy != 0.93", {1, 3, 4}),  # a version without the metric matches neither = nor !=
        ("not metrics.accuracy = 0.93", {1, 3, 4, 5, 6}),  # plain negation does match it
        ("metrics.accuracy in (0.85, 0.95)", {1, 3}),
        ("metrics.accuracy not in (0.85, 0.95)", {2, 4}),
        ("metrics.accuracy >= 9.3e-1", {2, 3}),
        ("metrics.loss < 1", {1, 2}),
        ("metrics.accuracy > -1", {1, 2, 3, 4}),
        ("metrics.auc = null", {1, 2, 3, 4, 6}),
        ("metrics.auc != null", {5}),
        ("tags.team = 'risk'", {1, 2, 4}),
        ("tags.team != 'risk'", {3}),
        ("not tags.team = 'risk'", {3, 5, 6}),
        ("tags.team = null", {5, 6}),
        ("tags.team != null", {1, 2, 3, 4}),
        ("tags.team in ('risk', 'growth')", {1, 2, 3, 4}),
        ("tags.team not in ('risk')", {3}),
        ("tags.team like 'R%'", {1, 2, 4}),  # SQLite's LIKE: ASCII case-insensitive
        ("tags.team not like 'r%'", {3}),
        ("tags.env = ''", {6}),
        ("tags.team > 'h'", {1, 2, 4}),
        ("tags.project = 'p1' or tags.team = 'growth'", {3}),
        ("(tags.team = 'growth' or (alias = 'best' or metrics.auc = 0.7)) and format != 'gguf'", {3, 4, 5}),
        ("params.lr = 0.001", {2}),
        ("params.lr < 0.02", {2, 3}),  # version 4's lr is the string "0.01"
        ("params.lr = '0.01'", {4}),
        ("params.lr != 0.1", {2, 3, 4}),
        ("params.optimizer != 'adam'", {3}),
        ("params.use_bn = true", {4}),
        ("params.use_bn = false", set()),
        ("params.lr in (0.1, '0.01')", {1, 4}),
        ("params.lr not in (0.1, '0.01')", {2, 3}),
        ("params.epochs >= 10", {5}),
        ("params.optimizer like 'ad%'", {1, 2, 5}),
        ("params.epochs = null", {1, 2, 3, 4, 6}),
        ("tags.note = 'héllo ünïcode ☃'", {4}),
        ("tags.note like 'H%☃'", {4}),
        (f"metrics.\"{INJECTED_KEY.replace(chr(34), chr(34) * 2)}\" = 1", {4}),
    ],
)
def test_keyed_fields(db: sqlite3.Connection, text: str, expected: set[int]) -> None:
    assert matches(db, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a or b and c  ==  a or (b and c)
        ("stage = 'archived' or tags.team = 'risk' and format = 'onnx'", {1, 2}),
        ("(stage = 'archived' or tags.team = 'risk') and format = 'onnx'", {2}),
        # not a and b  ==  (not a) and b
        ("not stage = 'production' and tags.team = 'risk'", {1, 4}),
        ("not (stage = 'production' and tags.team = 'risk')", {1, 3, 4, 5, 6}),
        ("not not stage = 'production'", {2, 5}),
        ("NAME LIKE 'FRAUD%' AND NOT Stage = 'ARCHIVED'", {2, 3, 4}),
        ("stage='production'or(stage='none')", {2, 4, 5, 6}),
        ("  stage = 'none'\n  and\tformat = \"gguf\"  ", {6}),
        ("((((stage = 'none'))))", {4, 6}),
    ],
)
def test_precedence_and_layout(db: sqlite3.Connection, text: str, expected: set[int]) -> None:
    assert matches(db, text) == expected


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_empty_filter_matches_everything(db: sqlite3.Connection, text: str | None) -> None:
    compiled = compile_filter(text)
    assert compiled == CompiledFilter("1", ())
    assert run(db, compiled) == ALL


def test_values_and_keys_travel_as_parameters() -> None:
    compiled = compile_filter("metrics.accuracy > 0.9 and tags.team = 'risk' and name = 'fraud'")
    assert "accuracy" not in compiled.where and "risk" not in compiled.where and "fraud" not in compiled.where
    assert compiled.params == ("accuracy", 0.9, "team", "risk", "fraud")


def test_sql_forms() -> None:
    # the first top-level equality on a tag drives through the (key, value, version_id) index ...
    compiled = compile_filter("tags.team = 'risk' and metrics.accuracy > 0.9")
    assert compiled.where == (
        "(v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ?) AND "
        "EXISTS (SELECT 1 FROM metrics WHERE version_id = v.id AND key = ? AND value > ?))"
    )
    # ... an OR of such equalities drives as one IN over their union ...
    assert compile_filter("tags.p = 'a' or tags.p = 'b'").where == (
        "v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ? UNION ALL "
        "SELECT version_id FROM tags WHERE key = ? AND value = ?)"
    )
    # ... and nothing drives when the model is pinned by name, or under not / a mixed or
    for text in ("name = 'x' and tags.team = 'risk'", "not tags.team = 'risk'", "tags.team = 'r' or stage = 'none'"):
        assert "v.id IN" not in compile_filter(text).where


# --- errors --------------------------------------------------------------------------------------


def test_syntax_error_message_and_position() -> None:
    text = "tags.team = 'a' and name xyz 'b'"
    exc = error(text)
    assert exc.message == "filter: unexpected 'xyz' at column 26; expected a comparison operator"
    assert exc.data == {
        "filter": text, "position": 25, "line": 1, "column": 26,
        "expected": ["=", "!=", "<", "<=", ">", ">=", "like", "not like", "in", "not in"],
    }
    assert exc.code == -32602


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("stage =", 7, "filter: unexpected end of text at column 8; expected a value"),
        ("name = 'abc", 7, "filter: unterminated string at column 8; close it with '"),
        ("(stage = 'none'", 15, "filter: unexpected end of text at column 16; expected 'and', 'or' or ')'"),
        ("stage = 'none')", 14, "filter: unexpected ')' at column 15; expected 'and', 'or' or the end"),
        ("stage = 'none' stage", 15, "filter: unexpected 'stage' at column 16; expected 'and', 'or' or the end"),
        ("and stage = 'none'", 0, "filter: unexpected 'and' at column 1; expected a field, 'not' or '('"),
        ("stage == 'none'", 7, "filter: unexpected '=' at column 8; expected a value"),
        ("stage = 'none'; DROP TABLE versions", 14, None),
        ("stage in ()", 10, "filter: empty 'in' list at column 11; expected a value"),
        ("stage in ('none',)", 17, None),
        ("stage = 'none' andx format = 'onnx'", 15, None),
        ("version = 1.2.0", 13, None),
        ("metrics. accuracy > 1", 7, None),
        ("stage = 'none'\nand format xyz", 26, "filter: unexpected 'xyz' at line 2, column 12; expected a comparison operator"),
        ("stage = \x00", 8, "filter: unexpected '\\x00' at column 9; expected a value"),
        ("stage = 'none' \x00", 15, None),
    ],
)
def test_syntax_errors(text: str, position: int, message: str | None) -> None:
    exc = error(text)
    assert exc.data["position"] == position
    line = text.count("\n", 0, position) + 1
    assert (exc.data["line"], exc.data["column"]) == (line, position - (text.rfind("\n", 0, position) + 1) + 1)
    if message is not None:
        assert exc.message == message


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("foo = 1", 0, "unknown field 'foo'"),
        ("metrics = 1", 0, "'metrics' needs a key"),
        ("stage.x = 'a'", 0, "unknown field 'stage.x'"),
        ("metrics.accuracy > 'high'", 19, "metrics.accuracy compares with a number, not 'high'"),
        ("metrics.accuracy in (1, 'x')", 24, "compares with a number"),
        ("metrics.accuracy like '1%'", 17, "'like' does not apply to metrics.accuracy"),
        ("metrics.accuracy = true", 19, "compares with a number"),
        ("tags.team = 5", 12, "tags.team compares with a string, not 5"),
        ("stage = 'prod'", 8, "unknown stage 'prod'"),
        ("stage in ('none', 'live')", 18, "unknown stage 'live'"),
        ("stage < 'none'", 6, "'<' does not apply to stage"),
        ("name = 3", 7, "name compares with a string"),
        ("name = null", 7, "name always has a value"),
        ("tags.team < null", 12, "null cannot be used with '<'"),
        ("tags.team in ('a', null)", 19, "null cannot be used with 'in'"),
        ("version >= '1.2'", 11, "'1.2' is not a version"),
        ("version = 'v1.2.0'", 10, "is not a version"),
        ("created_at >= '2026-02-30'", 14, "'2026-02-30' is not a date"),
        ("created_at >= 'yesterday'", 14, "is not a date"),
        ("created_at in ('2026-01-01')", 11, "'in' does not apply to created_at"),
        ("created_at > 1767225600", 13, "created_at compares with a string"),
        ("alias > 'a'", 6, "'>' does not apply to alias"),
        ("params.lr like 0.1", 15, "params.lr compares with a string"),
        ("stage = 'none' and (format = 'onnx' or foo.bar = 1)", 39, "unknown field 'foo.bar'"),
    ],
)
def test_meaning_errors(text: str, position: int, fragment: str) -> None:
    exc = error(text)
    assert fragment in exc.message
    assert exc.data["position"] == position, exc.message
    assert exc.message.startswith("filter: ")


def test_limits() -> None:
    ok = "stage = 'none' or " * 199 + "stage = 'none'"
    assert len(ok) <= 4096 and compile_filter(ok).where.count("?") == 200
    exc = error(ok + " or run_id = 'x'")
    assert "more than 200 conditions" in exc.message and exc.data["position"] == len(ok) + 4

    deep = "(" * 64 + "stage = 'none'" + ")" * 64
    assert compile_filter(deep).params == ("none",)
    exc = error("(" * 65 + "stage = 'none'" + ")" * 65)
    assert "nested deeper than 64" in exc.message and exc.data["position"] == 64
    exc = error("not " * 65 + "stage = 'none'")
    assert exc.data["position"] == 64 * 4
    exc = error("(" * 2000 + "stage = 'none'" + ")" * 2000)  # no RecursionError
    assert exc.data["position"] == 64

    items = ", ".join(["1"] * 1000)
    assert len(compile_filter(f"metrics.a in ({items})").params) == 1001
    text = f"metrics.a in ({items}, 2)"
    exc = error(text)
    assert "longer than 1000 items" in exc.message and exc.data["position"] == text.index("2)")

    exc = error("stage = '" + "x" * 4100 + "'")
    assert "longer than 4096 characters" in exc.message and exc.data["position"] == 4096
    assert len(exc.data["filter"]) == 4096


@pytest.mark.parametrize("bad", [123, b"stage = 'none'", ["stage"]])
def test_non_string_filter(bad: object) -> None:
    with pytest.raises(InvalidParams):
        compile_filter(bad)  # type: ignore[arg-type]


# --- injection -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.team = '' OR 1=1 --'", None),
        ("name = 'x'; DROP TABLE versions; --'", None),
        ("name = 'x''; DROP TABLE versions; --'", set()),
        ("name = \"x\\\"; DROP TABLE versions; --\"", set()),
        ("tags.team = \"risk' OR '1'='1\"", set()),
        ("tags.\"team' OR 1=1 --\" = 'risk'", set()),
        ("metrics.\"a' or '1'='1\" = 1", {4}),  # the literal key, which exists
        ("metrics.\"x) OR 1=1 OR (1\" > 0", set()),
        ("tags.comment = \"'' OR 1=1 --\"", {6}),  # the literal value, which exists
        ("stage = 'none' or 1 = 1", None),
        ("stage = 'none' --", None),
        ("stage = 'none' /* */", None),
        ("stage = 'none' UNION SELECT 1", None),
        ("tags.team = 'ri\x00sk'", set()),
        ("tags.\"te\x00am\" = 'risk'", set()),
        ("tags.team = 'risk\x00' or stage = 'none'", {4, 6}),
        ("tags.team = '\ud800'", None),  # a lone surrogate would fail in sqlite3's binding
        ("tags.\u0000team = 'risk'", None),
        ("description = '☃' or name like '%ü%'", set()),
        ("tags.team = 'r' || 'isk'", None),
        ("tags.team = 0x72", None),
        ("version = '1.0.0' or (v.major = 1)", None),
    ],
)
def test_injection_attempts(db: sqlite3.Connection, text: str, expected: set[int] | None) -> None:
    if expected is None:
        error(text)
    else:
        assert matches(db, text) == expected
    tables_intact(db)


# --- order_by ------------------------------------------------------------------------------------


def ordered(db: sqlite3.Connection, order: CompiledOrder) -> list[int]:
    sql = f"SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE 1 ORDER BY {order.clause()}"
    return [row[0] for row in db.execute(sql, order.params)]


@pytest.mark.parametrize(
    ("text", "field", "descending", "ids"),
    [
        (None, "created_at", True, [6, 5, 4, 3, 2, 1]),
        ("", "created_at", True, [6, 5, 4, 3, 2, 1]),
        ("created_at desc", "created_at", True, [6, 5, 4, 3, 2, 1]),
        ("created_at", "created_at", False, [1, 2, 3, 4, 5, 6]),
        ("version", "version", False, [1, 4, 2, 3, 5, 6]),
        ("VERSION DESC", "version", True, [6, 5, 3, 2, 4, 1]),
        ("name", "name", False, [5, 6, 1, 2, 3, 4]),
        ("model desc", "name", True, [4, 3, 2, 1, 6, 5]),
        ("metrics.accuracy desc", "metrics.accuracy", True, [3, 2, 4, 1, 6, 5]),  # missing last
        ("metrics.accuracy asc", "metrics.accuracy", False, [1, 4, 2, 3, 5, 6]),
        ("params.lr asc", "params.lr", False, [2, 3, 1, 4, 5, 6]),
        ("tags.team", "tags.team", False, [3, 1, 2, 4, 5, 6]),
        ('tags."team/owner" desc', "tags.team/owner", True, [5, 2, 6, 4, 3, 1]),
        ('tags."a b"', 'tags."a b"', False, [1, 2, 3, 4, 5, 6]),
        ("stage", "stage", False, [1, 4, 6, 2, 5, 3]),
    ],
)
def test_compile_order(db: sqlite3.Connection, text: str | None, field: str, descending: bool, ids: list[int]) -> None:
    order = compile_order(text)
    assert (order.field, order.descending) == (field, descending)
    assert ordered(db, order) == ids


def test_order_by_default_is_by_id() -> None:
    assert compile_order(None) == CompiledOrder(None, (), True, "created_at")
    assert compile_order("metrics.accuracy desc").params == ("accuracy",)


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("foo", 0, "unknown field 'foo'"),
        ("alias", 0, "cannot order by alias"),
        ("metrics desc", 0, "needs a key"),
        ("name sideways", 5, "unexpected 'sideways'"),
        ("name desc, version", 9, "unexpected ','"),
        ("", None, None),
    ],
)
def test_compile_order_errors(text: str, position: int | None, fragment: str | None) -> None:
    if position is None:
        compile_order(text)
        return
    with pytest.raises(InvalidParams) as info:
        compile_order(text)
    assert fragment in info.value.message and info.value.message.startswith("order_by: ")
    assert info.value.data["position"] == position and info.value.data["order_by"] == text


# --- speed ---------------------------------------------------------------------------------------


def test_grammar_built_once() -> None:
    # parsing speed is a bench figure, not an assertion: here only that the grammar is not rebuilt
    assert search_grammar._parser() is search_grammar._parser()


# --- properties ----------------------------------------------------------------------------------

SENTINEL = "§"  # never appears in the SQL text: user values only travel as parameters
_FIELDS_TEXT = ["name", "model", "format", "created_by", "digest", "run_id", "description"]
_keys = st.one_of(
    st.sampled_from(["accuracy", "team", "lr", "a.b", "x-y", "n:1/2"]),
    st.text(min_size=0, max_size=8).map(lambda k: '"' + (SENTINEL + k).replace("\\", "\\\\").replace('"', '""') + '"'),
)
_strings = st.text(max_size=10).map(lambda s: "'" + (SENTINEL + s).replace("\\", "\\\\").replace("'", "''") + "'")
_numbers = st.one_of(
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_stages = st.sampled_from(["'none'", "'staging'", "'Production'", "'archived'"])
_versions = st.tuples(*[st.integers(0, 999999999)] * 3).map(lambda t: "'%d.%d.%d'" % t)
_dates = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: f"'{d.isoformat()}'")
_ops = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
_set_ops = st.sampled_from(["=", "!=", "like", "not like"])


def _lists(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.lists(values, min_size=1, max_size=4).map(lambda xs: "(" + ", ".join(xs) + ")")


def _cmp(field: st.SearchStrategy[str], ops: st.SearchStrategy[str], values: st.SearchStrategy[str],
         with_in: bool = True) -> st.SearchStrategy[str]:
    single = st.builds(lambda f, o, v: f"{f} {o} {v}", field, ops, values)
    if not with_in:
        return single
    listed = st.builds(lambda f, o, v: f"{f} {o} {v}", field, st.sampled_from(["in", "not in", "IN"]), _lists(values))
    return single | listed


_comparisons = st.one_of(
    _cmp(st.sampled_from(_FIELDS_TEXT), _ops | _set_ops, _strings),
    _cmp(st.just("stage"), st.sampled_from(["=", "!="]), _stages),
    _cmp(st.just("stage"), st.sampled_from(["like", "not like"]), _strings, with_in=False),
    _cmp(st.just("version"), _ops, _versions),
    _cmp(st.just("created_at"), _ops, _dates, with_in=False),
    _cmp(st.just("alias"), _set_ops, _strings),
    _cmp(_keys.map(lambda k: f"metrics.{k}"), _ops, _numbers),
    _cmp(_keys.map(lambda k: f"tags.{k}"), _ops | _set_ops, _strings),
    _cmp(_keys.map(lambda k: f"params.{k}"), _ops, _numbers | _strings | st.sampled_from(["true", "FALSE"])),
    _cmp(st.sampled_from(["tags.x", "metrics.y", "params.z", "alias", "description"]),
         st.sampled_from(["=", "!="]), st.just("null"), with_in=False),
)
_filters = st.recursive(
    _comparisons,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} OR {b}", inner, inner),
        inner.map(lambda a: f"not {a}"),
        inner.map(lambda a: f"({a})"),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_filters)
def test_well_formed_filters_compile_to_sql_sqlite_accepts(db: sqlite3.Connection, text: str) -> None:
    compiled = compile_filter(text)
    assert SENTINEL not in compiled.where
    assert compiled.where.count("?") == len(compiled.params)
    run(db, compiled)
    run(db, compile_filter(f"not ({text}) and stage = 'none'"))


_soup = st.lists(
    st.sampled_from([
        "name", "stage", "tags.team", "metrics.acc", "params.lr", 'tags."', "version", "alias", "created_at",
        "=", "!=", "<", ">=", "like", "not", "in", "and", "or", "(", ")", ",", "'a'", '"b"', "'", '"', "1",
        "-2.5e3", "null", "true", "'none'", "'1.2.0'", "'2026-01-01'", ";", "--", "\x00", "\\", "é", " ", "\n",
    ]),
    max_size=20,
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=60), _soup, st.text(alphabet=string.printable, max_size=40)))
def test_any_text_compiles_or_raises_invalid_params(db: sqlite3.Connection, text: str) -> None:
    try:
        compiled = compile_filter(text)
    except InvalidParams as exc:
        assert exc.message.startswith("filter: ")
        assert 0 <= exc.data["position"] <= len(text)
        return
    run(db, compiled)
