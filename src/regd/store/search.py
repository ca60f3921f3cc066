"""Compile a search filter (and an ``order_by``) into a parameterised SQL ``WHERE`` expression.

    compile_filter("metrics.accuracy > 0.9 and tags.team = 'risk'")
    -> CompiledFilter(where="(EXISTS (SELECT 1 FROM metrics WHERE version_id = v.id AND key = ? AND
       value > ?) AND v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ?))",
       params=('accuracy', 0.9, 'team', 'risk'))

The SQL is made only of constants in this module; every user value, keys included, travels as a
``?`` parameter. The caller runs ``SELECT ... FROM versions v JOIN models m ON m.id = v.model_id
WHERE <where> ORDER BY <order> LIMIT n`` with ``filter.params + order.params``.

Semantics worth knowing (see the tests for each):
- ``metrics.k``, ``params.k``, ``tags.k``: a version without the key matches neither ``=`` nor
  ``!=`` (nor ``not in``, ``not like``); ``not (...)`` is plain negation, so ``not tags.k = 'x'``
  does match it. ``tags.k = null`` means "has no tag k", ``tags.k != null`` "has one".
- ``params.k``: a number compares the numeric value, a string (or ``true``/``false``) the text.
- ``alias != 'x'`` is ``not alias = 'x'`` (the version does not carry alias x); ``alias = null``
  means no alias at all.
- ``version`` compares as semver (1.10.0 > 1.9.0); ``like`` matches the text.
- ``created_at``: a date means that whole UTC day (``= '2026-01-02'`` is the day, ``<=`` includes
  it); a datetime without an offset is UTC.
- ``like`` is SQLite's (ASCII case-insensitive); ``\\`` escapes ``%`` and ``_``.

Which SQL form each test takes (measured on 1M versions, numbers in the module's tests' notes):
an equality on a tag, param, metric or alias in the filter's top-level ``and`` becomes
``v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ?)``, which SQLite runs from the
``tags_key_value`` index and walks in ``v.id`` order: fast when it is selective, and it costs a pass
over the matches when it is not. Everything else (ranges, ``!=``, ``like``, and tests under ``or``
or ``not``) becomes a correlated ``EXISTS``, a primary-key probe per scanned version, which stops as
soon as the LIMIT is filled. Only the first such equality drives (an alias first); none does when
the filter pins the model by ``name``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from regd.domain import SEMVER_RE, Stage
from regd.errors import InvalidParams
from regd.store.search_grammar import (
    MAX_LENGTH,
    BoolOp,
    Comparison,
    FieldRef,
    FilterProblem,
    Group,
    Node,
    Not,
    Ordering,
    Value,
    parse,
)

__all__ = ["CompiledFilter", "CompiledOrder", "compile_filter", "compile_order", "FIELDS"]

_COLUMNS = {
    "name": "m.name",
    "model": "m.name",
    "stage": "v.stage",
    "format": "v.format",
    "created_by": "v.created_by",
    "digest": "v.digest",
    "run_id": "v.run_id",
    "description": "v.description",
}
_KEYED = ("metrics", "params", "tags")
FIELDS = [*_COLUMNS, "version", "alias", "created_at", *(f"{k}.<key>" for k in _KEYED)]
"""Every field a filter may name, for messages and completion."""

_ORDERING = ["=", "!=", "<", "<=", ">", ">="]
_SET = ["=", "!=", "in", "not in", "like", "not like"]
_ALL = _ORDERING + ["in", "not in", "like", "not like"]
_SQL_OP = {"like": "LIKE", "not like": "NOT LIKE", "in": "IN", "not in": "NOT IN"}
_NEGATED = {"!=": "=", "not in": "in", "not like": "like"}
_STAGES = [s.value for s in Stage]
_BARE_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


@dataclass(frozen=True)
class CompiledFilter:
    where: str
    """SQL boolean expression over aliases v (versions) and m (models); ``'1'`` when the filter is empty."""
    params: tuple[Any, ...]


@dataclass(frozen=True)
class CompiledOrder:
    expr: str | None
    """SQL expression giving the sort key (NULL for a version without the key); None: order by v.id."""
    params: tuple[Any, ...]
    descending: bool
    field: str
    """Normalised, e.g. ``metrics.accuracy``."""

    def clause(self) -> str:
        """The ``ORDER BY`` body: the key (versions without it last), then ``v.id`` as the tie-break."""
        direction = "DESC" if self.descending else "ASC"
        if self.expr is None:
            return f"v.id {direction}"
        return f"{self.expr} {direction} NULLS LAST, v.id {direction}"


def compile_filter(text: str | None) -> CompiledFilter:
    """Parse a filter and compile it to a parameterised WHERE expression; InvalidParams if it is bad."""
    if text is None:
        return CompiledFilter("1", ())
    if not isinstance(text, str):
        raise InvalidParams("filter: must be a string", data={"filter": repr(text)[:MAX_LENGTH]})
    return _compile_filter(text)


@functools.lru_cache(maxsize=512)
def _compile_filter(text: str) -> CompiledFilter:
    if not text.strip():
        return CompiledFilter("1", ())
    try:
        root = parse(text, "filter")
        assert not isinstance(root, Ordering)
        compiler = _Compiler(_driver(root))
        where = compiler.node(root)
    except FilterProblem as problem:
        raise _invalid("filter", text, problem) from None
    return CompiledFilter(where, tuple(compiler.params))


def compile_order(text: str | None) -> CompiledOrder:
    """`created_at desc` (default: newest first = v.id desc), `version`, `name`, `metrics.accuracy desc`,
    `params.lr asc`, `tags.x`; no direction means ascending; unknown field → InvalidParams."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return CompiledOrder(None, (), True, "created_at")
    if not isinstance(text, str):
        raise InvalidParams("order_by: must be a string", data={"order_by": repr(text)[:MAX_LENGTH]})
    try:
        ordering = parse(text, "order")
        assert isinstance(ordering, Ordering)
        field = ordering.field
        _check_field(field)
        descending = bool(ordering.descending)
        if field.name in _KEYED:
            assert field.key is not None
            value = "coalesce(num, text)" if field.name == "params" else "value"
            expr = f"(SELECT {value} FROM {field.name} WHERE version_id = v.id AND key = ?)"
            return CompiledOrder(expr, (field.key,), descending, _normalised(field))
        if field.name == "created_at":  # ids grow with creation time; v.id is the cheap, total order
            return CompiledOrder(None, (), descending, "created_at")
        if field.name == "version":
            expr = "printf('%09d.%09d.%09d', v.major, v.minor, v.patch)"
            return CompiledOrder(expr, (), descending, "version")
        if field.name == "alias":
            raise FilterProblem(field.pos, "cannot order by alias", [f for f in FIELDS if f != "alias"])
        name = "name" if field.name == "model" else field.name
        return CompiledOrder(_COLUMNS[field.name], (), descending, name)
    except FilterProblem as problem:
        raise _invalid("order_by", text, problem) from None


