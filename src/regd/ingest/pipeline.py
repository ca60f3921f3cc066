"""From a path on disk to a ``VersionDraft``: read the format, store the bytes, gather the metadata.

Every blocking step (format headers, hashing and copying, directory walks, lock files) runs in ONE
worker-thread call (``stage``): a thread hop costs more than reading a small file's header, so a
registration makes one, not one per step. Git and GPU probes are subprocesses (``finish``). A file that changes while it is hashed is
hashed again; one that vanishes is dropped with a clear error.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regd.domain import EnvLock, FileEntry, Signature, TensorFingerprint, VersionWarning
from regd.errors import InvalidParams
from regd.ingest import formats
from regd.ingest.boundedio import read_bounded
from regd.ingest.envlock import MAX_LOCK_BYTES, EnvLockError, ParsedLock, find_env_lock, parse_env_lock
from regd.ingest.gitinfo import describe, work_tree_dir
from regd.ingest.runtime import runtime_facts
from regd.ingest.sidecar import load_metadata
from regd.ingest.sources import derive_name, directory_files
from regd.store.blobs import BlobStore, PutResult, SourceChanged, StagedBlob
from regd.store.catalog import VersionDraft

MAX_REHASH = 5
OVERLAP_MAX = 1 << 20
"""Files up to this size are made durable beside the rest of their registration (``Staged.durable``):
the catalog's writer waits for them before its commit, briefly, since their fsyncs are short."""
_STORING = ThreadPoolExecutor(max_workers=4, thread_name_prefix="regd-store")
"""Runs the fsyncs of small blobs while the registration goes on."""
Progress = Callable[[int], None]
"""Called with the number of bytes newly hashed."""


@dataclass
class Source:
    """A path to register and the context it was found in."""

    path: Path
    watch_root: Path | None = None
    name: str | None = None
    explicit: dict[str, Any] | None = None
    actor: str = "regd"


def canonical_digest(value: Any) -> str:
    """SHA-256 of canonical JSON (sorted keys, no spaces): the basis of run_id and signature digests."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def signature_digest(signature: Signature | None) -> str | None:
    """What MAJOR bumps compare: names, dtypes and shapes of inputs, outputs and tensors."""
    if signature is None or signature.is_empty():
        return None
    return canonical_digest(signature.model_dump(exclude={"extra"}))


def run_id(code_sha: str | None, data_version: str | None, params: dict[str, Any], env_lock_digest: str | None) -> str:
    """DESIGN's run identity: the same code, data, params and environment make the same run."""
    return canonical_digest(
        {"code_sha": code_sha, "data_version": data_version, "params": params, "env_lock_digest": env_lock_digest}
    )


def store_file(blobs: BlobStore, path: Path, tensors: list[TensorFingerprint], copy: bool, progress: Progress | None) -> PutResult:
    """Hash (and copy) one file in a single pass, fingerprinting its tensors; retry while it changes."""
    return _rehashing(path, tensors, progress, lambda ranges, cb: blobs.put_file(path, ranges=ranges, copy=copy, progress=cb))


def stage_file(blobs: BlobStore, path: Path, tensors: list[TensorFingerprint], progress: Progress | None) -> StagedBlob:
    """``store_file`` up to the fsyncs: the bytes are in a temp, hashed; ``publish()`` makes them durable."""
    return _rehashing(path, tensors, progress, lambda ranges, cb: blobs.stage_file(path, ranges=ranges, progress=cb))  # type: ignore[attr-defined]


def _rehashing(path: Path, tensors: list[TensorFingerprint], progress: Progress | None, put: Callable[..., Any]) -> Any:
    spans = [(t, t.offset, t.nbytes) for t in tensors if t.offset is not None and t.nbytes is not None]
    for attempt in range(MAX_REHASH):
        reported = 0

        def cumulative(done: int) -> None:  # the store reports a running total per attempt
            nonlocal reported
            if progress is not None and done > reported:
                progress(done - reported)
                reported = done

        try:
            out = put([(o, n) for _, o, n in spans], cumulative)
        except SourceChanged:
            if attempt == MAX_REHASH - 1:
                raise InvalidParams(f"{path} kept changing while it was hashed ({MAX_REHASH} tries); try when it is done") from None
            continue
        result = out.result if isinstance(out, StagedBlob) else out
        for (tensor, _, _), fp in zip(spans, result.fingerprints, strict=True):
            tensor.fingerprint = fp
        return out
    raise AssertionError("unreachable")


@dataclass
class Staged:
    """What the worker thread learned and stored; ``finish`` adds git and runtime facts on the loop."""

    source: Source
    draft: VersionDraft
    git_dir: Path | None
    """Where to ask git (the artifact sits in a work tree), else None: no subprocess at all."""
    fields_code_sha: str | None
    lock_digest: str | None
    durable: Future[PutResult] | None = None
    """A small file's blob being made durable (fsync, link, fsync of its shard) while the rest goes on;
    whoever records the version commits only once it is done."""


