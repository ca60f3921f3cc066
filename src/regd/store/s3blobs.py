"""The team blob store: blobs in an S3-compatible bucket, with a local read-through cache.

Layout: ``s3://<bucket>/<prefix>/sha256/<first two hex>/<64 hex>``, one object per distinct content.
The endpoint, region and keys come from the standard AWS environment and config files (boto3's own
resolution: ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``~/.aws/config`` ...), so AWS S3, MinIO, Ceph RGW,
Cloudflare R2 and others work without regd settings of their own.

A write goes through the local cache (a ``LocalBlobStore`` under ``<data_dir>/cache``): the one read
pass hashes, fingerprints and copies the file there, then the cached bytes are uploaded, unless the
bucket already holds an object of that name and size. Uploads carry SHA-256 checksums the server
checks: the whole digest on a single PUT, each part's own on a multipart upload (and, where the
server reports it, the composite checksum of the completed object is compared with ours). A PUT
or a completed multipart upload is atomic: the object is there whole or not at all.

Reads go through the cache too: ``path(digest)`` downloads a blob that is not cached yet into a temp
file, checks its SHA-256, and renames it into place, so ``regd path``, diffs and model directory
trees (built in the cache, hard links as in the local store) always see verified bytes.

The store is synchronous and thread-safe, like the local one; the daemon calls it through
``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from regd.store import trees
from regd.store.blobs import LocalBlobStore, PutResult
from regd.store.copying import fsync_dir
from regd.store.trees import check_digest, manifest

log = logging.getLogger(__name__)

PART_SIZE = 8 << 20
"""Multipart part size (S3's minimum is 5 MiB; grown so a file needs at most ``MAX_PARTS``)."""
MAX_PARTS = 9_000
MULTIPART_MIN = 16 << 20
"""Files this large are uploaded in parts, in parallel; smaller ones in one PUT."""
CONCURRENCY = 10
STALE_UPLOAD = timedelta(days=1)
"""Incomplete multipart uploads older than this are aborted at start (a daemon died mid-upload)."""
READ_CHUNK = 8 << 20


class S3BlobStore:
    """``BlobStore`` in an S3-compatible bucket."""

    def __init__(self, url: str, cache: Path, *, client: Any = None, concurrency: int = CONCURRENCY) -> None:
        if not url.startswith("s3://"):
            raise ValueError(f"objects = {url!r}: expected 's3://bucket/prefix'")
        self.url = url.rstrip("/")
        self.bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/sha256/" if self.prefix else "sha256/"
        # the cache's large writes stay in the page cache: the upload reads them straight back
        self.cache = LocalBlobStore(cache, direct_io=False)
        self._concurrency = concurrency
        self._client = client if client is not None else _default_client(concurrency)
        self._fetching: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._publisher = ThreadPoolExecutor(2, thread_name_prefix="regd-s3-cache")

    # -- names -------------------------------------------------------------------------------

    def key(self, digest: str) -> str:
        """The object key of ``digest``."""
        check_digest(digest)
        return f"{self._root}{digest[:2]}/{digest}"

    def path(self, digest: str) -> Path:
        """The cached copy of the blob, downloaded (and checked) first if it is not cached yet.

        A blob the bucket does not hold either gives its would-be path, as the local store does.
        """
        cached = self.cache.path(digest)
        if not cached.is_file():
            with contextlib.suppress(FileNotFoundError):
                self.fetch(digest)
        return cached

    def tree_path(self, dirdigest: str) -> Path:
        return self.cache.tree_path(dirdigest)

    remote = True

    def local_path(self, kind: str, digest: str) -> Path:
        """The cached blob or tree (another host's stored path means nothing here)."""
        return self.cache.local_path(kind, digest)

    # -- reading -----------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        return self.size(digest) is not None

    def size(self, digest: str) -> int | None:
        """The stored object's size; None when the bucket does not hold it."""
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=self.key(digest))
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        return int(head["ContentLength"])

    def fetch(self, digest: str) -> Path:
        """Download the blob into the cache (once, however many threads ask), checking its SHA-256.

        Raises:
            FileNotFoundError: the bucket does not hold it.
            OSError: the object's bytes do not hash to its name (it is left out of the cache).
        """
        cached = self.cache.path(digest)
        with self._lock:
            lock = self._fetching.setdefault(digest, threading.Lock())
        with lock:
            if cached.is_file():
                return cached
            tmp = self.cache.tmp / f"{secrets.token_hex(8)}.fetch"
            try:
                got = self._download(digest, tmp)
                if got != digest:
                    raise OSError(f"{self.url}: object {self.key(digest)} is corrupt (its bytes hash to {got})")
                os.chmod(tmp, 0o444)
                shard = cached.parent
                if not shard.is_dir():
                    shard.mkdir(parents=True, exist_ok=True)
                    fsync_dir(shard.parent)
                os.replace(tmp, cached)
                fsync_dir(shard)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                with self._lock:
                    self._fetching.pop(digest, None)
        return cached

    def materialise(self, kind: str, digest: str, files: Sequence[tuple[str, str]]) -> Path:
        """A version's bytes on this host: the cached blob of a file, the cached tree of a directory."""
        if kind == "directory":
            tree = self.cache.tree_path(digest)
            return tree if tree.is_dir() else self.build_tree(files)[1]
        return self.fetch(digest)

    def verify(self, digest: str) -> Literal["ok", "missing", "corrupt"]:
        """Rehash the object in the bucket; a cached copy that does not match is dropped from the cache."""
        try:
            got = self._stream_hash(digest)
        except FileNotFoundError:
            state: Literal["ok", "missing", "corrupt"] = "missing"
        else:
            state = "ok" if got == digest else "corrupt"
        cached = self.cache.path(digest)
        if cached.is_file() and self.cache.verify(digest) != "ok":
            log.warning("cached blob %s does not match its digest: dropped from the cache", digest)
            self.cache.delete(digest)
        return state

    def digests(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root):
            for obj in page.get("Contents", ()):
                shard, _, name = obj["Key"].removeprefix(self._root).partition("/")
                if trees.is_digest(name) and name.startswith(shard) and len(shard) == 2:
                    yield name

    # -- writing -----------------------------------------------------------------------------

    def put_file(
        self,
        src: Path,
        *,
        ranges: Sequence[tuple[int, int]] = (),
        copy: bool = True,
        progress: Callable[[int], None] | None = None,
        replace: bool = False,
    ) -> PutResult:
        if not copy:  # reference mode: hash and fingerprint where the file lies, store nothing
            got = self.cache.put_file(src, ranges=ranges, copy=False, progress=progress)
            return PutResult(got.digest, got.size, got.fingerprints, self.exists(got.digest), None)
        # the copy into the cache also checksums the multipart upload's parts: no second read for them
        staged = self.cache.stage_file(src, ranges=ranges, progress=progress, part_size=_part_size)
        got = staged.result
        try:
            fd = staged.open_copy()
        except BaseException:
            staged.discard()
            raise
        try:
            # the cache copy's fsyncs run beside the upload, which reads the same bytes (from the page
            # cache): a large file's upload need not wait for its local copy to reach the disk first
            cached = self._publisher.submit(staged.publish, replace)
            try:
                # a PUT replaces an object whole, so a repair simply uploads again
                existed = self._upload(got.digest, got.size, fd, got.parts, force=replace)
            finally:
                wait([cached])
            cached.result()  # a cache that could not take the copy fails the put, as before
        finally:
            os.close(fd)
        assert got.path is not None
        return PutResult(got.digest, got.size, got.fingerprints, existed, got.path)

    def put_blob(self, digest: str, path: Path) -> bool:
        """Store a blob whose digest is already known (``regd migrate``): hard-linked into the cache,
        then uploaded unless the bucket has it; True if it was there already."""
        cached = self.cache.path(digest)
        if not cached.is_file():
            cached.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, cached)
            except FileExistsError:
                pass
            except OSError:  # another filesystem: copy (and check) instead
                got = self.cache.put_file(path)
                if got.digest != digest:
                    raise OSError(f"{path} does not hash to its name {digest}") from None
        fd = os.open(cached, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._upload(digest, os.fstat(fd).st_size, fd)
        finally:
            os.close(fd)

    def put_bytes(self, data: bytes) -> str:
        digest = self.cache.put_bytes(data)
        if self.size(digest) != len(data):
            self._client.put_object(Bucket=self.bucket, Key=self.key(digest), Body=data,
                                    ChecksumSHA256=_b64(bytes.fromhex(digest)))  # fmt: skip
        return digest

    def delete(self, digest: str) -> bool:
        stored = self.exists(digest)
        if stored:
            self._client.delete_object(Bucket=self.bucket, Key=self.key(digest))
        cached = self.cache.delete(digest)
        return stored or cached

    def build_tree(self, files: Sequence[tuple[str, str]]) -> tuple[str, Path]:
        """Store the directory's manifest in the bucket and build its tree in the cache."""
        files = list(files)
        self.put_bytes(manifest(files))  # another host rebuilds the tree from it
        for _, digest in files:
            if not self.cache.path(digest).is_file():
                self.fetch(digest)
        return self.cache.build_tree(files)

    def delete_tree(self, dirdigest: str) -> bool:
        return self.cache.delete_tree(dirdigest)

    def tree_digests(self) -> Iterator[str]:
        return self.cache.tree_digests()

    def cleanup_temp(self) -> int:
        """The cache's crash leftovers, and multipart uploads abandoned for a day (a daemon died)."""
        removed = self.cache.cleanup_temp()  # downloads in progress are temps there too
        cutoff = datetime.now(UTC) - STALE_UPLOAD
        try:
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root):
                for up in page.get("Uploads", ()):
                    if up["Initiated"] < cutoff:
                        self._client.abort_multipart_upload(Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"])
                        removed += 1
        except Exception as exc:  # noqa: BLE001 - not every S3 lists uploads; leftovers cost space, not correctness
            log.warning("could not list abandoned multipart uploads in %s: %s", self.url, exc)
        return removed

    # -- transfers ---------------------------------------------------------------------------

    def _upload(self, digest: str, size: int, fd: int, checksums: Sequence[bytes] = (), force: bool = False) -> bool:
        """Upload the blob open at ``fd`` unless the bucket holds it already (or ``force``); True if it did.

        ``checksums``: the raw SHA-256 of each ``_part_size(size)`` bytes, if already known.
        """
        present = self.size(digest) == size
        if present and not force:
            return True
        key = self.key(digest)
        if size < MULTIPART_MIN:
            reply = self._client.put_object(Bucket=self.bucket, Key=key, Body=_read_exactly(fd, size, 0, key),
                                            ChecksumSHA256=_b64(bytes.fromhex(digest)))  # fmt: skip
            _check_echo(reply, _b64(bytes.fromhex(digest)), key)
        else:
            self._multipart(key, size, fd, checksums)
        if self.size(digest) != size:
            raise OSError(f"{self.url}: {key} does not have the {size} bytes just uploaded")
        return present

    def _multipart(self, key: str, size: int, fd: int, checksums: Sequence[bytes] = ()) -> None:
        part = _part_size(size)
        spans = [(n + 1, off, min(part, size - off)) for n, off in enumerate(range(0, size, part))]
        known = len(checksums) == len(spans)
        upload = self._client.create_multipart_upload(Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = upload["UploadId"]

        def send(span: tuple[int, int, int]) -> dict[str, Any]:
            number, offset, length = span
            body = _read_exactly(fd, length, offset, key)
            # known: hashed as the cache copy was written (the bytes read back are those; the server checks)
            checksum = _b64(checksums[number - 1] if known else hashlib.sha256(body).digest())
            reply = self._client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                             Body=body, ChecksumSHA256=checksum)  # fmt: skip
            _check_echo(reply, checksum, f"{key} part {number}")
            return {"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": checksum}

        try:
            with ThreadPoolExecutor(self._concurrency, thread_name_prefix="regd-s3-put") as pool:
                parts = list(pool.map(send, spans))
            reply = self._client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                           MultipartUpload={"Parts": parts})  # fmt: skip
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            raise
        composite = hashlib.sha256(b"".join(base64.b64decode(p["ChecksumSHA256"]) for p in parts)).digest()
        echoed = reply.get("ChecksumSHA256")
        if echoed and echoed.split("-")[0] != _b64(composite):
            with contextlib.suppress(Exception):
                self._client.delete_object(Bucket=self.bucket, Key=key)
            raise OSError(f"{self.url}: {key} was stored with checksum {echoed}, not the {_b64(composite)} sent")

    def _download(self, digest: str, dest: Path) -> str:
        """Download the object to ``dest``; the SHA-256 of what was written."""
        sha = hashlib.sha256()
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(f"{self.url} holds no blob {digest}") from None
            raise
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with contextlib.closing(body):
                for chunk in body.iter_chunks(READ_CHUNK):
                    sha.update(chunk)
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        return sha.hexdigest()

    def _stream_hash(self, digest: str) -> str:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self.key(digest))["Body"]
        except Exception as exc:
            if _missing(exc):
                raise FileNotFoundError(digest) from None
            raise
        sha = hashlib.sha256()
        with contextlib.closing(body):
            for chunk in body.iter_chunks(READ_CHUNK):
                sha.update(chunk)
        return sha.hexdigest()


