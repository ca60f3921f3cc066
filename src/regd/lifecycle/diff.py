"""What changed from version ``a`` to version ``b``: the pure logic behind ``versions.diff``.

``diff_versions`` takes two ``Version`` objects (with their tensor tables) and returns a
``regd.diffmodel.Diff``; it reads nothing itself. The sections live beside it:

    diff_signature   inputs/outputs and the compatible/breaking rules (its docstring lists them)
    diff_tensors     per-tensor fingerprints: what a fine-tune touched
    diff_files       files by digest, descriptors (config.json, MLmodel) key by key
    diff_env         lock packages and runtime facts
    diff_keys        mappings compared key by key

Metrics: ``delta = b - a``; ``better``/``worse`` from ``lower_is_better`` (the metrics the production
policies of model b list; any other metric is better higher). Lineage: ``run_id`` is
``sha256(canonical_json({code_sha, data_version, params, env_lock_digest}))``, so the diff names
which of those four differ.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection
from typing import Any

from regd.diffmodel import (
    Diff,
    DiffSide,
    Ingredient,
    LineageDiff,
    MetricChange,
    MetricsDiff,
    TextChange,
    ValueChange,
    WarningsDiff,
)
from regd.domain import Version
from regd.lifecycle import diff_env, diff_files, diff_signature, diff_tensors
from regd.lifecycle.diff_files import DescriptorPair
from regd.lifecycle.diff_keys import key_diff, same_value

VERDICT_METRICS = 3
"""How many changed metrics the verdict line names."""
_IGNORED_METADATA = {"files"}
"""format_metadata keys the files section already covers."""


def diff_versions(
    a: Version,
    b: Version,
    *,
    lower_is_better: Collection[str] = (),
    descriptors: dict[str, DescriptorPair] | None = None,
    b_path: str | None = None,
) -> Diff:
    """Compare two versions section by section and write the one-line verdict.

    Args:
        lower_is_better: metrics where smaller is better (from the policies of model b).
        descriptors: loaded descriptors (``diff_files.read_descriptors``); none means not compared.
        b_path: ``b`` is an unregistered path on disk (``probe``), labelled by it.
    """
    same_bytes = a.artifact.digest == b.artifact.digest
    sig = diff_signature.signature_diff(a.signature, b.signature)
    tensors = diff_tensors.tensors_diff(a.tensors, b.tensors)
    files = diff_files.files_diff(a, b, descriptors)
    env = diff_env.env_diff(a.env_lock, b.env_lock, a.runtime, b.runtime)
    lineage = lineage_diff(a, b)
    metrics = metrics_diff(a.metrics, b.metrics, set(lower_is_better))
    result = Diff(
        verdict="",
        a=_side(a, None),
        b=_side(b, b_path),
        same_bytes=same_bytes,
        metrics=metrics,
        params=key_diff(a.params, b.params),
        tags=key_diff(a.tags, b.tags),
        description=TextChange(a=a.description, b=b.description, changed=(a.description or "") != (b.description or "")),
        signature=sig,
        tensors=tensors,
        files=files,
        env=env,
        lineage=lineage,
        format_metadata=key_diff(_metadata(a), _metadata(b), nested=True),
        warnings=_warnings(a, b),
    )
    result.verdict = verdict(result)
    return result


def _side(v: Version, path: str | None) -> DiffSide:
    art = v.artifact
    if path is not None:
        return DiffSide(model=v.model, path=path, digest=art.digest, format=art.format, kind=art.kind, size=art.size)
    return DiffSide(model=v.model, version=v.version, stage=v.stage, digest=art.digest, format=art.format,
                    kind=art.kind, size=art.size, created_at=v.created_at)  # fmt: skip


def _metadata(v: Version) -> dict[str, Any]:
    return {k: val for k, val in v.format_metadata.items() if k not in _IGNORED_METADATA}


def _warnings(a: Version, b: Version) -> WarningsDiff:
    left, right = {w.code for w in a.warnings}, {w.code for w in b.warnings}
    return WarningsDiff(added=sorted(right - left), removed=sorted(left - right))


def metrics_diff(a: dict[str, float], b: dict[str, float], lower_is_better: set[str]) -> MetricsDiff:
    """Every metric of either side: a, b, delta and whether b is better, worse or the same."""
    diff = MetricsDiff()
    for name in sorted(a.keys() | b.keys()):
        direction = "lower" if name in lower_is_better else "higher"
        va, vb = a.get(name), b.get(name)
        if va is None or vb is None:
            diff.items.append(MetricChange(name=name, a=va, b=vb, direction=direction,
                                           verdict="added" if va is None else "removed"))  # fmt: skip
            continue
        delta = float(f"{vb - va:.12g}")  # 0.912 - 0.9 is 0.01200000000000001
        if delta == 0 or math.isclose(va, vb, rel_tol=1e-12, abs_tol=0.0):
            outcome = "same"
        else:
            outcome = "better" if (delta < 0) == (direction == "lower") else "worse"
        diff.better += outcome == "better"
        diff.worse += outcome == "worse"
        diff.items.append(MetricChange(name=name, a=va, b=vb, delta=delta, direction=direction, verdict=outcome))
    return diff


def _canonical_digest(value: Any) -> str:
    # the same canonical JSON as ingest.pipeline.canonical_digest (run_id's definition, DESIGN "Identity")
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def lineage_diff(a: Version, b: Version) -> LineageDiff:
    """Same run or not, and which of run_id's ingredients differ; commit, data and git changes."""
    la, lb = a.lineage, b.lineage
    values = {
        "code_sha": (la.code_sha, lb.code_sha),
        "data_version": (la.data_version, lb.data_version),
        "params": (a.params, b.params),
        "env_lock_digest": (la.env_lock_digest, lb.env_lock_digest),
    }
    ingredients = []
    for name, (x, y) in values.items():
        same = _canonical_digest(x) == _canonical_digest(y)
        if name == "params":  # the params section has the detail; here, the digest run_id hashed
            x, y = _canonical_digest(x)[:12], _canonical_digest(y)[:12]
        ingredients.append(Ingredient(name=name, same=same, a=x, b=y))  # type: ignore[arg-type]
    differs = [i.name for i in ingredients if not i.same]
    same_run = la.run_id == lb.run_id
    note = None
    if not same_run and not differs:
        note = "run_id differs although its four ingredients match (registered by another regd release?)"
    git = []
    ga, gb = a.git, b.git
    for field in ("repository", "remote", "branch", "dirty"):
        x, y = getattr(ga, field, None) if ga else None, getattr(gb, field, None) if gb else None
        if not same_value(x, y):
            git.append(ValueChange(key=field, a=x, b=y))
    parent = ValueChange(key="parent", a=la.parent, b=lb.parent) if la.parent != lb.parent else None
    return LineageDiff(
        same_run=same_run, a_run_id=la.run_id, b_run_id=lb.run_id, differs=differs, ingredients=ingredients,
        same_commit=None if not (la.code_sha and lb.code_sha) else la.code_sha == lb.code_sha,
        same_data=None if not (la.data_version and lb.data_version) else la.data_version == lb.data_version,
        git=git, parent=parent, note=note,
    )  # fmt: skip


