"""The search filter's syntax tree: what ``search_grammar`` builds and ``search_sql`` compiles.

Every node keeps the 0-based offset of the text it came from, so an error found while compiling
(an unknown stage, a metric compared with a string) can point at the exact character.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias


@dataclass(frozen=True, slots=True, eq=False)
class Value:
    """A literal: a string, a number, ``true``/``false`` or ``null``."""

    kind: Literal["string", "number", "bool", "null"]
    value: str | float | bool | None
    pos: int
    text: str
    """The literal as written, for messages."""


@dataclass(frozen=True, slots=True, eq=False)
class FieldRef:
    """``stage``, or a keyed field such as ``metrics.accuracy`` (name ``metrics``, key ``accuracy``)."""

    name: str
    """Lower-cased: field names and keywords are case-insensitive, keys are not."""
    key: str | None
    pos: int
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class Comparison:
    field: FieldRef
    op: str
    """One of ``= != < <= > >=``, ``like``, ``not like``, ``in``, ``not in``."""
    values: tuple[Value, ...]
    """One value, or the items of an ``in`` list."""
    op_pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Group:
    """Parentheses, kept so the nesting limit can point at the one that goes too deep."""

    inner: Node
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class BoolOp:
    op: Literal["and", "or"]
    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True, eq=False)
class Ordering:
    """A parsed ``order_by``."""

    field: FieldRef
    descending: bool | None
    """None when the text names no direction."""


Node: TypeAlias = Comparison | Not | Group | BoolOp


class FilterProblem(Exception):
    """A syntax or meaning error at ``pos`` (0-based); ``search.py`` turns it into InvalidParams."""

    def __init__(self, pos: int, what: str, expected: list[str] | None = None, hint: str = "") -> None:
        super().__init__(what)
        self.pos = pos
        self.what = what
        self.expected = expected or []
        self.hint = hint
