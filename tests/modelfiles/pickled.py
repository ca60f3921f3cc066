"""Pickle streams written byte by byte: arbitrary globals, joblib's array layout, torch.save's zip."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tests.modelfiles.common import _c, default_tensors


def _global(module: str, name: str, protocol: int) -> bytes:
    """Encode a global reference the way the pickler of that protocol does."""
    if protocol < 4:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"
    return _short_unicode(module) + b"\x94" + _short_unicode(name) + b"\x94" + b"\x93"


def _short_unicode(text: str) -> bytes:
    raw = text.encode()
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + struct.pack("<I", len(raw)) + raw


def _split(qualname: str | tuple[str, str]) -> tuple[str, str]:
    if isinstance(qualname, tuple):
        return qualname
    if ":" in qualname:
        module, name = qualname.split(":", 1)
        return module, name
    module, _, name = qualname.rpartition(".")
    return module, name


def pickle_bytes(
    obj_globals: Sequence[str | tuple[str, str]] = (),
    *,
    call: tuple[str | tuple[str, str], tuple[str, ...]] | None = None,
    protocol: int = 4,
) -> bytes:
    """Hand-build a pickle of ``{"globals": [...], "call": f(*args)}`` importing arbitrary globals.

    Globals are written as references only (``"os:system"`` or ``"os.system"``); nothing needs to be
    importable here, and nothing in the stream is ever called by the tests: ``call`` is what a real
    unpickler *would* run.
    """
    out = bytearray(b"\x80" + bytes([protocol]))
    out += b"}" + b"(" + _short_unicode("globals") + b"]" + b"("
    for qualname in obj_globals:
        out += _global(*_split(qualname), protocol)
    out += b"e"  # APPENDS
    if call is not None:
        func, args = call
        out += _short_unicode("call") + _global(*_split(func), protocol)
        out += b"(" + b"".join(_short_unicode(a) for a in args) + b"t" + b"R"  # MARK args TUPLE REDUCE
    out += b"u."  # SETITEMS STOP
    return bytes(out)


def write_pickle(
    path: Path,
    obj_globals: Sequence[str | tuple[str, str]] = (),
    *,
    call: tuple[str | tuple[str, str], tuple[str, ...]] | None = None,
    protocol: int = 4,
    data: Any = None,
) -> Path:
    """Write a pickle importing ``obj_globals`` (hand-built), or of plain ``data`` via the pickle module."""
    import pickle

    path = Path(path)
    if data is not None:
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    else:
        path.write_bytes(pickle_bytes(obj_globals, call=call, protocol=protocol))
    return path


def write_joblib(
    path: Path, arrays: Mapping[str, np.ndarray] | None = None, *, compress: str | None = None, align: bool = True
) -> Path:
    """Write a joblib file as joblib.dump does: each array a NumpyArrayWrapper followed by its raw bytes.

    ``compress``: None, "zlib" or "gzip" (joblib's default container for compress=N is zlib).
    """
    arrays = (
        {"weights": np.arange(10, dtype=np.float64), "ids": np.arange(6, dtype=np.int32).reshape(2, 3)}
        if arrays is None
        else arrays
    )
    out = io.BytesIO()
    out.write(b"\x80\x04}\x94(")
    for name, array in arrays.items():
        array = _c(array)
        out.write(_short_unicode(name))
        out.write(_global("joblib.numpy_pickle", "NumpyArrayWrapper", 4) + b")\x81")  # EMPTY_TUPLE NEWOBJ
        out.write(b"}(")  # the wrapper's __dict__
        out.write(_short_unicode("subclass") + _global("numpy", "ndarray", 4))
        out.write(_short_unicode("shape") + b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t")
        out.write(_short_unicode("order") + _short_unicode("C"))
        out.write(_short_unicode("dtype") + _global("numpy", "dtype", 4))
        out.write(_short_unicode(array.dtype.str[1:]) + b"\x89\x88\x87R")  # ('f8', False, True) REDUCE
        out.write(
            b"(J\x03\x00\x00\x00"
            + _short_unicode(array.dtype.str[0])
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffJ\x00\x00\x00\x00tb"
        )
        out.write(_short_unicode("allow_mmap") + b"\x88")
        if align:
            out.write(_short_unicode("numpy_array_alignment_bytes") + b"K\x10")
        out.write(b"ub")  # SETITEMS, BUILD: joblib reads the array bytes right here
        if align:
            pad = 16 - (out.tell() + 1) % 16
            out.write(bytes([pad]) + b"\xff" * pad)
        out.write(array.tobytes())
    out.write(b"u.")
    raw = out.getvalue()
    path = Path(path)
    if compress == "zlib":
        raw = zlib.compress(raw, 3)
    elif compress == "gzip":
        import gzip

        raw = gzip.compress(raw, 3)
    path.write_bytes(raw)
    return path


def _aligned_member(archive: zipfile.ZipFile, name: str, data: bytes, align: int = 64) -> None:
    """Add a stored member whose data starts on an ``align``-byte boundary (torch pads with an "FB" extra)."""
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    offset = archive.fp.tell()  # type: ignore[union-attr]
    start = offset + 30 + len(name.encode())
    pad = (-(start + 4)) % align
    info.extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
    archive.writestr(info, data)


_TORCH_STORAGE = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage", np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage", np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage", np.dtype(np.bool_): "BoolStorage",
}  # fmt: skip


def torch_pickle(
    tensors: Mapping[str, np.ndarray], *, nested: str | None = None, extra_globals: Sequence[str | tuple[str, str]] = ()
) -> bytes:
    """Build data.pkl as torch.save writes a state dict: protocol 2, OrderedDict, _rebuild_tensor_v2.

    Storage keys are "0", "1", ... in order. ``nested`` wraps the state dict as ``{nested: sd}``
    (Lightning's ``state_dict``); ``extra_globals`` adds references under the key "extra".
    """
    out = bytearray(b"\x80\x02")
    if nested is not None:
        out += b"}(" + _short_unicode(nested)
    out += _global("collections", "OrderedDict", 2) + b")R("  # OrderedDict() then MARK for SETITEMS
    for i, (name, array) in enumerate(tensors.items()):
        storage = _TORCH_STORAGE[np.dtype(array.dtype)]
        out += _short_unicode(name)
        out += _global("torch._utils", "_rebuild_tensor_v2", 2)
        out += b"(("  # MARK (args) MARK (persistent id tuple)
        out += _short_unicode("storage") + _global("torch", storage, 2) + _short_unicode(str(i))
        out += _short_unicode("cpu") + b"J" + struct.pack("<i", array.size) + b"tQ"  # TUPLE BINPERSID
        out += b"K\x00"  # storage offset
        out += b"(" + b"".join(b"J" + struct.pack("<i", d) for d in array.shape) + b"t"
        strides = [s // array.itemsize for s in array.strides] if array.ndim else []
        out += b"(" + b"".join(b"J" + struct.pack("<i", s) for s in strides) + b"t"
        out += b"\x89" + _global("collections", "OrderedDict", 2) + b")R"  # requires_grad, backward_hooks
        out += b"tR"  # TUPLE (args) REDUCE
    extra = b"](" + b"".join(_global(*_split(g), 2) for g in extra_globals) + b"e" if extra_globals else b""
    if extra and nested is None:
        out += _short_unicode("__regd_extra__") + extra
    out += b"u"  # SETITEMS into the OrderedDict
    if nested is not None:
        out += (_short_unicode("extra") + extra if extra else b"") + b"u"
    out += b"."
    return bytes(out)


def write_torch_zip(
    path: Path,
    tensors: Mapping[str, np.ndarray] | None = None,
    *,
    archive: str | None = None,
    nested: str | None = None,
    extra_globals: Sequence[str | tuple[str, str]] = (),
) -> Path:
    """Write a PyTorch zip checkpoint laid out exactly as torch.save does (stored, 64-byte aligned)."""
    path = Path(path)
    tensors = default_tensors() if tensors is None else tensors
    tensors = {k: _c(v) for k, v in tensors.items()}
    prefix = (archive if archive is not None else path.stem) + "/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        _aligned_member(zf, prefix + "data.pkl", torch_pickle(tensors, nested=nested, extra_globals=extra_globals))
        _aligned_member(zf, prefix + ".format_version", b"1")
        _aligned_member(zf, prefix + ".storage_alignment", b"64")
        _aligned_member(zf, prefix + "byteorder", b"little")
        for i, array in enumerate(tensors.values()):
            _aligned_member(zf, f"{prefix}data/{i}", array.tobytes())
        _aligned_member(zf, prefix + "version", b"3\n")
        _aligned_member(zf, prefix + ".data/serialization_id", b"0" * 40)
    return path
