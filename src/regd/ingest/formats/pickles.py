"""Scan pickle and joblib files for the globals they would import, without unpickling them.

The allow-list: a pickle importing only these builds plain data (tensors, arrays, estimators) when loaded.

- ``collections.OrderedDict``, ``_codecs.encode`` (how protocol 2 pickles bytes)
- ``builtins`` data builders: ``set frozenset slice complex bytearray range``
- PyTorch: ``torch._utils._rebuild_tensor`` ``_rebuild_tensor_v2`` ``_rebuild_tensor_v3``
  ``_rebuild_parameter`` ``_rebuild_parameter_with_state`` (and the other ``_rebuild_*`` data helpers
  below), ``torch._tensor._rebuild_from_type_v2``, every ``torch.*Storage`` class,
  ``torch.storage.UntypedStorage``/``TypedStorage``, ``torch.Size``, ``torch.device``, the dtypes
- numpy: ``multiarray._reconstruct``, ``multiarray.scalar``, ``numeric._frombuffer`` (under both
  ``numpy.core`` and ``numpy._core``), ``numpy.ndarray``, ``numpy.dtype``, ``numpy.dtypes.*DType``,
  the ``numpy.random._pickle`` constructors
- joblib's ``NumpyArrayWrapper`` (and the pre-0.10 ``NDArrayWrapper``)
- every ``sklearn.*`` and ``scipy.sparse.*`` global

Everything else is unsafe. ``dangerous`` singles out globals that run code or touch the system
(``os.system``, ``builtins.eval``, ``subprocess.*``, ``runpy``, ``importlib``, ...).
"""

from __future__ import annotations

import lzma
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from regd.ingest.formats.compression import open_pickle_stream, sniff_compression
from regd.ingest.formats.info import FormatInfo
from regd.ingest.formats.limits import MAX_PICKLE_BYTES, BoundedFile, FormatError
from regd.ingest.formats.picklevm import UNRESOLVED, Call, Global, Machine, PickleRun

_TORCH_REBUILD = [
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_nested_tensor",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_meta_tensor_no_storage",
]
_TORCH_DTYPES = [
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "int8",
    "uint8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "bool",
    "complex32",
    "chalf",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "quint8",
    "qint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
]
_NUMPY_CORE = ("multiarray._reconstruct", "multiarray.scalar", "numeric._frombuffer")

