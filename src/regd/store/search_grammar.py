"""The search filter language's grammar: text to a small AST, with exact error positions.

    metrics.accuracy > 0.9 and (tags.team = 'risk' or stage = 'production')

A LALR parser built once (lazily) from the grammar below; the AST is built during the parse by an
inline Transformer, so parsing is iterative (no recursion limit to hit) and cheap. ``search_sql``
gives the AST its meaning; nothing here knows about SQL.
"""

from __future__ import annotations

import functools
import re
from typing import Literal

from lark import Lark, Token, Transformer
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from regd.store.search_ast import BoolOp, Comparison, FieldRef, FilterProblem, Group, Node, Not, Ordering, Value

MAX_LENGTH = 4096
MAX_DEPTH = 64
MAX_CONDITIONS = 200
MAX_IN_ITEMS = 1000

GRAMMAR = r"""
?filter: or_expr
order: field [ASC | DESC]

?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT not_expr            -> negation
         | atom
?atom: comparison
     | LPAR or_expr RPAR           -> group

comparison: field COMPARATOR value
          | field LIKE value
          | field NOT LIKE value
          | field IN in_list
          | field NOT IN in_list
in_list: LPAR RPAR
       | LPAR value (_COMMA value)* RPAR
value: STRING | NUMBER | TRUE | FALSE | NULL
field: NAME | KEYED | KEYED_Q STRING

// keywords end at a word boundary: the contextual lexer would otherwise read `andx` as `and x`
NOT.2: /not\b/i
_AND.2: /and\b/i
_OR.2: /or\b/i
IN.2: /in\b/i
LIKE.2: /like\b/i
TRUE.2: /true\b/i
FALSE.2: /false\b/i
NULL.2: /null\b/i
ASC.2: /asc\b/i
DESC.2: /desc\b/i
COMPARATOR: "!=" | "<=" | ">=" | "=" | "<" | ">"
LPAR: "("
RPAR: ")"
_COMMA: ","
NAME: /(?!(?:not|and|or|in|like|true|false|null|asc|desc)\b)[a-z_][a-z0-9_]*/i
KEYED.3: /[a-z_][a-z0-9_]*\.[a-z0-9_][a-z0-9_.:\/-]*/i
KEYED_Q.3: /[a-z_][a-z0-9_]*\.(?=['"])/i
STRING: /'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"/s
NUMBER: /-?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?/i
%ignore /\s+/
"""

# --- parsing ---------------------------------------------------------------------------------

_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_ESCAPE_RE = {"'": re.compile(r"\\(.)|''", re.S), '"': re.compile(r'\\(.)|""', re.S)}


def unquote(literal: str) -> str:
    """Decode a quoted literal: doubled quotes and ``\\\\ \\' \\" \\n \\t \\r``; other ``\\x`` stay as written.

    Keeping unknown escapes lets ``like 'a\\_b'`` reach SQLite's ``ESCAPE '\\'`` unchanged.
    """

    def one(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)[0]
        return _ESCAPES.get(m.group(1), m.group(0))

    return _ESCAPE_RE[literal[0]].sub(one, literal[1:-1])


