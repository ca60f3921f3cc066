"""Pick a reader for one file by its magic bytes and its name, and contain whatever the reader meets."""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable
from pathlib import Path

from regd.ingest.formats.compression import sniff_compression
from regd.ingest.formats.gguf import MAGIC as GGUF_MAGIC
from regd.ingest.formats.gguf import read_gguf
from regd.ingest.formats.info import FormatInfo
from regd.ingest.formats.keras import HDF5_MAGIC, read_keras, read_keras_h5
from regd.ingest.formats.limits import BoundedFile, FormatError
from regd.ingest.formats.mlflow import MLMODEL, read_mlmodel
from regd.ingest.formats.onnx import read_onnx
from regd.ingest.formats.pickles import read_pickle
from regd.ingest.formats.pytorch import find_data_pkl, read_pytorch
from regd.ingest.formats.safetensors import read_safetensors
from regd.ingest.formats.savedmodel import SAVED_MODEL_PB, read_savedmodel_pb
from regd.ingest.formats.skops import read_skops
from regd.ingest.formats.zips import is_zip, open_zip

TORCH_EXTS = {".pt", ".pth", ".ckpt", ".bin"}
PICKLE_EXTS = {".pkl", ".pickle"}
JOBLIB_EXTS = {".joblib"}
COMPRESSED_EXTS = {".gz", ".z", ".xz", ".lzma", ".bz2"}
MODEL_EXTS = (
    {".safetensors", ".gguf", ".onnx", ".keras", ".h5", ".hdf5", ".skops"} | TORCH_EXTS | PICKLE_EXTS | JOBLIB_EXTS
)

READERS: dict[str, Callable[[Path], FormatInfo]] = {
    "safetensors": read_safetensors,
    "gguf": read_gguf,
    "onnx": read_onnx,
    "pytorch": read_pytorch,
    "keras": read_keras,
    "keras-h5": read_keras_h5,
    "skops": read_skops,
    "joblib": lambda p: read_pickle(p, "joblib"),
    "pickle": lambda p: read_pickle(p, "pickle"),
    "mlflow": read_mlmodel,
    "tensorflow-savedmodel": read_savedmodel_pb,
}


def suffixes(path: Path) -> tuple[str, str]:
    """Return (extension, extension under a compression suffix) in lower case: ``m.pkl.gz`` -> (.gz, .pkl)."""
    ext = path.suffix.lower()
    inner = Path(path.stem).suffix.lower() if ext in COMPRESSED_EXTS else ""
    return ext, inner


def detect(path: Path, head: bytes, size: int) -> str:
    """Name the format of a file from its name and first bytes ("unknown" when nothing fits)."""
    ext, inner = suffixes(path)
    if path.name == MLMODEL:
        return "mlflow"
    if path.name == SAVED_MODEL_PB:
        return "tensorflow-savedmodel"
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if is_zip(head):
        return _zip_kind(path, ext)
    if head.startswith(HDF5_MAGIC):
        return "keras-h5" if ext in {".h5", ".hdf5", ".keras"} else "unknown"
    if ext in {".safetensors", ".gguf", ".onnx", ".keras", ".skops"}:
        return ext[1:]
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        if ext in TORCH_EXTS:
            return "pytorch"
        return "joblib" if ext in JOBLIB_EXTS else "pickle"
    if ext in TORCH_EXTS - {".bin"}:
        return "pytorch"
    if ext in JOBLIB_EXTS or (ext in COMPRESSED_EXTS and inner in JOBLIB_EXTS | PICKLE_EXTS):
        return "joblib"
    if ext in PICKLE_EXTS:
        return "joblib" if sniff_compression(head) else "pickle"
    if _looks_like_safetensors(head, size):
        return "safetensors"
    return "unknown"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return head[8:10] == b'{"' and length <= size - 8


def _zip_kind(path: Path, ext: str) -> str:
    """Tell a torch.save archive from a Keras or skops archive by the members it holds."""
    try:
        with BoundedFile.open(path) as f, open_zip(f) as archive:
            names = archive.namelist()
    except (FormatError, RecursionError, MemoryError):
        return {".keras": "keras", ".skops": "skops"}.get(ext, "pytorch" if ext in TORCH_EXTS else "unknown")
    if find_data_pkl(names) is not None:
        return "pytorch"
    if "schema.json" in names:
        return "skops"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names or ext == ".keras"):
        return "keras"
    return {".keras": "keras", ".skops": "skops"}.get(ext, "pytorch" if ext in TORCH_EXTS else "unknown")


def read_file(path: Path) -> FormatInfo:
    """Read a model file's format, signature, tensors and metadata from its headers.

    Never raises for bad content: a malformed file comes back as its detected format with a
    ``format_error`` warning, an unrecognised one as ``unknown``. Raises OSError only for I/O errors
    (the file vanished, permission denied).
    """
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "a directory, not a model file", str(path))
    if not stat.S_ISREG(mode):
        # Opening a FIFO would block until a writer appears; a device could be endless.
        info = FormatInfo(format="unknown")
        info.warn("unknown_format", f"{path.name} is not a regular file")
        return info
    with open(path, "rb") as f:
        head = f.read(16)
        size = f.seek(0, 2)
    fmt = detect(path, head, size)
    if fmt == "unknown":
        info = FormatInfo(format="unknown")
        info.warn("unknown_format", f"no reader recognises {path.name}")
        return info
    try:
        return READERS[fmt](path)
    except OSError as exc:
        if exc.errno is not None:
            raise
        failed = FormatInfo(format=fmt)  # gzip and bz2 raise errno-less OSErrors on corrupt data
        failed.format_error(f"{fmt}: {exc}")
        return failed
    except Exception as exc:
        # A reader bug or an input no check foresaw: report it on the version, keep the daemon up.
        failed = FormatInfo(format=fmt)
        failed.format_error(f"{fmt} reader failed: {type(exc).__name__}: {str(exc)[:200]}")
        return failed