SAFE_GLOBALS: frozenset[str] = frozenset(
    [
        "collections.OrderedDict",
        "_codecs.encode",
        *(f"builtins.{n}" for n in ("set", "frozenset", "slice", "complex", "bytearray", "range")),
        *(f"torch._utils.{n}" for n in _TORCH_REBUILD),
        "torch._tensor._rebuild_from_type_v2",
        "torch.storage.UntypedStorage",
        "torch.storage.TypedStorage",
        "torch.Size",
        "torch.device",
        "torch.Tensor",
        "torch.nn.parameter.Parameter",
        *(f"torch.{n}" for n in _TORCH_DTYPES),
        *(f"numpy.{core}.{n}" for core in ("core", "_core") for n in _NUMPY_CORE),
        "numpy.ndarray",
        "numpy.dtype",
        *(f"numpy.random._pickle.{n}" for n in ("__randomstate_ctor", "__generator_ctor", "__bit_generator_ctor")),
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "joblib.numpy_pickle_compat.NDArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    ]
)
SAFE_PREFIXES = ("sklearn.", "scipy.sparse.")
_SAFE_PATTERNS = re.compile(r"torch\.[A-Za-z0-9]*Storage|numpy\.dtypes\.[A-Za-z0-9]+DType")

DANGEROUS_MODULES: frozenset[str] = frozenset(
    [
        "os",
        "posix",
        "nt",
        "subprocess",
        "sys",
        "runpy",
        "shutil",
        "socket",
        "importlib",
        "pickle",
        "_pickle",
        "cPickle",
        "marshal",
        "ctypes",
        "code",
        "codeop",
        "pty",
        "commands",
        "webbrowser",
        "multiprocessing",
        "asyncio",
        "signal",
        "http",
        "urllib",
        "urllib2",
        "requests",
        "ftplib",
        "smtplib",
        "telnetlib",
        "timeit",
        "cProfile",
        "profile",
        "pdb",
        "bdb",
        "platform",
        "pip",
        "setuptools",
        "distutils",
        "dill",
        "cloudpickle",
        "_posixsubprocess",
        "_thread",
        "threading",
    ]
)
DANGEROUS_NAMES: frozenset[str] = frozenset(
    [
        *(
            f"builtins.{n}"
            for n in [
                "eval",
                "exec",
                "compile",
                "getattr",
                "setattr",
                "delattr",
                "__import__",
                "open",
                "input",
                "breakpoint",
                "globals",
                "locals",
                "vars",
                "execfile",
                "file",
                "reload",
                "apply",
                "memoryview",
                "help",
            ]
        ),
        "types.CodeType",
        "types.FunctionType",
        "types.LambdaType",
        "types.MethodType",
        "operator.attrgetter",
        "operator.methodcaller",
        "functools.reduce",
        "torch.load",
        "torch.serialization.load",
        "torch.storage._load_from_bytes",
        "numpy.load",
        "io.open",
        "_io.open",
        "pathlib.Path",
        UNRESOLVED,
    ]
)
DANGEROUS_PREFIXES = ("numpy.testing.", "torch.hub.", "torch.jit.", "copyreg.extension_code_", "torch._C.")

MAX_LISTED_IMPORTS = 256
NUMPY_ARRAY_WRAPPERS = {
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
}


def is_safe(qualname: str) -> bool:
    """Tell whether importing ``qualname`` from a pickle only builds data."""
    return (
        qualname in SAFE_GLOBALS or qualname.startswith(SAFE_PREFIXES) or _SAFE_PATTERNS.fullmatch(qualname) is not None
    )


def is_dangerous(qualname: str) -> bool:
    """Tell whether ``qualname`` is one of the notorious code-running or system-touching globals."""
    root = qualname.split(".", 1)[0]
    return root in DANGEROUS_MODULES or qualname in DANGEROUS_NAMES or qualname.startswith(DANGEROUS_PREFIXES)


@dataclass
class PickleScan:
    """The globals one pickle stream imports, split by the allow-list."""

    imports: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    dangerous: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the walk stopped before STOP: truncation, garbage, the size limit."""
    complete: bool = False
    limited: bool = False
    """The scan stopped at the byte or opcode limit: imports past ``consumed`` are unknown."""
    protocol: int | None = None
    consumed: int = 0
    value: Any = None
    """The symbolic top-level object (``picklevm`` records), for readers that look inside."""


def classify(run: PickleRun) -> PickleScan:
    """Split a walk's imports into safe, unsafe and dangerous."""
    unsafe = [q for q in run.imports if not is_safe(q)]
    return PickleScan(
        imports=list(run.imports),
        unsafe=unsafe,
        dangerous=[q for q in unsafe if is_dangerous(q)],
        error=run.error,
        complete=run.complete,
        limited=run.limited,
        protocol=run.protocol,
        consumed=run.consumed,
        value=run.value,
    )


def scan_pickle(stream: BinaryIO, limit: int) -> PickleScan:
    """Walk one pickle stream's opcodes (at most ``limit`` bytes) and report the globals it imports.

    Nothing is imported or called. joblib's inline array bytes (after each ``NumpyArrayWrapper``) are
    skipped as joblib's unpickler would read them, and object arrays' nested pickles are scanned too.
    """
    return classify(Machine(stream, limit, on_build=_skip_joblib_array).run())


def _skip_joblib_array(machine: Machine, obj: Any) -> None:
    """Step over the raw array bytes joblib writes right after a NumpyArrayWrapper's BUILD."""
    if not (isinstance(obj, Call) and isinstance(obj.func, Global) and obj.func.qualname in NUMPY_ARRAY_WRAPPERS):
        return
    state = obj.state if isinstance(obj.state, dict) else {}
    shape = state.get("shape")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise FormatError("joblib NumpyArrayWrapper without a valid shape")
    itemsize, hasobject = numpy_itemsize(state.get("dtype"))
    if hasobject:
        # Object arrays are a nested protocol-2 pickle inside the stream: scan it as well.
        run = machine.nested().run()
        for q in run.imports:
            machine.note_import(q)
        if run.error:
            raise FormatError(f"joblib object array: {run.error}")
        return
    if state.get("numpy_array_alignment_bytes") is not None:
        padding = machine.src.read(1)[0]
        machine.src.skip(padding)
    count = 1
    for d in shape:
        count *= d
    machine.src.skip(count * itemsize)


def numpy_itemsize(dtype: Any) -> tuple[int, bool]:
    """Return (itemsize, has-objects) of a pickled ``numpy.dtype(...)`` record."""
    if not (
        isinstance(dtype, Call) and isinstance(dtype.args, tuple) and dtype.args and isinstance(dtype.args[0], str)
    ):
        raise FormatError("joblib array with an unreadable dtype")
    spec = dtype.args[0]
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    kind, digits = spec[:1], spec[1:]
    if kind == "O":
        return 8, True
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    elsize = state[5] if len(state) > 5 and isinstance(state[5], int) else -1
    if elsize > 0:
        return elsize, bool(flags & 1)
    if digits.isdigit() and int(digits) > 0:
        return int(digits), False
    raise FormatError(f"joblib array dtype {spec[:16]!r} has no known size")


def read_pickle(path: Path, fmt: str = "pickle") -> FormatInfo:
    """Scan a pickle or joblib file (compressed or not) and report its imports."""
    info = FormatInfo(format=fmt)
    with BoundedFile.open(path) as f:
        compression = sniff_compression(f.read(6))
        f.seek(0)
        if compression is not None:
            info.format = "joblib"
            info.metadata["compression"] = compression
        try:
            scan = scan_pickle(open_pickle_stream(f, compression), MAX_PICKLE_BYTES)
        except FormatError as exc:
            info.format_error(str(exc))
            return info
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # real I/O trouble; gzip and bz2 raise errno-less OSErrors for corrupt data
            info.format_error(f"{compression} stream: {exc}")
            return info
    if any(q in NUMPY_ARRAY_WRAPPERS for q in scan.imports):
        info.format = "joblib"
    apply_scan(info, scan, "pickle")
    return info


def apply_scan(info: FormatInfo, scan: PickleScan, what: str) -> None:
    """Record a scan's protocol, imports, unsafe globals and errors on ``info``."""
    if scan.protocol is not None:
        info.metadata.setdefault("pickle_protocol", scan.protocol)
    imports = info.metadata.setdefault("pickle_imports", [])
    for q in scan.imports:
        if q not in imports and len(imports) < MAX_LISTED_IMPORTS:
            imports.append(q)
    if scan.error:
        info.format_error(f"{what}: {scan.error}")
    if scan.limited:
        info.warn(
            "unsafe_pickle", f"{what} could not be scanned to the end; imports past byte {scan.consumed} are unknown"
        )
    for q in scan.unsafe:
        if q not in info.unsafe_imports:
            info.unsafe_imports.append(q)
    if scan.unsafe:
        dangerous = [q for q in scan.unsafe if is_dangerous(q)]
        listed = ", ".join(scan.unsafe[:32]) + (f" and {len(scan.unsafe) - 32} more" if len(scan.unsafe) > 32 else "")
        lead = f"{what} imports code-running globals ({', '.join(dangerous[:8])}); " if dangerous else ""
        info.warn("unsafe_pickle", f"{lead}{what} imports globals outside the allow-list: {listed}")