class _ToAst(Transformer):  # type: ignore[type-arg]
    """Build the AST as the LALR parser reduces (no tree, no recursion)."""

    def or_expr(self, children: list[Node]) -> BoolOp:
        return BoolOp("or", tuple(children))

    def and_expr(self, children: list[Node]) -> BoolOp:
        return BoolOp("and", tuple(children))

    def negation(self, children: list[object]) -> Not:
        tok, operand = children
        assert isinstance(tok, Token)
        return Not(operand, tok.start_pos)  # type: ignore[arg-type]

    def group(self, children: list[object]) -> Group:
        lpar, inner, _ = children
        assert isinstance(lpar, Token)
        return Group(inner, lpar.start_pos)  # type: ignore[arg-type]

    def comparison(self, children: list[object]) -> Comparison:
        field = children[0]
        *ops, operand = children[1:]
        assert isinstance(field, FieldRef)
        op = " ".join(str(t).lower() for t in ops)
        values = operand if isinstance(operand, tuple) else (operand,)
        return Comparison(field, op, values, ops[0].start_pos)  # type: ignore[union-attr, arg-type]

    def in_list(self, children: list[object]) -> tuple[Value, ...]:
        items = tuple(c for c in children if isinstance(c, Value))
        if not items:
            rpar = children[-1]
            assert isinstance(rpar, Token)
            raise FilterProblem(rpar.start_pos, "empty 'in' list", ["value"], hint="expected a value")
        if len(items) > MAX_IN_ITEMS:
            raise FilterProblem(items[MAX_IN_ITEMS].pos, f"'in' list longer than {MAX_IN_ITEMS} items")
        return items

    def value(self, children: list[Token]) -> Value:
        (tok,) = children
        text, pos = str(tok), tok.start_pos
        if tok.type == "STRING":
            return Value("string", unquote(text), pos, text)
        if tok.type == "NUMBER":
            return Value("number", float(text), pos, text)
        if tok.type == "NULL":
            return Value("null", None, pos, text)
        return Value("bool", tok.type == "TRUE", pos, text)

    def field(self, children: list[Token]) -> FieldRef:
        tok = children[0]
        text, pos = str(tok), tok.start_pos
        if tok.type == "NAME":
            return FieldRef(text.lower(), None, pos, text)
        name, _, key = text.partition(".")
        if tok.type == "KEYED_Q":
            key = unquote(str(children[1]))
            text += str(children[1])
        return FieldRef(name.lower(), key, pos, text)

    def order(self, children: list[object]) -> Ordering:
        field = children[0]
        assert isinstance(field, FieldRef)
        direction = children[1] if len(children) > 1 else None
        descending = None if direction is None else str(direction).lower() == "desc"
        return Ordering(field, descending)


@functools.cache
def _parser() -> Lark:
    # built on first use (~20 ms), then shared: parsing and compiling a filter takes ~0.1 ms
    return Lark(
        GRAMMAR,
        parser="lalr",
        lexer="contextual",
        start=["filter", "order"],
        transformer=_ToAst(),
        maybe_placeholders=False,
    )