def stage(source: Source, blobs: BlobStore, *, copy: bool, progress: Progress | None = None) -> Staged:
    """Every blocking step of a registration in one call (one worker-thread hop, not one per step).

    Reads the sidecars and the format, stores the bytes durably, finds the environment lock and
    whether the artifact sits in a git work tree.
    """
    path = source.path
    is_dir = path.is_dir()
    meta = load_metadata(path, is_dir=is_dir, explicit=source.explicit, root=source.watch_root)
    fields = meta.fields
    warnings: list[VersionWarning] = list(meta.warnings)
    name = source.name or fields.name or derive_name(path, source.watch_root)

    durable: Future[PutResult] | None = None
    if is_dir:
        info, files, digest, size, stored = _store_directory(blobs, path, copy, progress)
        kind = "directory"
    else:
        info = formats.read_file(path)
        if copy and hasattr(blobs, "stage_file") and _size(path) <= OVERLAP_MAX:
            # a small file's registration is mostly waiting on fsyncs: run them beside the rest
            staged_blob = stage_file(blobs, path, info.tensors, progress)
            durable = _STORING.submit(staged_blob.publish)
            result = staged_blob.result
        else:
            result = store_file(blobs, path, info.tensors, copy, progress)
        digest, size, kind = result.digest, result.size, "file"
        files = [FileEntry(path=path.name, digest=digest, size=size)]
        stored = str(result.path) if copy and result.path else str(path)
    env_lock, lock_warning = _env_lock(blobs, path, is_dir, source.watch_root, fields.env_lock)
    git_dir = work_tree_dir(path if is_dir else path.parent)
    warnings.extend(info.warnings)
    if lock_warning:
        warnings.append(lock_warning)
    params = dict(fields.params or {})
    draft = VersionDraft(
        name=name,
        digest=digest,
        size=size,
        kind=kind,
        format=info.format,
        stored_path=stored,
        source_path=str(path),
        store_mode="copy" if copy else "reference",
        run_id="",  # set by ``finish``: it needs the git commit
        # the registrant is who asked (the socket's user), never what a sidecar claims: approvals
        # exclude the registrant, so a sidecar must not be able to name someone else
        created_by=source.actor,
        files=files,
        signature=info.signature,
        signature_digest=signature_digest(info.signature),
        tensors=info.tensors,
        format_metadata=info.metadata,
        description=fields.description,
        metrics=dict(fields.metrics or {}),
        params=params,
        tags=dict(fields.tags or {}) | ({"trained_by": fields.created_by} if fields.created_by else {}),
        env_lock=env_lock,
        data_version=fields.data_version,
        parent=fields.parent,
        warnings=warnings,
        unsafe_imports=info.unsafe_imports,
        pinned_version=fields.version,
    )
    return Staged(source, draft, git_dir, fields.code_sha, env_lock.digest if env_lock else None, durable)


async def finish(staged: Staged) -> VersionDraft:
    """Add the git facts (subprocesses, only inside a work tree) and the runtime facts (cached)."""
    draft = staged.draft
    draft.git = await describe(staged.git_dir) if staged.git_dir is not None else None
    draft.runtime = await runtime_facts()
    draft.code_sha = staged.fields_code_sha or (draft.git.commit if draft.git else None)
    draft.run_id = run_id(draft.code_sha, draft.data_version, draft.params, staged.lock_digest)
    return draft


async def prepare(source: Source, blobs: BlobStore, *, copy: bool, progress: Progress | None = None) -> VersionDraft:
    """Turn a checked path into a draft whose bytes are already durably stored."""
    staged = await asyncio.to_thread(stage, source, blobs, copy=copy, progress=progress)
    if staged.durable is not None:
        await asyncio.wrap_future(staged.durable)
    return await finish(staged)


def _store_directory(
    blobs: BlobStore, root: Path, copy: bool, progress: Progress | None
) -> tuple[formats.FormatInfo, list[FileEntry], str, int, str]:
    from regd.store.blobs import tree_digest

    relpaths = directory_files(root)
    if not relpaths:
        raise InvalidParams(f"{root} holds no files to register")
    layout = formats.detect_directory_layout(root, relpaths) or "directory"
    info = formats.read_directory(root, layout, relpaths)
    by_file: dict[str, list[TensorFingerprint]] = {}
    for tensor in info.tensors:
        by_file.setdefault(tensor.file, []).append(tensor)
    entries = []
    for rel in relpaths:
        result = store_file(blobs, root / rel, by_file.get(rel, []), copy, progress)
        entries.append(FileEntry(path=rel, digest=result.digest, size=result.size))
    pairs = [(e.path, e.digest) for e in entries]
    if copy:
        digest, tree = blobs.build_tree(pairs)
        stored = str(tree)
    else:
        digest, stored = tree_digest(pairs), str(root)
    return info, entries, digest, sum(e.size for e in entries), stored


def _env_lock(
    blobs: BlobStore, path: Path, is_dir: bool, watch_root: Path | None, explicit: str | None
) -> tuple[EnvLock | None, VersionWarning | None]:
    start = path if is_dir else path.parent
    if explicit:
        lock_path = (start / explicit) if not Path(explicit).is_absolute() else Path(explicit)
        if not lock_path.is_file():
            return None, VersionWarning(code="no_env_lock", message=f"env_lock {explicit} named by the sidecar does not exist")
    else:
        found = find_env_lock(start, watch_root)
        if found is None:
            return None, VersionWarning(
                code="no_env_lock", message="no environment lock (uv.lock, poetry.lock, requirements.txt ...) found"
            )
        lock_path = found
    try:
        data = read_bounded(lock_path, MAX_LOCK_BYTES)
        digest = hashlib.sha256(data).hexdigest()
        parsed = _PARSED_LOCKS.get(digest)
        if parsed is None:  # the same lock is shared by every run of a project: parse it once
            parsed = parse_env_lock(lock_path, data)
            if len(_PARSED_LOCKS) > 256:
                _PARSED_LOCKS.clear()
            _PARSED_LOCKS[digest] = parsed
    except (OSError, EnvLockError) as exc:
        return None, VersionWarning(code="env_lock_invalid", message=f"{lock_path.name}: {exc}")
    blobs.put_bytes(data)
    return EnvLock(digest=digest, kind=parsed.kind, source=str(lock_path), packages=parsed.packages), None


_PARSED_LOCKS: dict[str, ParsedLock] = {}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return OVERLAP_MAX + 1  # let the ordinary path raise what it raises

