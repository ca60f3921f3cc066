"""The S3 blob store against an S3-compatible server on loopback (moto), and daemons sharing a bucket."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from regd.store.blobs import LocalBlobStore
from regd.store.catalog import StoredArtifact
from regd.store.trees import manifest
from tests.modelfiles import write_hf_dir, write_safetensors


@pytest.fixture
def store(s3_server, bucket, tmp_path):  # type: ignore[no-untyped-def]
    from regd.store.s3blobs import S3BlobStore

    return S3BlobStore(f"s3://{bucket}/team/models", tmp_path / "cache")


def _object(s3_server, bucket: str, key: str) -> bytes:  # type: ignore[no-untyped-def]
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _file(path: Path, size: int, seed: int = 0) -> Path:
    path.write_bytes(np.random.default_rng(seed).bytes(size))
    return path


def test_put_file_caches_then_uploads_once_under_the_digest(store, s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = _file(tmp_path / "m.bin", 100_000)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    got = store.put_file(src, ranges=[(0, 10), (500, 1000)])
    assert (got.digest, got.size, got.existed) == (digest, 100_000, False)
    key = f"team/models/sha256/{digest[:2]}/{digest}"
    assert store.key(digest) == key
    assert _object(s3_server, bucket, key) == src.read_bytes()
    assert got.path == store.cache.path(digest) and got.path.read_bytes() == src.read_bytes()
    # the same fingerprints as the local store computes
    local = LocalBlobStore(tmp_path / "local").put_file(src, ranges=[(0, 10), (500, 1000)])
    assert got.fingerprints == local.fingerprints
    assert store.put_file(src).existed
    assert list(store.digests()) == [digest] and store.exists(digest)


def test_a_large_file_goes_up_in_checked_parts(store, s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store import s3blobs

    src = _file(tmp_path / "big.bin", s3blobs.MULTIPART_MIN + 5 * (1 << 20) + 123)
    got = store.put_file(src)
    body = _object(s3_server, bucket, store.key(got.digest))
    assert len(body) == got.size and hashlib.sha256(body).hexdigest() == got.digest
    assert not s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_reference_mode_hashes_and_stores_nothing(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = _file(tmp_path / "m.bin", 5000)
    got = store.put_file(src, copy=False)
    assert got.path is None and not got.existed and list(store.digests()) == []


def test_path_downloads_into_the_cache_checked_once(store, s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store.s3blobs import S3BlobStore

    digest = store.put_bytes(b"the bytes of a model")
    elsewhere = S3BlobStore(store.url, tmp_path / "other-cache")  # another host: nothing cached
    assert not elsewhere.cache.path(digest).exists()
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(elsewhere.path(digest))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {p.read_bytes() for p in paths} == {b"the bytes of a model"}
    assert os.stat(paths[0]).st_mode & 0o777 == 0o444
    assert list(elsewhere.cache.tmp.iterdir()) == []
    unknown = "0" * 64
    assert not elsewhere.path(unknown).exists()  # not in the bucket: the would-be path, as locally


def test_a_corrupt_object_is_never_cached_and_verify_says_so(store, s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store.s3blobs import S3BlobStore

    digest = store.put_bytes(b"good bytes")
    assert store.verify(digest) == "ok"
    s3_server.client().put_object(Bucket=bucket, Key=store.key(digest), Body=b"evil bytes")
    assert store.verify(digest) == "corrupt"
    elsewhere = S3BlobStore(store.url, tmp_path / "other-cache")
    with pytest.raises(OSError, match="corrupt"):
        elsewhere.fetch(digest)
    assert not elsewhere.cache.path(digest).exists()
    assert store.delete(digest)
    assert store.verify(digest) == "missing" and not store.exists(digest)
    assert not store.delete(digest)


def test_a_repair_replaces_a_corrupt_object_of_the_same_size(store, s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store.integrity import repair_artifact, verify_artifact

    src = _file(tmp_path / "m.bin", 100_000)
    got = store.put_file(src)
    flipped = bytearray(src.read_bytes())
    flipped[50_000] ^= 0xFF
    s3_server.client().put_object(Bucket=bucket, Key=store.key(got.digest), Body=bytes(flipped))
    art = StoredArtifact(version_id=1, model="m", version="1.0.0", digest=got.digest, kind="file", store_mode="copy",
                         stored_path=str(got.path), source_path=str(src), files=[], pruned=False)  # fmt: skip
    item = verify_artifact(store, art)
    assert item.status == "corrupt"
    # same size: a plain put would take the object for the blob and leave it; a repair uploads again
    assert store.put_file(src).existed
    assert repair_artifact(store, art, item).status == "repaired"
    assert _object(s3_server, bucket, store.key(got.digest)) == src.read_bytes()
    assert verify_artifact(store, art).status == "ok"


def test_a_corrupt_cached_copy_is_dropped_by_verify(store) -> None:  # type: ignore[no-untyped-def]
    digest = store.put_bytes(b"model")
    cached = store.cache.path(digest)
    os.chmod(cached, 0o644)
    cached.write_bytes(b"MODEL")
    assert store.verify(digest) == "ok"  # the bucket's copy is fine ...
    assert not cached.exists()  # ... and the bad cached one is gone
    assert store.path(digest).read_bytes() == b"model"


def test_directory_trees_are_built_in_the_cache_from_the_bucket(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store.s3blobs import S3BlobStore

    files = [("config.json", store.put_bytes(b"{}")), ("weights/a.bin", store.put_bytes(b"abc"))]
    dirdigest, tree = store.build_tree(files)
    assert (tree / "weights" / "a.bin").read_bytes() == b"abc"
    elsewhere = S3BlobStore(store.url, tmp_path / "other-cache")
    assert elsewhere.exists(dirdigest)  # the manifest went up too
    assert elsewhere.path(dirdigest).read_bytes() == manifest(files)
    path = elsewhere.materialise("directory", dirdigest, files)
    assert (path / "config.json").read_bytes() == b"{}" and list(elsewhere.tree_digests()) == [dirdigest]


def test_stale_multipart_uploads_are_aborted_at_start(store, s3_server, bucket, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from regd.store import s3blobs

    s3_server.client().create_multipart_upload(Bucket=bucket, Key=store.key("ab" * 32))
    # moto dates every upload 2010-11-10: move the cut-off around it instead of waiting a day
    monkeypatch.setattr(s3blobs, "STALE_UPLOAD", timedelta(days=365 * 100))
    assert store.cleanup_temp() == 0  # a recent upload may be another daemon's, in progress
    monkeypatch.setattr(s3blobs, "STALE_UPLOAD", timedelta(days=1))
    assert store.cleanup_temp() == 1
    assert not s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def _weights(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal((8, 8)).astype(np.float32)})


def test_daemons_on_one_catalog_and_bucket_serve_each_others_bytes(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = f'catalog = "{pg_url}"\nobjects = "s3://{bucket}/reg"\n'
    a, b = daemon_factory(config), daemon_factory(config)
    ca, cb = a.client(), b.client()
    src = _weights(tmp_path / "m.safetensors", 1)
    v = ca.register(src, name="fraud")
    hf = ca.register(write_hf_dir(tmp_path / "hf"), name="hf")
    # B has none of it cached; `regd path` (versions.get with fetch) brings it over, checked
    got = cb.call("versions.get", {"name": "fraud", "version": "latest", "fetch": True})
    path = Path(got["artifact"]["stored_path"])
    assert path.is_relative_to(b.data_dir / "cache") and path.read_bytes() == src.read_bytes()
    assert v.artifact.stored_path.startswith(str(a.data_dir / "cache"))
    tree = Path(cb.call("versions.get", {"name": "hf", "version": "latest", "fetch": True})["artifact"]["stored_path"])
    assert tree.is_relative_to(b.data_dir / "cache") and (tree / "config.json").is_file()
    assert {f.path for f in hf.artifact.files} == {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()}
    assert [i["status"] for i in cb.call("versions.verify", {})["items"]] == ["ok", "ok"]
    proc = __import__("subprocess").run(["python", "-m", "regd", "path", "fraud"], env=b.env(), capture_output=True,
                                        text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == str(path)


def test_gc_plans_from_sizes_without_downloading(store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from regd.store import integrity
    from regd.store.s3blobs import S3BlobStore

    keep, orphan = store.put_bytes(b"kept"), store.put_bytes(b"orphan bytes")
    elsewhere = S3BlobStore(store.url, tmp_path / "empty-cache")  # a host that never loaded either
    sweep = integrity.plan_sweep(elsewhere, {keep}, set(), {})
    assert [(i.digest, i.size) for i in sweep.blobs] == [(orphan, len(b"orphan bytes"))]
    assert not any(p.is_file() for p in (tmp_path / "empty-cache").rglob("*")), "gc's plan fetched blobs to stat them"
    assert (elsewhere.size(keep), elsewhere.size("00" * 32)) == (4, None)
    assert LocalBlobStore(tmp_path / "local").size("00" * 32) is None


def test_a_deploy_pointer_on_another_host_points_into_its_own_cache(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import time

    config = f'catalog = "{pg_url}"\nobjects = "s3://{bucket}/reg"\n'
    a = daemon_factory(config)
    b = daemon_factory(config + f'deploy_dir = "{tmp_path / "deploy-b"}"\n')
    src = _weights(tmp_path / "m.safetensors", 2)
    a.client().register(src, name="fraud")
    a.client().register(write_hf_dir(tmp_path / "hf"), name="hf")
    # B promotes what A registered: B's pointers must lead to bytes on B, not to A's cache
    cb = b.client()
    cb.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "production", "reason": "go"})
    cb.call("aliases.set", {"name": "hf", "alias": "champion", "version": "1.0.0"})
    pointer, alias = tmp_path / "deploy-b" / "fraud" / "production", tmp_path / "deploy-b" / "hf" / "@champion"
    deadline = time.monotonic() + 30
    while not (pointer.is_symlink() and alias.is_symlink()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pointer.resolve().is_relative_to((b.data_dir / "cache").resolve())
    assert pointer.read_bytes() == src.read_bytes()
    assert alias.resolve().is_relative_to((b.data_dir / "cache").resolve()) and (alias / "config.json").is_file()
    # B's lineage shows B's pointers as deployments although they lead into B's cache
    lineage = cb.call("lineage.get", {"name": "fraud", "version": "1.0.0"})
    assert [n["data"]["name"] for n in lineage["nodes"] if n["id"].startswith("pointer:")] == ["production"]
    # verify on B reports B's paths, and a directory whose tree B has not built is still ok
    items = {i["model"]: i for i in cb.call("versions.verify", {})["items"]}
    assert {i["status"] for i in items.values()} == {"ok"}
    assert Path(items["fraud"]["path"]).is_relative_to(b.data_dir / "cache")


def test_a_serving_hosts_pointers_follow_promotions_made_on_another_host(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """B serves (it has a deploy_dir); A trains and promotes. B's pointers must move when A's change
    commits, to bytes on B, and B must not run A's hooks a second time."""
    import time

    config = f'catalog = "{pg_url}"\nobjects = "s3://{bucket}/reg"\n'
    hooks_ran = tmp_path / "hooks-ran-on-b"
    a = daemon_factory(config, sub="a")
    b = daemon_factory(config + f'deploy_dir = "{tmp_path / "deploy-b"}"\n'
                       f'[policy."fraud".production]\non_change = "touch {hooks_ran}"\n', sub="b")  # fmt: skip
    ca = a.client()
    first, second = _weights(tmp_path / "one.safetensors", 3), _weights(tmp_path / "two.safetensors", 4)
    ca.register(first, name="fraud")
    ca.register(second, name="fraud")
    pointer, alias = tmp_path / "deploy-b" / "fraud" / "production", tmp_path / "deploy-b" / "fraud" / "@champion"

    def until(check) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + 30
        while not check() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert check()

    ca.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "production", "reason": "go"})
    until(lambda: pointer.is_symlink() and pointer.read_bytes() == first.read_bytes())
    assert pointer.resolve().is_relative_to((b.data_dir / "cache").resolve())
    ca.call("versions.promote", {"name": "fraud", "version": "1.1.0", "stage": "production", "reason": "better"})
    until(lambda: pointer.read_bytes() == second.read_bytes())
    ca.set_alias("fraud", "champion", "1.0.0")
    until(lambda: alias.is_symlink() and alias.read_bytes() == first.read_bytes())
    ca.call("models.rollback", {"name": "fraud", "reason": "regressed"})
    until(lambda: pointer.read_bytes() == first.read_bytes())
    assert not hooks_ran.exists(), "B ran the hook of a change A made (A's daemon runs it)"


def test_a_failed_upload_leaves_no_temp_and_a_retry_uploads(s3_server, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The cache copy is made durable beside the upload: when the upload fails, the put fails, no
    temp is left behind, and putting the file again (its copy already cached) uploads it."""
    from regd.store.s3blobs import S3BlobStore

    src = _file(tmp_path / "m.bin", 20 << 20, seed=3)  # multipart
    missing = S3BlobStore(f"s3://no-such-bucket-{bucket}/x", tmp_path / "cache", client=s3_server.client())
    with pytest.raises(Exception, match="NoSuchBucket|does not exist"):
        missing.put_file(src)
    assert list((tmp_path / "cache" / "objects" / "tmp").iterdir()) == []
    store = S3BlobStore(f"s3://{bucket}/x", tmp_path / "cache", client=s3_server.client())
    got = store.put_file(src)
    assert _object(s3_server, bucket, store.key(got.digest)) == src.read_bytes()
    assert got.path is not None and got.path.read_bytes() == src.read_bytes()
