"""What a format reader returns: the facts of one model file or model directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from regd.domain import Signature, TensorFingerprint, TensorSpec, VersionWarning


@dataclass
class FormatInfo:
    """The format, signature, tensors, metadata and warnings read from a model's headers."""

    format: str
    """``safetensors`` ``gguf`` ``onnx`` ``pytorch`` ``keras`` ``keras-h5`` ``skops`` ``joblib`` ``pickle``
    ``mlflow`` ``huggingface`` ``tensorflow-savedmodel`` or ``unknown``."""
    signature: Signature | None = None
    tensors: list[TensorFingerprint] = field(default_factory=list)
    """Offsets are absolute within ``file``; fingerprints are left for the ingest pipeline."""
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[VersionWarning] = field(default_factory=list)
    unsafe_imports: list[str] = field(default_factory=list)

    def warn(self, code: str, message: str) -> None:
        """Attach a warning, once per identical message."""
        if not any(w.code == code and w.message == message for w in self.warnings):
            self.warnings.append(VersionWarning(code=code, message=message))

    def format_error(self, message: str) -> None:
        """Attach a ``format_error`` warning."""
        self.warn("format_error", message)

    def has_warning(self, code: str) -> bool:
        """Tell whether a warning with ``code`` is attached."""
        return any(w.code == code for w in self.warnings)


@dataclass
class DirectoryStatus:
    """What a model directory still lacks before it can be registered."""

    complete: bool
    missing: list[str] = field(default_factory=list)
    """Relpaths the layout requires that are not there yet (shards, the MLmodel's data path)."""
    expected_later: list[str] = field(default_factory=list)
    """Companions that usually arrive after the model (conda.yaml, tokenizer files): worth a short wait."""


def tensor_signature(tensors: list[TensorFingerprint]) -> Signature | None:
    """Build a weights-file signature listing every tensor, or None when there are none."""
    if not tensors:
        return None
    return Signature(tensors=[TensorSpec(name=t.name, dtype=t.dtype, shape=list(t.shape)) for t in tensors])


def add_counts(info: FormatInfo) -> None:
    """Record tensor_count and param_count in the metadata from the tensors read."""
    if not info.tensors:
        return
    params = 0
    for tensor in info.tensors:
        count = tensor.numel
        if count is not None:
            params += count
    info.metadata["tensor_count"] = len(info.tensors)
    info.metadata["param_count"] = params
