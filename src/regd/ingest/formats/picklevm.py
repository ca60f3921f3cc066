"""Evaluate a pickle stream symbolically: build its data, record its imports, import and call nothing.

Globals become ``Global`` records, calls become ``Call`` records holding their arguments and state,
persistent ids become ``PersistentRef`` records: enough for the import scan and for recovering a
PyTorch state dict's tensors.
"""

from __future__ import annotations

import pickletools
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from regd.ingest.formats.limits import MAX_PICKLE_OPS, FormatError
from regd.ingest.formats.picklesource import Opaque, OverLimit, PickleSource, TooManyOps, read_arg

# Python 2 pickles name these modules; pickle's fix_imports maps them the same way.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "exceptions": "builtins"}
# Containers a walk may hold at once: a pickle of MARKs or memo writes alone must not eat gigabytes.
MAX_MARKS = 100_000
MAX_STACK = 5_000_000
MAX_MEMO = 5_000_000


@dataclass(eq=False)
class Global:
    """A global a pickle would import."""

    module: str
    name: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Call:
    """An object a pickle would build by calling ``func`` (REDUCE, NEWOBJ, INST, OBJ)."""

    func: Any
    args: Any
    state: Any = None
    items: dict[Any, Any] = field(default_factory=dict)
    """Filled by SETITEM(S) on the result, as an OrderedDict or dict subclass receives them."""
    appended: list[Any] = field(default_factory=list)


@dataclass(eq=False)
class PersistentRef:
    """A persistent id (PyTorch storages); resolved by whoever knows the container."""

    pid: Any


@dataclass(eq=False)
class PSet:
    """A pickled set or frozenset, kept as a list since its items may be unhashable here."""

    items: list[Any]


@dataclass(eq=False)
class _Key:
    """Stands in for a dict key that is unhashable in this model (a list inside a tuple ...)."""

    value: Any


@dataclass
class PickleRun:
    """The outcome of walking one pickle stream."""

    value: Any = None
    imports: list[str] = field(default_factory=list)
    error: str | None = None
    complete: bool = False
    """False when the walk stopped early (error, size or opcode limit)."""
    protocol: int | None = None
    consumed: int = 0
    """Bytes of the stream walked, STOP included."""
    limited: bool = False
    """The walk hit the byte or opcode limit: imports past ``consumed`` are unknown."""


