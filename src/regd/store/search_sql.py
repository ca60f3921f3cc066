"""Give the filter AST its meaning: each field's rules and the SQL it becomes.

The SQL text is made only of the constants in this module; every user value, keys included, is a
``?`` parameter appended in the order its placeholder appears.

Which form a test on a tag, param, metric or alias takes decides the plan SQLite picks for the
caller's ``... WHERE <filter> ORDER BY v.id DESC LIMIT n`` (measured on 1M versions):

- ``v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ?)`` is run from the
  ``tags_key_value`` index and walked in ``v.id`` order: 0.1 ms for a tag on 50 versions, ~20 ms for
  one of 10 values (100k versions), but a pass over all the matches when the tag is common
  (~130 ms at 670k). Used for the one *driving* term: the first equality (or OR of equalities) on a
  tag, param, metric or alias in the filter's top-level ``and``, an alias one first; none when the
  filter pins the model by name, whose own versions are the cheaper path.
- ``EXISTS (SELECT 1 FROM tags WHERE version_id = v.id AND ...)`` is a primary-key probe per
  version scanned in ``v.id`` order and stops when the LIMIT is full: 0.1 ms when many match, a full
  scan (~400 ms) when few do. Used for everything else: ranges, ``!=``, ``like``, and terms under
  ``or`` / ``not`` (an IN there turns into a MULTI-INDEX OR that ANALYZE stats can make run per model).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from regd.domain import SEMVER_RE, Stage
from regd.store.search_ast import BoolOp, Comparison, FieldRef, FilterProblem, Group, Node, Not, Value

COLUMNS = {
    "name": "m.name",
    "model": "m.name",
    "stage": "v.stage",
    "format": "v.format",
    "created_by": "v.created_by",
    "digest": "v.digest",
    "run_id": "v.run_id",
    "description": "v.description",
}
KEYED = ("metrics", "params", "tags")
FIELDS = [*COLUMNS, "version", "alias", "created_at", *(f"{k}.<key>" for k in KEYED)]
"""Every field a filter may name, for messages and completion."""

_ORDERING = ["=", "!=", "<", "<=", ">", ">="]
_SET = ["=", "!=", "in", "not in", "like", "not like"]
_ALL = _ORDERING + ["in", "not in", "like", "not like"]
_NUMERIC = _ORDERING + ["in", "not in"]
_SQL_OP = {"like": "LIKE", "not like": "NOT LIKE", "in": "IN", "not in": "NOT IN"}
_POSITIVE = {"!=": "=", "not in": "in", "not like": "like"}
_STAGES = [s.value for s in Stage]
_BARE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def compile_where(root: Node) -> tuple[str, list[Any]]:
    """The SQL boolean expression for a filter and its parameters; FilterProblem if it makes no sense."""
    compiler = _Compiler(_driver(root))
    return compiler.node(root), compiler.params


def check_field(field: FieldRef) -> None:
    """Refuse a field regd does not know, or ``metrics`` without its key."""
    if field.name in KEYED and field.key is None:
        raise FilterProblem(field.pos, f"'{field.text}' needs a key", [f"{field.name}.<key>"],
                            hint=f"write {field.name}.<key>, e.g. {field.name}.accuracy")
    known = field.name in KEYED if field.key is not None else field.name in FIELDS
    if not known:
        raise FilterProblem(field.pos, f"unknown field '{field.text}'", FIELDS,
                            hint="expected one of " + ", ".join(FIELDS))


def normalised(field: FieldRef) -> str:
    """``metrics.accuracy``; a key that needs it is quoted: ``tags."a b"``."""
    if field.key is None:
        return "name" if field.name == "model" else field.name
    if _BARE_KEY.fullmatch(field.key):
        return f"{field.name}.{field.key}"
    return f'{field.name}."' + field.key.replace('"', '""') + '"'


def _conjuncts(node: Node) -> list[Node]:
    """The top-level ``and`` terms, through parentheses."""
    while isinstance(node, Group):
        node = node.inner
    if isinstance(node, BoolOp) and node.op == "and":
        return [c for operand in node.operands for c in _conjuncts(operand)]
    return [node]


def _lookups(node: Node) -> list[Comparison] | None:
    """The equalities on tags, params, metrics or aliases that ``node`` ORs together, or None."""
    while isinstance(node, Group):
        node = node.inner
    if isinstance(node, Comparison):
        keyed = node.field.name in KEYED and node.field.key is not None
        ok = (keyed or node.field.name == "alias") and node.op in ("=", "in")
        return [node] if ok and all(v.kind != "null" for v in node.values) else None
    if isinstance(node, BoolOp) and node.op == "or":
        terms: list[Comparison] = []
        for operand in node.operands:
            inner = _lookups(operand)
            if inner is None:
                return None
            terms += inner
        return terms
    return None


def _driver(root: Node) -> Node | None:
    """The one top-level term to run from its index (see the module docstring)."""
    terms = _conjuncts(root)
    for t in terms:
        if isinstance(t, Comparison) and t.field.name in ("name", "model") and t.op in ("=", "in"):
            return None
    candidates = [t for t in terms if _lookups(t) is not None]
    aliases = [t for t in candidates if all(c.field.name == "alias" for c in _lookups(t) or ())]
    return (aliases or candidates or [None])[0]


class _Compiler:
    """Walk the AST, appending SQL text and its parameters in the same order."""

    def __init__(self, driver: Node | None) -> None:
        self.driver = driver
        self.params: list[Any] = []

    def node(self, node: Node) -> str:
        if node is self.driver and not isinstance(node, Comparison):
            # an OR of lookups: one IN over their UNION ALL, walked in v.id order like a single one
            selects = [self.lookup(c) for c in _lookups(node) or ()]
            return "v.id IN (" + " UNION ALL ".join(selects) + ")"
        if isinstance(node, Group):
            return self.node(node.inner)
        if isinstance(node, Not):
            return f"NOT {self.node(node.operand)}"
        if isinstance(node, BoolOp):
            joiner = " AND " if node.op == "and" else " OR "
            return "(" + joiner.join(self.node(operand) for operand in node.operands) + ")"
        return self.comparison(node)

    def comparison(self, c: Comparison) -> str:
        check_field(c.field)
        null = any(v.kind == "null" for v in c.values)
        if null and (c.op not in ("=", "!=")):
            pos = next(v.pos for v in c.values if v.kind == "null")
            raise FilterProblem(pos, f"null cannot be used with '{c.op}'", ["=", "!="],
                                hint="only = null and != null test for absence")
        name = c.field.name
        if null and name in (*KEYED, "alias", "description"):
            return self.absence(c)
        if null:
            raise FilterProblem(c.values[0].pos, f"{name} always has a value", ["string"])
        if name in KEYED:
            return f"v.id IN ({self.lookup(c)})" if c is self.driver else self.exists(c)
        if name == "alias":
            if c.op in _POSITIVE:  # "does not carry alias x", not "carries some other alias"
                return "NOT " + self.exists(Comparison(c.field, _POSITIVE[c.op], c.values, c.op_pos))
            return f"v.id IN ({self.lookup(c)})" if c is self.driver else self.exists(c)
        if name == "version":
            return self.version(c)
        if name == "created_at":
            return self.created_at(c)
        return self.column(c)

    def absence(self, c: Comparison) -> str:
        """``x = null``: the version has no such tag, metric, param, alias or description."""
        if c.field.name == "description":
            return "v.description IS NULL" if c.op == "=" else "v.description IS NOT NULL"
        if c.field.name == "alias":
            sql = "EXISTS (SELECT 1 FROM aliases WHERE version_id = v.id)"
        else:
            sql = f"EXISTS (SELECT 1 FROM {c.field.name} WHERE version_id = v.id AND {self.emit('key = ?', c.field.key)})"
        return sql if c.op == "!=" else f"NOT {sql}"

    # --- plain columns -------------------------------------------------------------------------

    def column(self, c: Comparison) -> str:
        name, col = c.field.name, COLUMNS[c.field.name]
        _allow(c, _SET if name == "stage" else _ALL)
        values = _strings(c)
        if name == "stage" and "like" not in c.op:
            for v, text in zip(c.values, values):
                if text.lower() not in _STAGES:
                    raise FilterProblem(v.pos, f"unknown stage {v.text}", _STAGES,
                                        hint="expected one of " + ", ".join(_STAGES))
            values = [text.lower() for text in values]
        if name == "digest" and c.op == "like" and re.fullmatch(r"[0-9A-Za-z]+%", values[0]):
            # a prefix: a range on versions_digest instead of a LIKE scan (digests are lower-case hex)
            prefix = values[0][:-1].lower()
            return self.emit("(v.digest >= ? AND v.digest < ?)", prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        if name in ("name", "model"):
            # through models, not m: the plan starts from versions_model_created whichever join
            # order the caller's query gets (a CROSS JOIN, or ANALYZE stats)
            return "v.model_id IN (SELECT id FROM models WHERE " + self.test("name", c.op, values) + ")"
        sql = self.test(col, c.op, values)
        # a missing description matches neither = nor !=, and NOT of it stays true/false, never NULL
        return f"({col} IS NOT NULL AND {sql})" if name == "description" else sql

    def version(self, c: Comparison) -> str:
        _allow(c, _ALL)
        if "like" in c.op:
            return self.test("v.version", c.op, _strings(c))
        triples: list[int] = []
        for v, text in zip(c.values, _strings(c)):
            m = SEMVER_RE.match(text)
            if not m:
                raise FilterProblem(v.pos, f"{v.text} is not a version", ["MAJOR.MINOR.PATCH"],
                                    hint="expected MAJOR.MINOR.PATCH, e.g. '1.2.0'")
            triples += (int(m[1]), int(m[2]), int(m[3]))
        if c.op in ("in", "not in"):
            rows = ", ".join(["(?, ?, ?)"] * len(c.values))
            return self.emit(f"(v.major, v.minor, v.patch) {_SQL_OP[c.op]} (VALUES {rows})", *triples)
        return self.emit(f"(v.major, v.minor, v.patch) {c.op} (?, ?, ?)", *triples)

    def created_at(self, c: Comparison) -> str:
        _allow(c, _ORDERING)
        (text,) = _strings(c)
        start, end = _instant(text, c.values[0])
        if end is None:  # a datetime: exact
            return self.emit(f"v.created_at {c.op} ?", start)
        if c.op == "=":
            return self.emit("(v.created_at >= ? AND v.created_at < ?)", start, end)
        if c.op == "!=":
            return self.emit("(v.created_at < ? OR v.created_at >= ?)", start, end)
        op, at = {"<": ("<", start), "<=": ("<", end), ">": (">=", end), ">=": (">=", start)}[c.op]
        return self.emit(f"v.created_at {op} ?", at)

    # --- aliases, metrics, params, tags --------------------------------------------------------

    def lookup(self, c: Comparison) -> str:
        """``SELECT version_id`` of the rows matching ``c``, from its (key, value, version_id) index."""
        table = "aliases" if c.field.name == "alias" else c.field.name
        return f"SELECT version_id FROM {table} WHERE {self.condition(c)}"

    def exists(self, c: Comparison) -> str:
        """A primary-key probe per version: cheap while the scan in v.id order fills the LIMIT."""
        table = "aliases" if c.field.name == "alias" else c.field.name
        return f"EXISTS (SELECT 1 FROM {table} WHERE version_id = v.id AND {self.condition(c)})"

    def condition(self, c: Comparison) -> str:
        """The test on one row of aliases, metrics, params or tags."""
        check_field(c.field)
        if c.field.name == "alias":
            _allow(c, _SET)
            return self.test("alias", c.op, _strings(c))
        key = self.emit("key = ?", c.field.key)
        if c.field.name == "metrics":
            _allow(c, _NUMERIC, hint="metrics are numbers")
            return f"{key} AND " + self.test("value", c.op, _numbers(c))
        _allow(c, _ALL)
        if c.field.name == "tags" or "like" in c.op:
            column = "value" if c.field.name == "tags" else "text"
            return f"{key} AND " + self.test(column, c.op, _strings(c))
        return f"{key} AND " + self.param(c)

    def param(self, c: Comparison) -> str:
        """A number compares ``num``, anything else ``text`` (``true`` is the JSON text 'true')."""
        nums = [v.value for v in c.values if v.kind == "number"]
        texts = [_param_text(v) for v in c.values if v.kind != "number"]
        if c.op in ("in", "not in"):
            parts = []
            if nums:  # num is NULL for a non-number: keep the test true/false so NOT works
                parts.append("(num IS NOT NULL AND " + self.test("num", "in", nums) + ")")
            if texts:
                parts.append(self.test("text", "in", texts))
            either = "(" + " OR ".join(parts) + ")"
            return either if c.op == "in" else f"NOT {either}"
        if nums:
            sql = self.test("num", c.op, nums)
            return f"(num IS NULL OR {sql})" if c.op == "!=" else sql
        return self.test("text", c.op, texts)

    # --- pieces --------------------------------------------------------------------------------

    def test(self, col: str, op: str, values: Sequence[Any]) -> str:
        """``col op ?`` (or ``IN (?, ...)``, ``LIKE ? ESCAPE '\\'``), its values appended to params."""
        if op in ("in", "not in"):
            sql = f"{col} {_SQL_OP[op]} (" + ", ".join("?" * len(values)) + ")"
        elif op in ("like", "not like"):
            sql = f"{col} {_SQL_OP[op]} ? ESCAPE '\\'"
        else:
            sql = f"{col} {op} ?"
        return self.emit(sql, *values)

    def emit(self, sql: str, *params: Any) -> str:
        self.params.extend(params)
        return sql


def _strings(c: Comparison) -> list[str]:
    for v in c.values:
        if not isinstance(v.value, str):
            raise FilterProblem(v.pos, f"{c.field.text} compares with a string, not {v.text}", ["string"],
                                hint="quote it")
    return [str(v.value) for v in c.values]


def _numbers(c: Comparison) -> list[float]:
    for v in c.values:
        if v.kind != "number":
            raise FilterProblem(v.pos, f"{c.field.text} compares with a number, not {v.text}", ["number"])
    return [float(v.value) for v in c.values]  # type: ignore[arg-type]


def _allow(c: Comparison, ops: list[str], hint: str = "") -> None:
    if c.op not in ops:
        raise FilterProblem(c.op_pos, f"'{c.op}' does not apply to {c.field.text}", ops,
                            hint=hint or "expected one of " + " ".join(ops))


def _param_text(v: Value) -> str:
    """What the params table's ``text`` column holds for a non-numeric literal."""
    if v.kind == "bool":
        return "true" if v.value else "false"
    return str(v.value)


def _instant(text: str, v: Value) -> tuple[int, int | None]:
    """A date or datetime as unix microseconds (UTC); a date also gives the next day's start."""
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            day = datetime.combine(date.fromisoformat(raw), datetime.min.time(), UTC)
            return _micros(day), _micros(day + timedelta(days=1))
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return _micros(moment), None
    except (ValueError, OverflowError):
        raise FilterProblem(v.pos, f"{v.text} is not a date", ["YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[+HH:MM]"],
                            hint="expected an ISO date or datetime, e.g. '2026-01-31' or '2026-01-31T12:00:00Z'"
                            ) from None


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)