def _metric_delta(change: MetricChange) -> str:
    return f"{change.name} {change.delta:+.4g}"


def verdict(d: Diff) -> str:
    """The one line a person reads first: contract, weights, files, metrics, environment, run."""
    parts: list[str] = []
    sig, tensors = d.signature, d.tensors
    io_changed = any(
        getattr(specs, kind) for specs in (sig.inputs, sig.outputs) for kind in ("added", "removed", "reshaped", "retyped")
    )
    # weights-only files break by their tensor layout, which the tensor summary spells out
    weights_only_break = sig.verdict == "breaking" and not io_changed and tensors.available
    if d.same_bytes:
        parts.append("identical bytes")
    elif weights_only_break:
        parts.append(f"breaking: {tensors.summary}")
    elif sig.verdict == "breaking":
        parts.append(f"breaking: {diff_signature.describe(sig)}")
    elif sig.verdict == "compatible":
        changes = diff_signature.describe(sig)
        parts.append(f"compatible: {changes}" if changes else "compatible")
    else:
        parts.append("signature unknown")
    if d.a.format != d.b.format:
        parts.append(f"format {d.a.format} -> {d.b.format}")
    if not d.same_bytes:
        if tensors.available and not weights_only_break:
            parts.append(tensors.summary)
        elif not tensors.available and not (d.a.kind == "directory" or d.b.kind == "directory"):
            parts.append("bytes differ")
        files = diff_files.describe(d.files) if "directory" in (d.a.kind, d.b.kind) else ""
        if files:
            parts.append(files)
    moved = [m for m in d.metrics.items if m.verdict in ("better", "worse")]
    if moved:
        named = ", ".join(_metric_delta(m) for m in moved[:VERDICT_METRICS])
        more = len(moved) - VERDICT_METRICS
        parts.append(named + (f" (+{more} more)" if more > 0 else ""))
    env = diff_env.describe(d.env)
    if env:
        parts.append(env)
    if not d.lineage.same_run and d.lineage.differs:
        parts.append(f"run differs: {', '.join(d.lineage.differs)}")
    return "; ".join(parts)