def _part_size(size: int) -> int:
    """Multipart part size for ``size`` bytes: whole MiB, at least ``PART_SIZE``, at most ``MAX_PARTS`` parts."""
    mib = 1 << 20
    return max(PART_SIZE, -(-size // MAX_PARTS // mib) * mib)


def _default_client(concurrency: int) -> Any:
    import boto3
    from botocore.config import Config

    # region, endpoint (AWS_ENDPOINT_URL) and credentials: boto3's standard resolution
    config = Config(
        max_pool_connections=concurrency * 2,
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=10,  # an unreachable endpoint fails a call in seconds, not minutes
    )
    return boto3.session.Session().client("s3", config=config)


def _read_exactly(fd: int, length: int, offset: int, key: str) -> bytes:
    body = os.pread(fd, length, offset)
    if len(body) != length:
        raise OSError(f"the local copy of {key} is shorter than the {offset + length} bytes it was stored with")
    return body


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _check_echo(reply: dict[str, Any], sent: str, what: str) -> None:
    """A server that reports the checksum it computed must report ours (one that ignores it reports none)."""
    echoed = reply.get("ChecksumSHA256")
    if echoed and echoed != sent:
        raise OSError(f"{what}: the server computed SHA-256 {echoed}, regd sent {sent}")


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound")
