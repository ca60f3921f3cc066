"""The content-addressed blob store: the exact bytes of every registered model, named by SHA-256.

Layout under ``root``::

    objects/sha256/<first two hex>/<64 hex>   one file per distinct content, mode 0444
    objects/tmp/<random>.tmp                  writes in progress (same filesystem: renames are atomic)
    trees/<dirdigest>/<relpath>               read-only trees of hard links to blobs (model directories)
    trees/.tmp-*                              trees being built or deleted

Every write goes temp file -> write -> fsync(file) -> link into place -> fsync(shard directory)
(and fsync ``objects/sha256`` when the shard was just created). A crash at any point leaves either
no blob or a complete one, plus perhaps a stale temp that ``cleanup_temp()`` removes on start.
A blob that exists is never rewritten: the new temp is discarded. Any error mid-write removes the
temp and re-raises.

Bytes come in through one read pass (``copying.py``): cloned with FICLONE where the filesystem can
(then the clone is hashed), else read once into a ring of buffers that is hashed and written at the
same time, with O_DIRECT for large files. Model directories are stored as blobs plus a manifest,
with a read-only tree of hard links to load them from (``trees.py``).

The store is synchronous and thread-safe; the daemon calls it through ``asyncio.to_thread``.
``BlobStore`` is the interface a later S3 store implements as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from regd.store import copying, trees
from regd.store.copying import SourceChanged, check_ranges, check_unchanged, fsync_dir, open_source, write_all
from regd.store.trees import check_digest, check_relpath, manifest, tree_digest

__all__ = [
    "BlobStore",
    "LocalBlobStore",
    "PutResult",
    "SourceChanged",
    "check_relpath",
    "manifest",
    "tree_digest",
]

BLOB_MODE = 0o444
SYNCED_MAX = 4096


@dataclass(frozen=True)
class PutResult:
    """What ``put_file`` stored or, in reference mode, found."""

    digest: str
    """SHA-256 hex of the file's bytes."""
    size: int
    fingerprints: list[str]
    """``xxh3:<32 hex>`` (xxh3_128) of each requested byte range, in the order asked."""
    existed: bool
    """The blob was already stored (in reference mode: a blob of these bytes is in the store)."""
    path: Path | None
    """The blob's path; None in reference mode."""
    parts: list[bytes] = dataclasses.field(default_factory=list)
    """Raw SHA-256 of each ``part_size`` bytes, when ``LocalBlobStore.put_file`` was asked for them."""