def _invalid(label: str, text: str, problem: FilterProblem) -> InvalidParams:
    pos = problem.pos
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    where = f"column {column}" if line == 1 else f"line {line}, column {column}"
    message = f"{label}: {problem.what} at {where}" + (f"; {problem.hint}" if problem.hint else "")
    data = {
        label: text[:MAX_LENGTH],
        "position": pos,
        "line": line,
        "column": column,
        "expected": problem.expected,
    }
    return InvalidParams(message, data=data)


def _check_field(field: FieldRef) -> None:
    if field.name in _KEYED and field.key is None:
        raise FilterProblem(field.pos, f"'{field.text}' needs a key", [f"{field.name}.<key>"],
                            hint=f"write {field.name}.<key>, e.g. {field.name}.accuracy")
    if field.key is None and field.name in (*_COLUMNS, "version", "alias", "created_at"):
        return
    if field.key is not None and field.name in _KEYED:
        return
    raise FilterProblem(field.pos, f"unknown field '{field.text}'", FIELDS,
                        hint="expected one of " + ", ".join(FIELDS))


def _normalised(field: FieldRef) -> str:
    key = field.key or ""
    if _BARE_KEY.fullmatch(key):
        return f"{field.name}.{key}"
    return f'{field.name}."' + key.replace('"', '""') + '"'


def _conjuncts(node: Node) -> list[Node]:
    """The top-level ``and`` terms, through parentheses."""
    while isinstance(node, Group):
        node = node.inner
    if isinstance(node, BoolOp) and node.op == "and":
        return [c for operand in node.operands for c in _conjuncts(operand)]
    return [node]


def _lookup_terms(node: Node) -> list[Comparison] | None:
    """The equalities on tags, params, metrics or aliases that ``node`` ORs together, or None."""
    while isinstance(node, Group):
        node = node.inner
    if isinstance(node, Comparison):
        ok = node.op in ("=", "in") and all(v.kind != "null" for v in node.values) and (
            node.field.name == "alias" or (node.field.name in _KEYED and node.field.key is not None)
        )
        return [node] if ok else None
    if isinstance(node, BoolOp) and node.op == "or":
        terms: list[Comparison] = []
        for operand in node.operands:
            inner = _lookup_terms(operand)
            if inner is None:
                return None
            terms += inner
        return terms
    return None


