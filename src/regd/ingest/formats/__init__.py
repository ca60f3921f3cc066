"""Format readers: a model file's or model directory's format, signature, tensors and metadata.

Readers look at headers and metadata only: nothing is unpickled, imported or executed, and every
size a file claims is checked against caps and against the bytes present before anything is
allocated. A malformed file yields a ``format_error`` warning, never an exception.

    read_file(path)                                  one model file
    detect_directory_layout(path, names)             "mlflow" | "huggingface" | "tensorflow-savedmodel" | None
    directory_requirements(path, layout, names)      what a model directory still lacks
    read_directory(path, layout, files)              every model file of a directory, combined
    scan_pickle(stream, limit)                       the globals a pickle stream would import
"""

from __future__ import annotations

from regd.ingest.formats.directories import detect_directory_layout, directory_requirements, read_directory
from regd.ingest.formats.dispatch import detect, read_file
from regd.ingest.formats.info import DirectoryStatus, FormatInfo
from regd.ingest.formats.pickles import PickleScan, is_dangerous, is_safe, scan_pickle

__all__ = [
    "DirectoryStatus",
    "FormatInfo",
    "PickleScan",
    "detect",
    "detect_directory_layout",
    "directory_requirements",
    "is_dangerous",
    "is_safe",
    "read_directory",
    "read_file",
    "scan_pickle",
]
