"""A transient ``Version`` of a file or model directory on disk, for diffing it before it is registered.

It is what registration would record (format, signature, tensor fingerprints, digests, sidecar
metadata, environment lock, git, runtime) with nothing stored: the bytes are hashed once in
reference mode (``put_file(copy=False)`` writes nothing), the lock is parsed but not kept, and the
catalog is never touched. Every blocking step runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from regd.domain import Artifact, EnvLock, FileEntry, Lineage, TensorFingerprint, Version, VersionWarning
from regd.errors import InvalidParams, NotFound
from regd.ingest import formats
from regd.ingest.boundedio import read_bounded
from regd.ingest.envlock import MAX_LOCK_BYTES, EnvLockError, find_env_lock, parse_env_lock
from regd.ingest.gitinfo import git_info
from regd.ingest.pipeline import run_id, store_file
from regd.ingest.runtime import runtime_facts
from regd.ingest.sidecar import load_metadata
from regd.ingest.sources import derive_name, directory_files
from regd.store.blobs import BlobStore, tree_digest

UNREGISTERED = "unregistered"
"""The ``version`` of a probed path: it has none."""


def check_path(path: Path) -> Path:
    """Resolve a path to probe: NotFound when it is not there, InvalidParams when it cannot be read."""
    shown = {"path": str(path)}
    try:
        resolved = path.expanduser().resolve(strict=True)
        st = resolved.stat()
    except FileNotFoundError:
        raise NotFound(f"no such file or directory: {path}", shown) from None
    except (OSError, RuntimeError) as exc:
        raise InvalidParams(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}", shown) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise InvalidParams(f"{path} is not a regular file or a model directory", shown)
    if not os.access(resolved, os.R_OK | (os.X_OK if stat.S_ISDIR(st.st_mode) else 0)):
        raise InvalidParams(f"{path} is not readable", shown)
    return resolved


async def probe(path: Path, blobs: BlobStore, *, name: str | None = None, actor: str = "regd") -> Version:
    """Build the Version registering ``path`` would make, storing nothing.

    Args:
        name: the model name when no sidecar gives one (the diff passes side a's model).

    Raises:
        NotFound: ``path`` does not exist.
        InvalidParams: it cannot be read, holds no files, or kept changing while it was hashed.
    """
    path = await asyncio.to_thread(check_path, Path(path))
    is_dir = path.is_dir()
    try:
        meta = await asyncio.to_thread(load_metadata, path, is_dir=is_dir)
        if is_dir:
            artifact, info = await asyncio.to_thread(_hash_directory, blobs, path)
        else:
            artifact, info = await asyncio.to_thread(_hash_file, blobs, path)
    except PermissionError as exc:
        raise InvalidParams(f"cannot read {exc.filename or path}: permission denied", {"path": str(path)}) from None
    except FileNotFoundError as exc:
        raise NotFound(f"{exc.filename or path} vanished while it was read", {"path": str(path)}) from None
    fields = meta.fields
    warnings: list[VersionWarning] = list(meta.warnings) + list(info.warnings)
    env_lock, lock_warning = await asyncio.to_thread(_env_lock, path, is_dir, fields.env_lock)
    if lock_warning:
        warnings.append(lock_warning)
    git = await git_info(path if is_dir else path.parent)
    runtime = await runtime_facts()
    code_sha = fields.code_sha or (git.commit if git else None)
    params = dict(fields.params or {})
    lock_digest = env_lock.digest if env_lock else None
    return Version(
        model=fields.name or name or derive_name(path, None),
        version=UNREGISTERED,
        description=fields.description,
        artifact=artifact,
        signature=info.signature,
        metrics=dict(fields.metrics or {}),
        params=params,
        tags=dict(fields.tags or {}) | ({"trained_by": fields.created_by} if fields.created_by else {}),
        env_lock=env_lock,
        runtime=runtime,
        git=git,
        lineage=Lineage(run_id=run_id(code_sha, fields.data_version, params, lock_digest), code_sha=code_sha,
                        data_version=fields.data_version, parent=fields.parent, env_lock_digest=lock_digest),  # fmt: skip
        warnings=warnings,
        unsafe_imports=info.unsafe_imports,
        format_metadata=info.metadata,
        tensors=info.tensors,
        created_at=datetime.now(UTC),
        created_by=actor,
    )


def _hash_file(blobs: BlobStore, path: Path) -> tuple[Artifact, formats.FormatInfo]:
    info = formats.read_file(path)
    result = store_file(blobs, path, info.tensors, False, None)  # reference mode: hashes, stores nothing
    artifact = Artifact(
        digest=result.digest, size=result.size, kind="file", format=info.format, stored_path=str(path),
        source_path=str(path), store_mode="reference",
        files=[FileEntry(path=path.name, digest=result.digest, size=result.size)],
    )  # fmt: skip
    return artifact, info


def _hash_directory(blobs: BlobStore, root: Path) -> tuple[Artifact, formats.FormatInfo]:
    relpaths = directory_files(root)
    if not relpaths:
        raise InvalidParams(f"{root} holds no files", {"path": str(root)})
    layout = formats.detect_directory_layout(root, relpaths) or "directory"
    info = formats.read_directory(root, layout, relpaths)
    by_file: dict[str, list[TensorFingerprint]] = {}
    for tensor in info.tensors:
        by_file.setdefault(tensor.file, []).append(tensor)
    entries = []
    for rel in relpaths:
        result = store_file(blobs, root / rel, by_file.get(rel, []), False, None)
        entries.append(FileEntry(path=rel, digest=result.digest, size=result.size))
    artifact = Artifact(
        digest=tree_digest([(e.path, e.digest) for e in entries]), size=sum(e.size for e in entries),
        kind="directory", format=info.format, stored_path=str(root), source_path=str(root),
        store_mode="reference", files=entries,
    )  # fmt: skip
    return artifact, info


def _env_lock(path: Path, is_dir: bool, explicit: str | None) -> tuple[EnvLock | None, VersionWarning | None]:
    """The lock registration would find, parsed; unlike registration, its bytes are not stored."""
    start = path if is_dir else path.parent
    if explicit:
        lock_path = Path(explicit) if Path(explicit).is_absolute() else start / explicit
        if not lock_path.is_file():
            return None, VersionWarning(code="no_env_lock", message=f"env_lock {explicit} named by the sidecar does not exist")
    else:
        found = find_env_lock(start, None)
        if found is None:
            return None, VersionWarning(code="no_env_lock", message="no environment lock found")
        lock_path = found
    try:
        data = read_bounded(lock_path, MAX_LOCK_BYTES)
        parsed = parse_env_lock(lock_path, data)
    except (OSError, EnvLockError) as exc:
        return None, VersionWarning(code="env_lock_invalid", message=f"{lock_path.name}: {exc}")
    digest = hashlib.sha256(data).hexdigest()
    return EnvLock(digest=digest, kind=parsed.kind, source=str(lock_path), packages=parsed.packages), None