def _driver(root: Node) -> Node | None:
    """The one top-level term that should drive the search through an index (see the module docstring)."""
    terms = _conjuncts(root)
    for t in terms:
        if isinstance(t, Comparison) and t.field.name in ("name", "model") and t.op in ("=", "in"):
            return None  # the model's own versions, in id order, are already the cheapest path
    candidates = [t for t in terms if _lookup_terms(t) is not None]
    aliases = [t for t in candidates if all(c.field.name == "alias" for c in _lookup_terms(t) or ())]
    return (aliases or candidates or [None])[0]


class _Compiler:
    """Walk the AST, appending SQL text and its parameters in the same order."""

    def __init__(self, driver: Node | None) -> None:
        self.driver = driver
        self.params: list[Any] = []

    def node(self, node: Node) -> str:
        if node is self.driver and not isinstance(node, Comparison):
            while isinstance(node, Group):
                node = node.inner
            # an OR of lookups: one IN over their UNION ALL, walked in v.id order like a single one
            selects = [self.lookup(c) for c in _lookup_terms(node) or ()]
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
        _check_field(c.field)
        nulls = [v for v in c.values if v.kind == "null"]
        if nulls and (c.op not in ("=", "!=")):
            raise FilterProblem(nulls[0].pos, f"null cannot be used with '{c.op}'", ["=", "!="],
                                hint="only = null and != null test for absence")
        name = c.field.name
        if name in _KEYED:
            return self.keyed(c, bool(nulls))
        if name == "alias":
            return self.alias(c, bool(nulls))
        if nulls and name != "description":
            raise FilterProblem(nulls[0].pos, f"{name} always has a value", ["string"])
        if name == "version":
            return self.version(c)
        if name == "created_at":
            return self.created_at(c)
        return self.column(c, _COLUMNS[name], bool(nulls))

    # --- plain columns -----------------------------------------------------------------------

    def column(self, c: Comparison, col: str, null: bool) -> str:
        if null:  # only description is nullable
            return f"{col} IS NULL" if c.op == "=" else f"{col} IS NOT NULL"
        name = c.field.name
        if name == "stage":
            _allow(c, _SET)
            for v in self.strings(c):
                if c.op not in ("like", "not like") and v.value.lower() not in _STAGES:  # type: ignore[union-attr]
                    raise FilterProblem(v.pos, f"unknown stage {v.text}", _STAGES,
                                        hint="expected one of " + ", ".join(_STAGES))
            values = [v.value if "like" in c.op else v.value.lower() for v in c.values]  # type: ignore[union-attr]
        else:
            _allow(c, _ALL)
            values = [v.value for v in self.strings(c)]
        if name == "digest" and c.op == "like" and re.fullmatch(r"[0-9A-Za-z]+%", values[0]):  # type: ignore[arg-type]
            # a prefix: a range on the versions_digest index instead of a LIKE scan (digests are lower-case hex)
            prefix = values[0][:-1].lower()  # type: ignore[index]
            return self.emit("(v.digest >= ? AND v.digest < ?)", prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        if name in ("name", "model"):
            # through the models table, not m: the plan then starts from versions_model_created
            # whichever join order the caller's query gets (a CROSS JOIN or ANALYZE stats)
            return "v.model_id IN (SELECT id FROM models WHERE " + self.test("name", c.op, values) + ")"
        sql = self.test(col, c.op, values)
        return f"({col} IS NOT NULL AND {sql})" if name == "description" else sql

    def version(self, c: Comparison) -> str:
        _allow(c, _ALL)
        if "like" in c.op:
            return self.test("v.version", c.op, [v.value for v in self.strings(c)])
        triples: list[int] = []
        for v in self.strings(c):
            m = SEMVER_RE.match(v.value)  # type: ignore[arg-type]
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
        (v,) = self.strings(c)
        start, end = _instant(v)
        if end is None:  # a datetime: exact
            return self.emit(f"v.created_at {c.op} ?", start)
        if c.op == "=":
            return self.emit("(v.created_at >= ? AND v.created_at < ?)", start, end)
        if c.op == "!=":
            return self.emit("(v.created_at < ? OR v.created_at >= ?)", start, end)
        bound = {"<": ("<", start), "<=": ("<", end), ">": (">=", end), ">=": (">=", start)}
        op, at = bound[c.op]
        return self.emit(f"v.created_at {op} ?", at)

    # --- aliases, metrics, params, tags ------------------------------------------------------

    def alias(self, c: Comparison, null: bool) -> str:
        if null:
            sql = "EXISTS (SELECT 1 FROM aliases WHERE version_id = v.id)"
            return sql if c.op == "!=" else f"NOT {sql}"
        _allow(c, _SET)
        if c.op in _NEGATED:  # "does not carry alias x", not "carries some other alias"
            positive = Comparison(c.field, _NEGATED[c.op], c.values, c.op_pos)
            return "NOT " + self.exists("aliases", self.condition(positive))
        if c is self.driver:
            return f"v.id IN ({self.lookup(c)})"
        return self.exists("aliases", self.condition(c))

    def keyed(self, c: Comparison, null: bool) -> str:
        if null:
            sql = self.exists(c.field.name, self.emit("key = ?", c.field.key))
            return sql if c.op == "!=" else f"NOT {sql}"
        if c is self.driver:
            return f"v.id IN ({self.lookup(c)})"
        return self.exists(c.field.name, self.condition(c))

    def lookup(self, c: Comparison) -> str:
        """``SELECT version_id`` of the rows matching ``c``: walks the (key, value, version_id) index."""
        table = "aliases" if c.field.name == "alias" else c.field.name
        return f"SELECT version_id FROM {table} WHERE {self.condition(c)}"

    def exists(self, table: str, condition: str) -> str:
        """A primary-key probe per version: cheap while the scan in v.id order fills the LIMIT."""
        return f"EXISTS (SELECT 1 FROM {table} WHERE version_id = v.id AND {condition})"

    def condition(self, c: Comparison) -> str:
        """The test on one row of aliases, metrics, params or tags."""
        if c.field.name == "alias":
            _check_field(c.field)
            return self.test("alias", c.op, [v.value for v in self.strings(c)])
        key = self.emit("key = ?", c.field.key)
        if c.field.name == "metrics":
            _allow(c, _ALL[:8], hint="metrics are numbers")
            return f"{key} AND " + self.test("value", c.op, [v.value for v in self.numbers(c)])
        if c.field.name == "tags":
            _allow(c, _ALL)
            return f"{key} AND " + self.test("value", c.op, [v.value for v in self.strings(c)])
        return f"{key} AND " + self.param_test(c)

    def param_test(self, c: Comparison) -> str:
        _allow(c, _ALL)
        if "like" in c.op:
            return self.test("text", c.op, [v.value for v in self.strings(c)])
        nums = [v.value for v in c.values if v.kind == "number"]
        texts = [_text(v) for v in c.values if v.kind != "number"]
        if c.op in ("in", "not in"):
            parts = []
            if nums:
                parts.append("(num IS NOT NULL AND " + self.test("num", "in", nums) + ")")
            if texts:
                parts.append(self.test("text", "in", texts))
            either = "(" + " OR ".join(parts) + ")"
            return either if c.op == "in" else f"NOT {either}"
        if nums:
            sql = self.test("num", c.op, nums)
            return f"(num IS NULL OR {sql})" if c.op == "!=" else sql
        return self.test("text", c.op, texts)

    # --- pieces ------------------------------------------------------------------------------

    def test(self, col: str, op: str, values: Sequence[Any]) -> str:
        """``col op ?`` (or ``IN (?, ...)``, ``LIKE ? ESCAPE``), its values appended to params."""
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

    def strings(self, c: Comparison) -> tuple[Value, ...]:
        return _typed(c, "string", "a string", "quote it")

    def numbers(self, c: Comparison) -> tuple[Value, ...]:
        return _typed(c, "number", "a number", f"{c.field.text} is a number")


def _typed(c: Comparison, kind: str, what: str, hint: str) -> tuple[Value, ...]:
    for v in c.values:
        if v.kind != kind:
            raise FilterProblem(v.pos, f"{c.field.text} compares with {what}, not {v.text}", [kind], hint=hint)
    return c.values


def _allow(c: Comparison, ops: list[str], hint: str = "") -> None:
    if c.op not in ops:
        raise FilterProblem(c.op_pos, f"'{c.op}' does not apply to {c.field.text}", ops,
                            hint=hint or "expected one of " + " ".join(ops))


def _text(v: Value) -> str:
    """What the params table's ``text`` column holds for a non-numeric literal."""
    if v.kind == "bool":
        return "true" if v.value else "false"
    return str(v.value)


def _instant(v: Value) -> tuple[int, int | None]:
    """A date or datetime literal as unix microseconds (UTC); a date also gives the next day's start."""
    raw = str(v.value).strip()
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
                            hint="expected an ISO date or datetime, e.g. '2026-01-31' or '2026-01-31T12:00:00Z'") from None


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _MICRO