class Machine:
    """Walk one pickle stream symbolically."""

    def __init__(
        self,
        stream: BinaryIO,
        limit: int,
        on_build: Callable[[Machine, Any], None] | None = None,
        source: PickleSource | None = None,
    ) -> None:
        self.src = source if source is not None else PickleSource(stream, limit)
        self._start = self.src.pos
        self.on_build = on_build
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.imports: list[str] = []
        self._seen: set[str] = set()
        self.protocol: int | None = None

    def nested(self) -> Machine:
        """Start a machine for a pickle embedded at the current position, sharing the source and budget."""
        return Machine(self.src.stream, self.src.limit, self.on_build, source=self.src)

    def run(self) -> PickleRun:
        """Walk to STOP and return the top of the stack, the imports and any error."""
        out = PickleRun()
        try:
            out.value = self._loop()
            out.complete = True
        except OverLimit:
            out.error = f"pickle stream exceeds the scan budget ({self.src.limit} parsed bytes); not walked to the end"
            out.limited = True
        except TooManyOps:
            out.error = "pickle too large to walk (opcode, stack, mark or memo limit); not walked to the end"
            out.limited = True
        except FormatError as exc:
            out.error = str(exc)
        except (IndexError, KeyError, TypeError, ValueError, struct.error, UnicodeDecodeError, RecursionError) as exc:
            out.error = f"malformed pickle at byte {self.src.pos}: {type(exc).__name__}: {str(exc)[:200]}"
        out.imports = self.imports
        out.protocol = self.protocol
        out.consumed = self.src.pos - self._start
        if out.complete:
            self.src.release()
        return out

    def note_import(self, qualname: str) -> None:
        if qualname not in self._seen:
            self._seen.add(qualname)
            self.imports.append(qualname)

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _global(self, module: str, name: str) -> Global:
        module = _PY2_MODULES.get(module, module)
        g = Global(module, name)
        self.note_import(g.qualname)
        return g

    def _loop(self) -> Any:
        ops = 0
        while True:
            ops += 1
            if ops > MAX_PICKLE_OPS:
                raise TooManyOps()
            code = self.src.read(1).decode("latin-1")
            op = pickletools.code2op.get(code)
            if op is None:
                raise FormatError(f"pickle: unknown opcode {code!r} at byte {self.src.pos - 1}")
            arg = read_arg(self.src, op.arg.name) if op.arg is not None else None
            if op.name == "STOP":
                return self.stack.pop()
            self._step(op.name, arg)
            if len(self.stack) > MAX_STACK:
                raise TooManyOps()

    def _step(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in _PUSH_CONST:
            stack.append(_PUSH_CONST[name]())
        elif name == "PROTO":
            self.protocol = arg
        elif name == "FRAME":
            pass
        elif name == "MARK":
            if len(self.metastack) >= MAX_MARKS:
                raise TooManyOps()
            self.metastack.append(stack)
            self.stack = []
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if len(self.memo) >= MAX_MEMO:
                raise TooManyOps()
            self.memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            if len(self.memo) >= MAX_MEMO:
                raise TooManyOps()
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(self.memo[int(arg)])
        elif name == "APPEND":
            value = stack.pop()
            _append(stack[-1], [value])
        elif name == "APPENDS":
            items = self.pop_mark()
            _append(self.stack[-1], items)
        # pop_mark() swaps self.stack: take the items before naming the stack to push onto.
        elif name == "LIST":
            items = self.pop_mark()
            self.stack.append(items)
        elif name == "TUPLE":
            items = self.pop_mark()
            self.stack.append(tuple(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = tuple(stack[-n:])
            if len(items) != n:
                raise IndexError("stack underflow")
            del stack[-n:]
            stack.append(items)
        elif name == "DICT":
            items = self.pop_mark()
            target: dict[Any, Any] = {}
            _setitems(target, items)
            self.stack.append(target)
        elif name == "SETITEM":
            value = stack.pop()
            key = stack.pop()
            _setitems(stack[-1], [key, value])
        elif name == "SETITEMS":
            items = self.pop_mark()
            _setitems(self.stack[-1], items)
        elif name == "ADDITEMS":
            items = self.pop_mark()
            target_set = self.stack[-1]
            if isinstance(target_set, PSet):
                target_set.items.extend(items)
        elif name == "FROZENSET":
            items = self.pop_mark()
            self.stack.append(PSet(items))
        elif name == "GLOBAL":
            module, _, qual = str(arg).partition(" ")
            stack.append(self._global(module, qual))
        elif name == "STACK_GLOBAL":
            qual = stack.pop()
            module = stack.pop()
            if isinstance(module, str) and isinstance(qual, str):
                stack.append(self._global(module, qual))
            else:
                # A module name computed at load time: legitimate picklers never do this.
                self.note_import(UNRESOLVED)
                stack.append(Global("?", "?"))
        elif name == "INST":
            module, _, qual = str(arg).partition(" ")
            cls = self._global(module, qual)
            items = self.pop_mark()
            self.stack.append(Call(cls, tuple(items)))
        elif name == "OBJ":
            items = self.pop_mark()
            self.stack.append(Call(items[0], tuple(items[1:])))
        elif name == "NEWOBJ":
            args = stack.pop()
            cls = stack.pop()
            stack.append(Call(cls, args))
        elif name == "NEWOBJ_EX":
            kwargs = stack.pop()
            args = stack.pop()
            cls = stack.pop()
            stack.append(Call(cls, args, state=None, items={"__kwargs__": kwargs}))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack.pop()
            stack.append(Call(func, args))
        elif name == "BUILD":
            state = stack.pop()
            obj = stack[-1]
            if isinstance(obj, Call):
                obj.state = state
            if self.on_build is not None:
                self.on_build(self, obj)
        elif name in ("EXT1", "EXT2", "EXT4"):
            # The copyreg extension registry maps codes to arbitrary globals: unknowable here.
            self.note_import(f"copyreg.extension_code_{arg}")
            stack.append(Global("copyreg", f"extension_code_{arg}"))
        elif name == "PERSID":
            stack.append(PersistentRef(arg))
        elif name == "BINPERSID":
            stack.append(PersistentRef(stack.pop()))
        elif name == "NEXT_BUFFER":
            stack.append(Opaque("buffer"))
        elif name == "READONLY_BUFFER":
            pass
        else:
            raise FormatError(f"pickle: unhandled opcode {name}")


UNRESOLVED = "<unresolved>.STACK_GLOBAL"
"""Recorded when STACK_GLOBAL's operands are not plain strings: the import cannot be known."""

_PUSH_ARG = {
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
}  # fmt: skip
_PUSH_CONST: dict[str, Callable[[], Any]] = {
    "NONE": lambda: None, "NEWTRUE": lambda: True, "NEWFALSE": lambda: False,
    "EMPTY_LIST": list, "EMPTY_DICT": dict, "EMPTY_TUPLE": tuple, "EMPTY_SET": lambda: PSet([]),
}  # fmt: skip


def _append(target: Any, items: list[Any]) -> None:
    if isinstance(target, list):
        target.extend(items)
    elif isinstance(target, Call):
        target.appended.extend(items)


def _setitems(target: Any, items: list[Any]) -> None:
    if len(items) % 2:
        raise FormatError("pickle: odd number of items for SETITEMS")
    mapping = target.items if isinstance(target, Call) else target if isinstance(target, dict) else None
    if mapping is None:
        return
    for i in range(0, len(items), 2):
        key = items[i]
        try:
            mapping[key] = items[i + 1]
        except TypeError:
            mapping[_Key(key)] = items[i + 1]
