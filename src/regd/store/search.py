r"""Compile a search filter (and an ``order_by``) into a parameterised SQL ``WHERE`` expression.

    compile_filter("metrics.accuracy > 0.9 and tags.team = 'risk'")
    -> CompiledFilter(where="(EXISTS (SELECT 1 FROM metrics WHERE version_id = v.id AND key = ? AND
       value > ?) AND v.id IN (SELECT version_id FROM tags WHERE key = ? AND value = ?))",
       params=('accuracy', 0.9, 'team', 'risk'))

The caller runs ``SELECT ... FROM versions v JOIN models m ON m.id = v.model_id WHERE <where>
ORDER BY <order.clause()> LIMIT n`` with ``filter.params + order.params``. User values, keys
included, only ever travel as parameters. ``search_grammar`` parses, ``search_sql`` compiles (and
explains the SQL forms chosen, with timings at 1M versions).

The language (each rule has a test in tests/unit/test_search.py):
- ``= != < <= > >= like in``, ``not in``, ``not like``; ``and`` binds tighter than ``or``, ``not``
  tighter than both; keywords and field names are case-insensitive, keys are not.
- Strings in '...' or "...": a doubled quote or ``\'`` ``\"`` ``\\`` ``\n`` ``\t`` ``\r``;
  any other ``\x`` is kept as written, so ``like 'a\_b'`` reaches SQLite's ``ESCAPE '\'``.
  Numbers: ``1``, ``-2.5``, ``1e-3``. ``true``/``false``. ``null`` only in ``= null`` / ``!= null``.
- Fields: ``name`` (``model``), ``version``, ``stage``, ``alias``, ``format``, ``created_at``,
  ``created_by``, ``digest``, ``run_id``, ``description``, ``metrics.<key>``, ``params.<key>``,
  ``tags.<key>``; a key is ``[A-Za-z0-9_][A-Za-z0-9_.:/-]*`` or quoted: ``tags."team/owner"``.
- ``metrics.k``, ``params.k``, ``tags.k``: a version without the key matches neither ``=`` nor
  ``!=`` (nor ``not in``, ``not like``); ``not (...)`` is plain negation, so ``not tags.k = 'x'``
  does match it. ``tags.k = null`` means "has no tag k", ``tags.k != null`` "has one".
- ``params.k``: a number compares the numeric value, a string (or ``true``/``false``) the text.
- ``alias != 'x'`` is ``not alias = 'x'``; ``alias = null`` means no alias at all.
- ``version`` compares as semver (1.10.0 > 1.9.0); its ``like`` matches the text.
- ``created_at``: a date is that whole UTC day (``= '2026-01-02'`` is the day, ``<=`` includes
  it); a datetime without an offset is UTC.
- ``like`` is SQLite's: ASCII case-insensitive. ``digest like 'ab12%'`` is a prefix range.
- Limits: 4096 characters, 64 levels of nesting, 200 conditions, 1000 items in an ``in`` list.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from regd.errors import InvalidParams
from regd.store.search_ast import FilterProblem, Ordering
from regd.store.search_grammar import MAX_LENGTH, parse
from regd.store.search_sql import COLUMNS, FIELDS, KEYED, check_field, compile_where, normalised

__all__ = ["FIELDS", "CompiledFilter", "CompiledOrder", "compile_filter", "compile_order"]


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
        where, params = compile_where(root)
    except FilterProblem as problem:
        raise _invalid("filter", text, problem) from None
    return CompiledFilter(where, tuple(params))


def compile_order(text: str | None) -> CompiledOrder:
    """Compile an ``order_by``: ``created_at desc`` (the default: newest first, by v.id), ``version``,
    ``name``, ``metrics.accuracy desc``, ``params.lr asc``, ``tags.x``; no direction means ascending.

    An unknown field (or ``alias``, which a version may have several of) raises InvalidParams.
    """
    if text is None or (isinstance(text, str) and not text.strip()):
        return CompiledOrder(None, (), True, "created_at")
    if not isinstance(text, str):
        raise InvalidParams("order_by: must be a string", data={"order_by": repr(text)[:MAX_LENGTH]})
    try:
        ordering = parse(text, "order")
        assert isinstance(ordering, Ordering)
        field = ordering.field
        check_field(field)
        descending = bool(ordering.descending)
        if field.name in KEYED:
            assert field.key is not None
            value = "coalesce(num, text)" if field.name == "params" else "value"
            expr = f"(SELECT {value} FROM {field.name} WHERE version_id = v.id AND key = ?)"
            return CompiledOrder(expr, (field.key,), descending, normalised(field))
        if field.name == "created_at":  # ids grow with creation time; v.id is the cheap, total order
            return CompiledOrder(None, (), descending, "created_at")
        if field.name == "version":
            expr = "printf('%09d.%09d.%09d', v.major, v.minor, v.patch)"
            return CompiledOrder(expr, (), descending, "version")
        if field.name == "alias":
            raise FilterProblem(field.pos, "cannot order by alias", [f for f in FIELDS if f != "alias"])
        return CompiledOrder(COLUMNS[field.name], (), descending, normalised(field))
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