def parse(text: str, start: Literal["filter", "order"] = "filter") -> Node | Ordering:
    """Parse a filter (or an ``order_by``) into the AST; raise FilterProblem with the position."""
    if len(text) > MAX_LENGTH:
        raise FilterProblem(MAX_LENGTH, f"text longer than {MAX_LENGTH} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FilterProblem(exc.start, "a lone surrogate is not valid text") from None
    try:
        tree = _parser().parse(text, start=start)
    except VisitError as exc:  # a FilterProblem from the transformer, wrapped by lark
        if isinstance(exc.orig_exc, FilterProblem):
            raise exc.orig_exc from None
        raise
    except UnexpectedInput as exc:
        raise _syntax_problem(text, exc, start) from None
    if start == "filter":
        check_limits(tree)  # type: ignore[arg-type]
    return tree  # type: ignore[return-value]


def check_limits(root: Node) -> None:
    """Refuse filters nested deeper than MAX_DEPTH or with more than MAX_CONDITIONS comparisons."""
    conditions = 0
    stack: list[tuple[Node, int]] = [(root, 0)]
    while stack:  # pre-order, left to right: the first offender in the text is the one reported
        node, depth = stack.pop()
        if isinstance(node, Comparison):
            conditions += 1
            if conditions > MAX_CONDITIONS:
                raise FilterProblem(node.field.pos, f"more than {MAX_CONDITIONS} conditions")
        elif isinstance(node, (Not, Group)):
            if depth + 1 > MAX_DEPTH:
                raise FilterProblem(node.pos, f"nested deeper than {MAX_DEPTH} levels")
            stack.append((node.operand if isinstance(node, Not) else node.inner, depth + 1))
        else:
            stack.extend((child, depth) for child in reversed(node.operands))


# --- syntax errors -----------------------------------------------------------------------------

_OPERATORS = ["=", "!=", "<", "<=", ">", ">=", "like", "not like", "in", "not in"]
_VALUE_TERMINALS = {"STRING", "NUMBER", "TRUE", "FALSE", "NULL"}
# terminal -> (phrase for the message, items for data["expected"]); the order is the display order
_EXPECTED: dict[str, tuple[str, list[str]]] = {
    "NAME": ("a field", ["field"]),
    "KEYED": ("a field", ["field"]),
    "KEYED_Q": ("a field", ["field"]),
    "COMPARATOR": ("a comparison operator", _OPERATORS),
    "LIKE": ("a comparison operator", _OPERATORS),
    "IN": ("a comparison operator", _OPERATORS),
    "STRING": ("a string", ["string"]),
    "NUMBER": ("a number", ["number"]),
    "TRUE": ("true", ["true"]),
    "FALSE": ("false", ["false"]),
    "NULL": ("null", ["null"]),
    "NOT": ("'not'", ["not"]),
    "LPAR": ("'('", ["("]),
    "_AND": ("'and'", ["and"]),
    "_OR": ("'or'", ["or"]),
    "RPAR": ("')'", [")"]),
    "_COMMA": ("','", [","]),
    "ASC": ("'asc'", ["asc"]),
    "DESC": ("'desc'", ["desc"]),
    "$END": ("the end", ["end"]),
}


def _expected(terminals: set[str]) -> tuple[list[str], list[str]]:
    """Readable phrases and items for a set of lark terminal names."""
    names = set(terminals)
    if "COMPARATOR" in names:
        names.discard("NOT")  # after a field, 'not' starts 'not in' / 'not like'
    phrases: list[str] = []
    items: list[str] = []
    if _VALUE_TERMINALS <= names:
        names -= _VALUE_TERMINALS
        phrases.append("a value")
        items += ["string", "number", "true", "false", "null"]
    for name, (phrase, its) in _EXPECTED.items():
        if name in names:
            if phrase not in phrases:
                phrases.append(phrase)
            items += [i for i in its if i not in items]
    return phrases, items


def _syntax_problem(text: str, exc: UnexpectedInput, start: str) -> FilterProblem:
    if isinstance(exc, UnexpectedToken):
        pos = exc.token.start_pos if exc.token.type != "$END" else len(text)
        pos = len(text) if pos is None else pos
        terminals = set(exc.accepts or exc.expected)
        shown = "end of text" if exc.token.type == "$END" else _show(str(exc.token))
    elif isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        terminals = set(exc.allowed or ())
        char = text[pos]
        if char in "'\"":
            return FilterProblem(pos, "unterminated string", [char], hint=f"close it with {char}")
        shown = _show(char)
    else:  # UnexpectedEOF: the LALR parser reports the end as an UnexpectedToken instead
        pos = len(text)
        terminals = set(getattr(exc, "expected", ()) or ())
        shown = "end of text"
    # the state after a field is shared by both start rules: keep what this one can use
    terminals -= {"ASC", "DESC"} if start == "filter" else {"COMPARATOR", "LIKE", "IN", "NOT"}
    if start == "filter" and terminals & {"$END", "RPAR"} and not terminals & (_VALUE_TERMINALS | {"_COMMA"}):
        terminals |= {"_AND", "_OR"}  # LALR reduced the comparison before failing: it could go on
    phrases, items = _expected(terminals)
    what = f"unexpected {shown}"
    return FilterProblem(pos, what, items, hint=_join(phrases))


def _show(fragment: str) -> str:
    if len(fragment) > 24:
        fragment = fragment[:21] + "..."
    if not fragment.isprintable():
        return repr(fragment)
    return f'"{fragment}"' if "'" in fragment and '"' not in fragment else f"'{fragment}'"


def _join(phrases: list[str]) -> str:
    if not phrases:
        return ""
    if len(phrases) == 1:
        return f"expected {phrases[0]}"
    return f"expected {', '.join(phrases[:-1])} or {phrases[-1]}"
