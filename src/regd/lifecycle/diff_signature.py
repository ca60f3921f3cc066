"""Compare two signatures and decide whether code written against ``a`` keeps working against ``b``.

The rules, applied to inputs and outputs matched by name:

    inputs   added       breaking    the stored signature does not say which inputs are optional
                                     (ONNX graph inputs, MLflow ``required``), so every input counts as required
             removed     breaking    callers still send it; ONNX Runtime and MLflow enforcement reject unknown inputs
             retyped     breaking
             reshaped    compatible only when every dim WIDENS: a fixed size becomes symbolic or unknown
                         (``4 -> "n"``, ``4 -> None``), or a symbolic dim is renamed or becomes unknown.
                         A rank change, a fixed size changed, a free dim fixed (``"batch" -> 1``) are breaking.
    outputs  added       compatible  consumers ignore what they do not read
             removed     breaking
             retyped     breaking
             reshaped    the mirror image: compatible only when every dim NARROWS or is renamed (a consumer
                         that handled any size handles a fixed one); widening a fixed output size is breaking.

When neither side has inputs or outputs (safetensors, GGUF, a state dict) the tensor table is the contract a
loader checks (``load_state_dict(strict=True)``): a tensor added, removed, reshaped or retyped is breaking.
``extra`` (opset, flavors, architecture) is listed, never judged. Dtypes are compared by meaning across formats
(ONNX ``FLOAT`` = safetensors ``F32`` = numpy ``float32``). With no signature on a side the verdict is ``unknown``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

from regd.diffmodel import SignatureDiff, SpecChange, SpecsDiff
from regd.domain import Signature, TensorSpec
from regd.lifecycle.diff_keys import key_diff

Dim = int | str | None

_DTYPES = {
    "float": "float32", "f32": "float32", "fp32": "float32", "float32": "float32", "single": "float32",
    "double": "float64", "f64": "float64", "fp64": "float64", "float64": "float64",
    "float16": "float16", "f16": "float16", "fp16": "float16", "half": "float16",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "int8": "int8", "i8": "int8", "uint8": "uint8", "u8": "uint8",
    "int16": "int16", "i16": "int16", "uint16": "uint16", "u16": "uint16",
    "int32": "int32", "i32": "int32", "int": "int32", "uint32": "uint32", "u32": "uint32",
    "int64": "int64", "i64": "int64", "long": "int64", "uint64": "uint64", "u64": "uint64",
    "bool": "bool", "boolean": "bool", "string": "string", "str": "string",
}  # fmt: skip


def same_dtype(a: str, b: str) -> bool:
    """Tell whether two dtype names mean the same element type (across format spellings)."""
    return a == b or _canonical_dtype(a) == _canonical_dtype(b)


@functools.lru_cache(maxsize=256)
def _canonical_dtype(name: str) -> str:
    lowered = name.strip().lower()
    return _DTYPES.get(lowered, lowered)


def _dim_change(x: Dim, y: Dim) -> Literal["same", "rename", "widen", "narrow", "resize"]:
    if x == y:
        return "same"
    fixed_x, fixed_y = isinstance(x, int), isinstance(y, int)
    if fixed_x and fixed_y:
        return "resize"
    if not fixed_x and not fixed_y:
        return "rename"  # "batch" -> "N", "batch" -> None: any size before, any size after
    return "widen" if fixed_x else "narrow"


def shape_verdict(a: Sequence[Dim], b: Sequence[Dim], *, output: bool) -> tuple[bool, str]:
    """Return (breaking, why) for a reshape of an input (``output=False``) or an output."""
    if len(a) != len(b):
        return True, f"rank {len(a)} -> {len(b)}"
    allowed = {"same", "rename", "narrow" if output else "widen"}
    reasons = []
    breaking = False
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        change = _dim_change(x, y)
        if change == "same":
            continue
        reasons.append(f"dim {i}: {_dim(x)} -> {_dim(y)}")
        breaking = breaking or change not in allowed
    kind = "breaking" if breaking else ("narrowed" if output else "widened")
    if not breaking and all(_dim_change(x, y) in ("same", "rename") for x, y in zip(a, b, strict=True)):
        kind = "renamed"
    return breaking, f"{', '.join(reasons)} ({kind})"


def _dim(d: Dim) -> str:
    return "?" if d is None else str(d)


def specs_diff(a: Sequence[TensorSpec], b: Sequence[TensorSpec], *, output: bool) -> tuple[SpecsDiff, list[str]]:
    """Compare inputs (or outputs) by name; return the diff and a line per breaking change."""
    side = "output" if output else "input"
    left, right = {s.name: s for s in a}, {s.name: s for s in b}
    diff = SpecsDiff()
    reasons: list[str] = []
    for name in right:
        if name not in left:
            diff.added.append(right[name])
            if not output:
                reasons.append(f"input {name!r} added (inputs are required)")
    for name, spec in left.items():
        other = right.get(name)
        if other is None:
            diff.removed.append(spec)
            reasons.append(f"{side} {name!r} removed")
            continue
        retyped = not same_dtype(spec.dtype, other.dtype)
        reshaped = list(spec.shape) != list(other.shape)
        if not (retyped or reshaped):
            diff.unchanged += 1
            continue
        why, breaking = [], retyped
        if retyped:
            why.append(f"{spec.dtype} -> {other.dtype}")
        if reshaped:
            shape_breaks, shape_why = shape_verdict(spec.shape, other.shape, output=output)
            breaking = breaking or shape_breaks
            why.append(shape_why)
        change = SpecChange(name=name, a=spec, b=other, reshaped=reshaped, retyped=retyped, breaking=breaking,
                            why="; ".join(why))  # fmt: skip
        if reshaped:
            diff.reshaped.append(change)
        if retyped:
            diff.retyped.append(change)
        if breaking:
            reasons.append(f"{side} {name!r} {'retyped' if retyped else 'reshaped'}: {change.why}")
    return diff, reasons


def _has_io(sig: Signature | None) -> bool:
    return sig is not None and bool(sig.inputs or sig.outputs)


def signature_diff(a: Signature | None, b: Signature | None) -> SignatureDiff:
    """Compare two signatures; see the module docstring for what is breaking."""
    if a is None or b is None or a.is_empty() or b.is_empty():
        missing = [side for side, sig in (("a", a), ("b", b)) if sig is None or sig.is_empty()]
        extra = key_diff(a.extra if a else {}, b.extra if b else {}, nested=True)
        return SignatureDiff(
            verdict="unknown", extra=extra, identical=False,
            note=f"no signature recorded for {' and '.join(missing)}: inputs and outputs not compared",
        )  # fmt: skip
    inputs, in_reasons = specs_diff(a.inputs, b.inputs, output=False)
    outputs, out_reasons = specs_diff(a.outputs, b.outputs, output=True)
    reasons = in_reasons + out_reasons
    note = None
    if not _has_io(a) and not _has_io(b):
        layout = _tensor_layout_reasons(a.tensors, b.tensors)
        reasons += layout
        note = "weights only: the tensor table is the contract (a loader rejects added, missing or reshaped tensors)"
    extra = key_diff(a.extra, b.extra, nested=True)
    identical = (
        not reasons and _same_specs(a.inputs, b.inputs) and _same_specs(a.outputs, b.outputs)
        and _same_specs(a.tensors, b.tensors) and extra.empty
    )  # fmt: skip
    return SignatureDiff(
        verdict="breaking" if reasons else "compatible", identical=identical, reasons=reasons,
        inputs=inputs, outputs=outputs, extra=extra, note=note,
    )  # fmt: skip


def _same_specs(a: Sequence[TensorSpec], b: Sequence[TensorSpec]) -> bool:
    if len(a) != len(b):
        return False
    right = {s.name: s for s in b}
    for spec in a:
        other = right.get(spec.name)
        if other is None or not same_dtype(spec.dtype, other.dtype) or list(spec.shape) != list(other.shape):
            return False
    return True


def _tensor_layout_reasons(a: Sequence[TensorSpec], b: Sequence[TensorSpec]) -> list[str]:
    left, right = {s.name: s for s in a}, {s.name: s for s in b}
    counts = {"added": 0, "removed": 0, "reshaped": 0, "retyped": 0}
    counts["added"] = sum(1 for n in right if n not in left)
    for name, spec in left.items():
        other = right.get(name)
        if other is None:
            counts["removed"] += 1
            continue
        if list(spec.shape) != list(other.shape):
            counts["reshaped"] += 1
        if not same_dtype(spec.dtype, other.dtype):
            counts["retyped"] += 1
    return [f"{n} tensor{'s' if n != 1 else ''} {what}" for what, n in counts.items() if n]


def describe(sig: SignatureDiff) -> str:
    """``1 input reshaped, 1 output added``: the signature's changes for the verdict line."""
    parts = []
    for side, specs in (("input", sig.inputs), ("output", sig.outputs)):
        for what, n in (("added", len(specs.added)), ("removed", len(specs.removed)),
                        ("reshaped", len(specs.reshaped)), ("retyped", len(specs.retyped))):  # fmt: skip
            if n:
                parts.append(f"{n} {side}{'s' if n != 1 else ''} {what}")
    if not parts and sig.verdict == "breaking":
        parts = list(sig.reasons)  # weights only: the tensor layout lines
    return ", ".join(parts)
