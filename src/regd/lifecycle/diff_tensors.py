"""Compare two tensor tables by their stored fingerprints: what a fine-tune touched, without rereading bytes.

Tensors are matched by name (by file and name when a name repeats inside one side, as it can across
the files of a model directory). A tensor on both sides with the same dtype and shape is ``changed``
or ``unchanged`` by its ``xxh3`` fingerprint; when either fingerprint is missing it is ``unknown``,
and the summary says so instead of guessing.
"""

from __future__ import annotations

from collections.abc import Sequence

from regd.diffmodel import LIST_CAP, TensorChange, TensorCounts, TensorRef, TensorsDiff, TensorTotals
from regd.domain import TensorFingerprint
from regd.lifecycle.diff_signature import same_dtype


def _totals(tensors: Sequence[TensorFingerprint]) -> TensorTotals:
    params = nbytes = fingerprinted = 0
    for t in tensors:  # plain ints: pydantic's __setattr__ in this loop costs more than the whole diff
        params += t.numel or 0
        nbytes += t.nbytes or 0
        fingerprinted += 1 if t.fingerprint else 0
    return TensorTotals(tensors=len(tensors), params=params, bytes=nbytes, fingerprinted=fingerprinted)


class _Counts:
    """TensorCounts as plain attributes while counting (pydantic's __setattr__ is slow in a hot loop)."""

    def __init__(self) -> None:
        self.added = self.removed = self.reshaped = self.retyped = self.changed = self.unchanged = self.unknown = 0


def _keyed(tensors: Sequence[TensorFingerprint], by_file: bool) -> dict[str, TensorFingerprint]:
    return {(f"{t.file}:{t.name}" if by_file else t.name): t for t in tensors}


def _ref(t: TensorFingerprint) -> TensorRef:
    return TensorRef(name=t.name, dtype=t.dtype, shape=list(t.shape), file=t.file, params=t.numel)


def _share(part: int, whole: int) -> str:
    if whole <= 0:
        return "?"
    pct = 100 * part / whole
    if 0 < pct < 0.1:
        return "<0.1%"
    if 99.9 < pct < 100:
        return ">99.9%"
    return f"{pct:.1f}%"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def tensors_diff(a: Sequence[TensorFingerprint] | None, b: Sequence[TensorFingerprint] | None, *,
                 a_label: str = "a", b_label: str = "b") -> TensorsDiff:  # fmt: skip
    """Compare two versions' tensor tables; ``available`` is False when a side has none."""
    if not a or not b:
        missing = [label for label, side in ((a_label, a), (b_label, b)) if not side]
        return TensorsDiff(
            available=False, a=_totals(a or []), b=_totals(b or []),
            note=f"no tensor table for {' and '.join(missing)}: weights not compared",
        )  # fmt: skip
    by_file = len({t.name for t in a}) != len(a) or len({t.name for t in b}) != len(b)
    left, right = _keyed(a, by_file), _keyed(b, by_file)
    diff = TensorsDiff(available=True, a=_totals(a), b=_totals(b))
    counts = _Counts()
    touched_params = 0
    touched = 0
    for key, tb in right.items():
        ta = left.get(key)
        if ta is None:
            counts.added += 1
            touched += 1
            touched_params += tb.numel or 0
            if len(diff.added) < LIST_CAP:
                diff.added.append(_ref(tb))
            continue
        retyped = not same_dtype(ta.dtype, tb.dtype)
        reshaped = list(ta.shape) != list(tb.shape)
        if retyped or reshaped:
            change = TensorChange(name=tb.name, a=_ref(ta), b=_ref(tb))
            if reshaped:
                counts.reshaped += 1
                if len(diff.reshaped) < LIST_CAP:
                    diff.reshaped.append(change)
            if retyped:
                counts.retyped += 1
                if len(diff.retyped) < LIST_CAP:
                    diff.retyped.append(change)
            touched += 1
            touched_params += tb.numel or 0
        elif not ta.fingerprint or not tb.fingerprint:
            counts.unknown += 1
        elif ta.fingerprint == tb.fingerprint:
            counts.unchanged += 1
        else:
            counts.changed += 1
            touched += 1
            touched_params += tb.numel or 0
            if len(diff.changed) < LIST_CAP:
                diff.changed.append(tb.name)
    for key, ta in left.items():
        if key not in right:
            counts.removed += 1
            if len(diff.removed) < LIST_CAP:
                diff.removed.append(_ref(ta))
    diff.counts = TensorCounts(**vars(counts))
    diff.truncated = any(
        n > LIST_CAP for n in (counts.added, counts.removed, counts.reshaped, counts.retyped, counts.changed)
    )
    diff.touched = touched
    diff.touched_params = touched_params
    diff.note = _fingerprint_note(diff, a_label, b_label)
    if counts.unknown == 0 and diff.b.params > 0:
        diff.touched_share = touched_params / diff.b.params
    diff.summary = _summary(diff)
    return diff


def _fingerprint_note(diff: TensorsDiff, a_label: str, b_label: str) -> str | None:
    if diff.counts.unknown == 0:
        return None
    parts = []
    for label, totals in ((a_label, diff.a), (b_label, diff.b)):
        if totals.fingerprinted == 0:
            parts.append(f"{label} has no tensor fingerprints")
        elif totals.fingerprinted < totals.tensors:
            parts.append(f"{totals.tensors - totals.fingerprinted} of {totals.tensors} tensors of {label} have no fingerprint")
    return (
        f"{'; '.join(parts)}: {_plural(diff.counts.unknown, 'tensor')} could not be compared "
        "(the format did not expose their byte ranges)"
    )


def structure(diff: TensorsDiff) -> str:
    """``1 tensor added, 1 removed, 2 reshaped``, or empty when names, dtypes and shapes all match."""
    c = diff.counts
    items = [(n, what) for what, n in (("added", c.added), ("removed", c.removed), ("reshaped", c.reshaped),
                                        ("retyped", c.retyped)) if n]  # fmt: skip
    return ", ".join(f"{_plural(n, 'tensor')} {what}" if i == 0 else f"{n} {what}" for i, (n, what) in enumerate(items))


def _summary(diff: TensorsDiff) -> str:
    c, n = diff.counts, diff.b.tensors
    shape = structure(diff)
    if c.unknown:
        reason = diff.note.split(":")[0] if diff.note else "fingerprints missing"
        unknown = f"contents of {c.unknown} of {_plural(n, 'tensor')} unknown ({reason})"
        if c.changed:
            unknown = f"{c.changed} changed, {unknown}"
        return f"{shape}; {unknown}" if shape else unknown
    share = _share(diff.touched_params, diff.b.params)
    if not shape:
        if c.changed == 0:
            return f"same weights ({_plural(n, 'tensor')})"
        return f"fine-tune touched {c.changed} of {_plural(n, 'tensor')} ({share} of parameters)"
    return f"{shape}; touched {diff.touched} of {_plural(n, 'tensor')} ({share} of parameters)"