class BlobStore(Protocol):
    """Where model bytes live, by digest."""

    def put_file(
        self,
        src: Path,
        *,
        ranges: Sequence[tuple[int, int]] = (),
        copy: bool = True,
        progress: Callable[[int], None] | None = None,
        replace: bool = False,
    ) -> PutResult:
        """Store (``copy=True``) or only hash a regular file in one read pass.

        Args:
            ranges: ``(offset, length)`` byte ranges to fingerprint with xxh3_128, in any order,
                overlapping or not; checked against the file's size before anything is read.
            copy: False is reference mode: hash and fingerprint only, store nothing.
            progress: called from the calling thread with the cumulative bytes read, every
                few MiB and once at the end.
            replace: store the bytes even where a blob of their digest is present (a damaged one,
                ``verify --repair``): the new blob takes its name atomically once durable, so the
                old one stays in place if anything fails first (a full disk).

        Raises:
            SourceChanged: the file changed while it was read.
            FileNotFoundError: the file vanished (before or while it was read).
            IsADirectoryError, ValueError: not a regular file; a range outside the file.
            OSError: the store could not write (ENOSPC ...); nothing is left behind.
        """
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` (a manifest, a lock file) and return its digest."""
        ...

    def path(self, digest: str) -> Path:
        """Where the blob of ``digest`` lives (or would live); does not check that it exists."""
        ...

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int | None:
        """The stored blob's size; None when it is not stored. Never fetches the bytes (gc's plan)."""
        ...

    remote: bool
    """True when the bytes live elsewhere (S3) and this host's paths are only a read-through cache."""

    def local_path(self, kind: str, digest: str) -> Path:
        """Where a version's bytes are on this host (a file's blob, a directory's tree), or will be
        once ``materialise``d; fetches nothing. Stored paths in the catalog may be another host's."""
        ...

    def materialise(self, kind: str, digest: str, files: Sequence[tuple[str, str]]) -> Path:
        """Make a version's bytes present on this host and return ``local_path``: what serving code,
        deploy pointers and hooks load. ``files``: a directory's ``[(relpath, digest)]``.

        Raises:
            FileNotFoundError: the store does not hold them.
        """
        ...

    def verify(self, digest: str) -> Literal["ok", "missing", "corrupt"]:
        """Rehash the stored blob."""
        ...

    def delete(self, digest: str) -> bool:
        """Remove a blob; False if it was not stored. Trees linking it keep their copy."""
        ...

    def digests(self) -> Iterator[str]:
        """Every stored digest, in no particular order."""
        ...

    def build_tree(self, files: Sequence[tuple[str, str]]) -> tuple[str, Path]:
        """Store a directory's manifest and its read-only tree from ``[(relpath, digest)]``."""
        ...

    def delete_tree(self, dirdigest: str) -> bool: ...

    def tree_digests(self) -> Iterator[str]:
        """The directory digest of every stored tree."""
        ...

    def cleanup_temp(self) -> int:
        """Remove temps left by a crash; returns how many. Call on start, before serving."""
        ...


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root`` on the local filesystem."""

    def __init__(self, root: Path, *, direct_io: bool = True) -> None:
        self.root = Path(root)
        self._direct = direct_io
        self.objects = self.root / "objects" / "sha256"
        self.tmp = self.root / "objects" / "tmp"
        self.trees = self.root / "trees"
        self._objects = str(self.objects)
        for d in (self.objects, self.tmp, self.trees):
            if not d.is_dir():
                d.mkdir(parents=True, exist_ok=True)
                fsync_dir(d.parent)
        self._shards: set[str] = set()
        self._inflight: set[str] = set()
        self._tree_jobs = 0
        self._lock = threading.Lock()
        self._pool = copying.BufferPool()
        self._no_reflink: set[int] = set()
        self._synced: set[str] = set()
        """Small blobs (``put_bytes``) this process has stored or seen stored and fsynced."""

    # -- reading -----------------------------------------------------------------------------

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.objects / digest[:2] / digest

    def tree_path(self, dirdigest: str) -> Path:
        """Where the tree of ``dirdigest`` lives (or would live)."""
        return self.trees / check_digest(dirdigest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    remote = False

    def size(self, digest: str) -> int | None:
        return _size_of(str(self.path(digest)))

    def local_path(self, kind: str, digest: str) -> Path:
        return self.tree_path(digest) if kind == "directory" else self.path(digest)

    def materialise(self, kind: str, digest: str, files: Sequence[tuple[str, str]]) -> Path:
        path = self.local_path(kind, digest)
        if kind == "directory":
            if not path.is_dir():  # removed by hand or by a crash mid-build: its blobs rebuild it
                path = self.build_tree(files)[1]
        elif not path.is_file():
            raise FileNotFoundError(f"{self.root} holds no blob {digest}")
        return path

    def verify(self, digest: str) -> Literal["ok", "missing", "corrupt"]:
        try:
            fd = os.open(self.path(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return "missing"
        try:
            copying.advise_sequential(fd)
            got = copying.pump(fd, None, size_hint=os.fstat(fd).st_size, pool=self._pool)
        finally:
            os.close(fd)
        return "ok" if got.sha256 == digest else "corrupt"

    def digests(self) -> Iterator[str]:
        with os.scandir(self.objects) as shards:
            names = sorted(e.name for e in shards if len(e.name) == 2 and e.is_dir())
        for shard in names:
            with os.scandir(self.objects / shard) as entries:
                for e in entries:
                    if e.name.startswith(shard) and trees.is_digest(e.name):
                        yield e.name

    # -- writing -----------------------------------------------------------------------------

    def put_file(
        self,
        src: Path,
        *,
        ranges: Sequence[tuple[int, int]] = (),
        copy: bool = True,
        progress: Callable[[int], None] | None = None,
        replace: bool = False,
        part_size: Callable[[int], int] | None = None,
    ) -> PutResult:
        """``BlobStore.put_file``; ``part_size(size)``, if given, asks for ``PutResult.parts`` as well
        (copy mode only): what the S3 store checksums a multipart upload with, hashed in the same pass."""
        src = Path(src)
        fd, before, spans = _open_for_reading(src, ranges)
        try:
            if not copy:
                got = copying.pump(fd, None, size_hint=before.st_size, spans=spans, progress=progress, pool=self._pool)
                check_unchanged(src, fd, before, got.nbytes)
                return PutResult(got.sha256, got.nbytes, got.fingerprints, self.exists(got.sha256), None)
            parts = part_size(before.st_size) if part_size is not None else 0
            return self._store_file(src, fd, before, spans, progress, parts, replace)
        finally:
            os.close(fd)

    def _store_file(self, src, fd, before, spans, progress, part_size=0, replace=False) -> PutResult:  # type: ignore[no-untyped-def]
        with self._temp(f"storing {src}") as temp:
            got = self._fill(src, fd, temp, before, spans, progress, part_size)
            existed = self._publish(temp, got.sha256, got.nbytes, replace)
        return PutResult(got.sha256, got.nbytes, got.fingerprints, existed, self.path(got.sha256), got.parts)

    def _fill(self, src, fd, temp, before, spans, progress, part_size=0) -> copying.Digests:  # type: ignore[no-untyped-def]
        """Copy (or clone) the source into the temp in one pass, hashing it; raise if it changed meanwhile."""
        if before.st_dev not in self._no_reflink and self._reflink(fd, temp.fd, before.st_dev):
            # The clone is a private snapshot: hashing it hashes exactly what is stored.
            got = copying.pump(temp.fd, None, size_hint=before.st_size, spans=spans, progress=progress, pool=self._pool,
                               part_size=part_size)  # fmt: skip
        else:
            got = copying.pump(
                fd, temp.fd, size_hint=before.st_size, spans=spans, progress=progress, pool=self._pool,
                direct=self._direct, part_size=part_size,
            )  # fmt: skip
        check_unchanged(src, fd, before, got.nbytes)
        return got

    def stage_file(
        self,
        src: Path,
        *,
        ranges: Sequence[tuple[int, int]] = (),
        progress: Callable[[int], None] | None = None,
        part_size: Callable[[int], int] | None = None,
    ) -> StagedBlob:
        """``put_file`` (copy mode) in two steps: read, hash and write a temp now; ``publish()`` later.

        The caller learns the digest before the fsyncs, so it can do other work while they run (the
        registration path prepares the version's catalog statements; the S3 store uploads the temp's
        bytes) and commit only once ``publish()`` has returned: nothing refers to the blob before it
        is durable. ``part_size`` as in ``put_file``.
        """
        src = Path(src)
        fd, before, spans = _open_for_reading(src, ranges)
        try:
            stack = contextlib.ExitStack()
            temp = stack.enter_context(self._temp(f"storing {src}"))
            try:
                parts = part_size(before.st_size) if part_size is not None else 0
                got = self._fill(src, fd, temp, before, spans, progress, parts)
            except BaseException as exc:
                _unwind(stack, exc)
                raise
        finally:
            os.close(fd)
        result = PutResult(got.sha256, got.nbytes, got.fingerprints, False, self.path(got.sha256), got.parts)
        return StagedBlob(self, stack, temp, result)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        shard = os.path.join(self._objects, digest[:2])
        if _size_of(os.path.join(shard, digest)) == len(data):
            if digest not in self._synced:
                fsync_dir(shard)  # as in _publish: stored, perhaps a moment ago
                self._remember_synced(digest)
            return digest
        with self._temp(f"storing {len(data)} bytes") as temp:
            write_all(temp.fd, data)
            self._publish(temp, digest, len(data))
        self._remember_synced(digest)
        return digest

    def _remember_synced(self, digest: str) -> None:
        # the same lock file comes with every run of a project: one directory fsync, not one per version
        if len(self._synced) >= SYNCED_MAX:
            self._synced.clear()
        self._synced.add(digest)

    def delete(self, digest: str) -> bool:
        path = self.path(digest)
        self._synced.discard(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def build_tree(self, files: Sequence[tuple[str, str]]) -> tuple[str, Path]:
        files = list(files)
        dirdigest = self.put_bytes(manifest(files))
        with self._tree_work():
            return dirdigest, trees.build_tree(self.trees, files, self.path, dirdigest)

    def delete_tree(self, dirdigest: str) -> bool:
        with self._tree_work():
            return trees.delete_tree(self.trees, check_digest(dirdigest))

    def tree_digests(self) -> Iterator[str]:
        with os.scandir(self.trees) as entries:
            names = [e.name for e in entries if trees.is_digest(e.name) and e.is_dir(follow_symlinks=False)]
        yield from names

    def cleanup_temp(self) -> int:
        removed = 0
        with self._lock:
            busy = set(self._inflight)
        with os.scandir(self.tmp) as entries:
            for e in entries:
                if e.path in busy:
                    continue
                if e.is_dir(follow_symlinks=False):
                    trees.remove_tree(Path(e.path))
                else:
                    _unlink_quiet(e.path)
                removed += 1
        with self._lock:
            if self._tree_jobs:  # their .tmp-* directories are in use
                return removed
        with os.scandir(self.trees) as entries:
            for e in entries:
                if e.name.startswith(trees.TMP_PREFIX) and e.is_dir(follow_symlinks=False):
                    trees.remove_tree(Path(e.path))
                    removed += 1
        return removed

    # -- internals ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _tree_work(self) -> Iterator[None]:
        with self._lock:
            self._tree_jobs += 1
        try:
            yield
        finally:
            with self._lock:
                self._tree_jobs -= 1

    @contextlib.contextmanager
    def _temp(self, doing: str) -> Iterator[_Temp]:
        """A new temp file in ``objects/tmp``, removed on the way out whatever happens.

        An OSError that names no file (ENOSPC, EIO from a write or an fsync) is raised again
        naming the temp and saying what was being stored, so the message tells where.
        """
        path = os.path.join(self.tmp, f"{secrets.token_hex(8)}.tmp")
        with self._lock:
            self._inflight.add(path)
        temp = _Temp(path)
        try:
            temp.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            yield temp
        except OSError as e:
            if e.filename is None:
                raise OSError(e.errno, f"{e.strerror} ({doing} in {self.root})", path) from e
            raise
        finally:
            if temp.fd >= 0:
                os.close(temp.fd)
            _unlink_quiet(path)
            with self._lock:
                self._inflight.discard(path)

    def _publish(self, temp: _Temp, digest: str, size: int, replace: bool = False) -> bool:
        """Make the written temp the blob of ``digest``; True if that blob already existed.

        Closes the temp's fd. Linked, not renamed, into place: link never replaces, so a blob stored
        meanwhile by another writer is left as it is. A same-named file of the wrong size is
        not that blob (the store was tampered with) and is replaced; with ``replace``, so is one of
        the right size (a repair: its bytes are damaged).
        """
        shard = os.path.join(self._objects, digest[:2])
        final = os.path.join(shard, digest)
        tmp, tfd = temp.path, temp.fd
        temp.fd = -1
        present = _size_of(final)
        if present == size and not replace:
            os.close(tfd)
            fsync_dir(shard)  # it may have been linked a moment ago by another writer, not yet synced
            return True
        try:
            os.fchmod(tfd, BLOB_MODE)
            os.fsync(tfd)
        finally:
            os.close(tfd)
        self._ensure_shard(shard)
        existed = False
        if present is not None:
            os.replace(tmp, final)
            existed = present == size  # a repair's: a blob of that name was there (damaged, but in use)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                existed = True
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                os.rename(tmp, final)  # a filesystem without hard links
        fsync_dir(shard)
        return existed

    def _reflink(self, fd: int, tfd: int, dev: int) -> bool:
        err = copying.reflink(fd, tfd)
        if err in copying.NO_REFLINK:
            self._no_reflink.add(dev)  # not worth an ioctl per file on this filesystem
        return err == 0

    def _ensure_shard(self, shard: str) -> None:
        if shard in self._shards:
            return
        if not os.path.isdir(shard):
            try:
                os.mkdir(shard)
            except FileExistsError:
                pass
            fsync_dir(self._objects)
        self._shards.add(shard)


@dataclass
class _Temp:
    path: str
    fd: int = -1


class StagedBlob:
    """A file's bytes hashed and written to a temp (``stage_file``), not yet durable under their name."""

    def __init__(self, store: LocalBlobStore, stack: contextlib.ExitStack, temp: _Temp, result: PutResult) -> None:
        self.result = result
        """The digest, size, fingerprints and final path (``existed`` is known only after ``publish``)."""
        self._store = store
        self._stack = stack
        self._temp = temp

    def open_copy(self) -> int:
        """A read-only fd of the staged bytes (the caller closes it): valid after ``publish`` too."""
        return os.open(self._temp.path, os.O_RDONLY | os.O_CLOEXEC)

    def publish(self, replace: bool = False) -> PutResult:
        """fsync the temp, link it into place, fsync the shard: the same steps as ``put_file``."""
        try:
            existed = self._store._publish(self._temp, self.result.digest, self.result.size, replace)  # noqa: SLF001
        except BaseException as exc:
            _unwind(self._stack, exc)
            raise
        self._stack.close()
        return dataclasses.replace(self.result, existed=existed)

    def discard(self) -> None:
        """Remove the temp without publishing it."""
        self._stack.close()


def _open_for_reading(src: Path, ranges: Sequence[tuple[int, int]]) -> tuple[int, os.stat_result, list[tuple[int, int]]]:
    """Open a source to store or hash: its fd (the caller closes it), its stat before reading, and
    the fingerprint ranges checked against its size before a byte is read."""
    fd = open_source(src)
    try:
        before = os.fstat(fd)
        spans = check_ranges(ranges, before.st_size)
        copying.advise_sequential(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd, before, spans


def _unwind(stack: contextlib.ExitStack, exc: BaseException) -> None:
    # hand the failure to the temp's context manager: it removes the temp and names it in the error
    stack.__exit__(type(exc), exc, exc.__traceback__)


def _size_of(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


def _unlink_quiet(path: str | os.PathLike[str]) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
