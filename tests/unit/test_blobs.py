"""The blob store on real files: addressing, fingerprints, durability rules, trees, failures."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from regd.store import copying
from regd.store.blobs import LocalBlobStore, SourceChanged, manifest, tree_digest

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def xxh3(data: bytes) -> str:
    return "xxh3:" + xxhash.xxh3_128(data).hexdigest()


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if not p.is_dir())


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "data")


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, bytes]:
    """A file that takes the threaded, O_DIRECT path, with an unaligned tail."""
    data = os.urandom(copying.DIRECT_MIN + MIB + 123)
    path = tmp_path / "big.safetensors"
    path.write_bytes(data)
    return path, data


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- addressing -------------------------------------------------------------------------------


def test_same_bytes_are_stored_once(store: LocalBlobStore, tmp_path: Path) -> None:
    data = os.urandom(3 * MIB + 5)
    first = store.put_file(write(tmp_path / "a.bin", data))
    second = store.put_file(write(tmp_path / "b.bin", data))

    assert first.digest == second.digest == sha(data)
    assert first.size == len(data)
    assert (first.existed, second.existed) == (False, True)
    assert first.path == second.path == store.root / "objects" / "sha256" / first.digest[:2] / first.digest
    assert list(store.digests()) == [first.digest]
    assert files_under(store.tmp) == []


@pytest.mark.parametrize("direct_io", [True, False])
def test_blob_holds_the_exact_bytes_read_only(tmp_path: Path, big: tuple[Path, bytes], direct_io: bool) -> None:
    store = LocalBlobStore(tmp_path / "data", direct_io=direct_io)
    path, data = big
    result = store.put_file(path)

    assert result.digest == sha(data)
    assert result.path is not None and result.path.read_bytes() == data
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o444


@pytest.mark.parametrize("direct_io", [True, False])
@pytest.mark.parametrize("part", [MIB, 5 * MIB + 7])
def test_part_checksums_are_the_sha256_of_each_part(tmp_path: Path, big: tuple[Path, bytes], direct_io: bool,
                                                   part: int) -> None:  # fmt: skip
    # what a multipart S3 upload is checked against, hashed in the same pass as the copy
    store = LocalBlobStore(tmp_path / "data", direct_io=direct_io)
    path, data = big
    result = store.put_file(path, part_size=lambda size: part)

    expected = [hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part)]
    assert result.parts == expected
    assert result.path is not None and result.path.read_bytes() == data


def test_empty_and_small_files(store: LocalBlobStore, tmp_path: Path) -> None:
    for data in (b"", b"x", os.urandom(4096)):
        result = store.put_file(write(tmp_path / "f", data))
        assert result.digest == sha(data) and result.path is not None and result.path.read_bytes() == data


def test_put_bytes(store: LocalBlobStore) -> None:
    digest = store.put_bytes(b"uv.lock contents")
    assert digest == sha(b"uv.lock contents")
    assert store.put_bytes(b"uv.lock contents") == digest
    assert store.path(digest).read_bytes() == b"uv.lock contents"
    assert stat.S_IMODE(store.path(digest).stat().st_mode) == 0o444


def test_concurrent_puts_of_the_same_bytes(store: LocalBlobStore, tmp_path: Path) -> None:
    data = os.urandom(2 * MIB)
    paths = [write(tmp_path / f"{i}.bin", data) for i in range(4)]
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(store.put_file(p))) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert {r.digest for r in results} == {sha(data)}
    assert sum(not r.existed for r in results) >= 1
    assert list(store.digests()) == [sha(data)]
    assert files_under(store.tmp) == []


# -- fingerprints ------------------------------------------------------------------------------


def test_fingerprints_match_xxhash_of_each_slice_in_the_callers_order(
    store: LocalBlobStore, big: tuple[Path, bytes]
) -> None:
    path, data = big
    size = len(data)
    ranges = [
        (5 * MIB - 7, 3 * MIB),  # spans chunk boundaries
        (0, 10),
        (size - 1, 1),  # the last byte
        (100, 0),  # empty
        (1 * MIB, 4 * MIB),  # overlaps the first one
        (size, 0),  # empty, at EOF
    ]
    result = store.put_file(path, ranges=ranges)
    assert result.fingerprints == [xxh3(data[o : o + n]) for o, n in ranges]
    assert all(len(f) == len("xxh3:") + 32 for f in result.fingerprints)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=0, max_size=5000),
    picks=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), max_size=8),
    chunk=st.sampled_from([512, 4096, 1 << 20]),
)
def test_fingerprints_for_any_ranges_and_chunking(tmp_path_factory, data, picks, chunk) -> None:  # type: ignore[no-untyped-def]
    ranges = []
    for a, b in picks:
        offset = int(a * len(data))
        ranges.append((offset, int(b * (len(data) - offset))))
    base = tmp_path_factory.mktemp("fp")
    old = copying.CHUNK
    copying.CHUNK = chunk  # small chunks drive the threaded pipeline through many boundaries
    try:
        store = LocalBlobStore(base / "data")
        result = store.put_file(write(base / "f", data), ranges=ranges)
    finally:
        copying.CHUNK = old
    assert result.digest == sha(data)
    assert result.fingerprints == [xxh3(data[o : o + n]) for o, n in ranges]
    assert result.path is not None and result.path.read_bytes() == data


@pytest.mark.parametrize("bad", [[(0, 11)], [(10, 1)], [(-1, 2)], [(2, -1)], [(0, 1.5)]])
def test_ranges_outside_the_file_are_refused_before_reading(store, tmp_path, bad) -> None:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    with pytest.raises((ValueError, TypeError)):
        store.put_file(write(tmp_path / "f", b"0123456789"), ranges=bad, progress=calls.append)
    assert calls == []
    assert list(store.digests()) == [] and files_under(store.tmp) == []


# -- reference mode and progress ---------------------------------------------------------------


def test_reference_mode_hashes_and_writes_nothing(store: LocalBlobStore, big: tuple[Path, bytes]) -> None:
    path, data = big
    result = store.put_file(path, copy=False, ranges=[(3, 1000)])

    assert (result.digest, result.size, result.path, result.existed) == (sha(data), len(data), None, False)
    assert result.fingerprints == [xxh3(data[3:1003])]
    assert files_under(store.root) == []
    store.put_file(path)
    assert store.put_file(path, copy=False).existed


def test_progress_is_cumulative_sparse_and_ends_at_the_size(store: LocalBlobStore, big: tuple[Path, bytes]) -> None:
    path, data = big
    seen: list[int] = []
    store.put_file(path, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(data)
    assert len(seen) <= len(data) // copying.PROGRESS_EVERY + 1


# -- the source changing, vanishing or not being a file ----------------------------------------


@pytest.mark.parametrize("size", [4096, 3 * copying.PROGRESS_EVERY])
@pytest.mark.parametrize("copy", [True, False])
def test_source_changed_while_read(store: LocalBlobStore, tmp_path: Path, size: int, copy: bool) -> None:
    # The first progress call comes mid-read for the large file, at the end for the small one.
    path = write(tmp_path / "model.pt", os.urandom(size))

    def append_once(done: int) -> None:
        if not hasattr(append_once, "done"):
            append_once.done = True  # type: ignore[attr-defined]
            with open(path, "ab") as f:
                f.write(b"more weights")

    with pytest.raises(SourceChanged):
        store.put_file(path, copy=copy, progress=append_once)
    assert list(store.digests()) == [] and files_under(store.tmp) == []
    result = store.put_file(path)  # the caller hashes again
    assert result.digest == sha(path.read_bytes())


def test_a_file_that_keeps_growing_does_not_keep_us_reading(store: LocalBlobStore, tmp_path: Path) -> None:
    path = write(tmp_path / "train.log.bin", os.urandom(2 * copying.PROGRESS_EVERY))
    grown: list[int] = []

    def grow(_: int) -> None:  # faster than we read: 2 bytes appended per byte read
        with open(path, "ab") as f:
            f.write(bytes(2 * copying.PROGRESS_EVERY))
        grown.append(1)

    with pytest.raises(SourceChanged):
        store.put_file(path, progress=grow)
    assert len(grown) <= 3
    assert files_under(store.tmp) == []


def test_source_replaced_by_rename_while_read(store: LocalBlobStore, tmp_path: Path) -> None:
    path = write(tmp_path / "model.pt", os.urandom(3 * MIB))
    newer = write(tmp_path / "model.pt.tmp", os.urandom(3 * MIB))
    with pytest.raises(SourceChanged):
        store.put_file(path, progress=lambda _: os.replace(newer, path))
    assert files_under(store.tmp) == []


def test_source_vanished_while_read(store: LocalBlobStore, tmp_path: Path) -> None:
    path = write(tmp_path / "model.pt", os.urandom(3 * MIB))
    with pytest.raises(FileNotFoundError) as caught:
        store.put_file(path, progress=lambda _: path.unlink(missing_ok=True))
    assert caught.value.filename == str(path)
    assert list(store.digests()) == [] and files_under(store.tmp) == []


def test_source_missing(store: LocalBlobStore, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "nope.onnx")


def test_progress_callback_error_propagates_and_cleans_up(store: LocalBlobStore, big: tuple[Path, bytes]) -> None:
    def boom(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.put_file(big[0], progress=boom)
    assert files_under(store.tmp) == []


def test_fifo_is_refused_without_hanging(store: LocalBlobStore, tmp_path: Path) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            store.put_file(fifo)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the open so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("put_file blocked on a FIFO")
    assert len(outcome) == 1 and isinstance(outcome[0], ValueError)
    assert "FIFO" in str(outcome[0])
    assert files_under(store.tmp) == []


def test_directory_is_refused(store: LocalBlobStore, tmp_path: Path) -> None:
    (tmp_path / "hf-model").mkdir()
    with pytest.raises(IsADirectoryError, match="build_tree"):
        store.put_file(tmp_path / "hf-model")


def test_device_is_refused(store: LocalBlobStore) -> None:
    with pytest.raises(ValueError, match="character device"):
        store.put_file(Path("/dev/null"))


# -- verify, delete, digests -------------------------------------------------------------------


def test_verify_ok_missing_corrupt(store: LocalBlobStore, tmp_path: Path) -> None:
    result = store.put_file(write(tmp_path / "m.bin", os.urandom(2 * MIB)))
    assert store.verify(result.digest) == "ok"
    assert store.verify(sha(b"never stored")) == "missing"

    assert result.path is not None
    os.chmod(result.path, 0o644)
    with open(result.path, "r+b") as f:
        f.seek(MIB)
        byte = f.read(1)
        f.seek(MIB)
        f.write(bytes([byte[0] ^ 1]))
    assert store.verify(result.digest) == "corrupt"


def test_delete_and_digests(store: LocalBlobStore) -> None:
    digests = {store.put_bytes(bytes([i]) * 10) for i in range(5)}
    assert set(store.digests()) == digests
    victim = sorted(digests)[0]
    assert store.delete(victim) is True
    assert store.delete(victim) is False
    assert not store.exists(victim)
    assert set(store.digests()) == digests - {victim}


def test_malformed_digests_are_refused(store: LocalBlobStore) -> None:
    for bad in ("", "ABC", "../" + "0" * 61, "g" * 64, "A" * 64):
        with pytest.raises(ValueError):
            store.path(bad)


def test_a_wrong_size_file_under_a_digest_is_replaced(store: LocalBlobStore, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = store.put_bytes(data)
    path = store.path(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.truncate(10)  # the store was tampered with: this is not the blob
    result = store.put_file(write(tmp_path / "f", data))
    assert result.existed is False and path.read_bytes() == data
    assert store.verify(digest) == "ok"


# -- trees -------------------------------------------------------------------------------------


def test_tree_digest_definition() -> None:
    a, b = sha(b"a"), sha(b"b")
    files = [("weights/model-00001.safetensors", b), ("config.json", a), ("é/tokenizer.json", a)]
    lines = "".join(sorted(f"{d}  {p}\n" for p, d in files))
    assert manifest(files) == lines.encode("utf-8")
    assert tree_digest(files) == hashlib.sha256(lines.encode("utf-8")).hexdigest()
    assert tree_digest(reversed(files)) == tree_digest(files)
    assert tree_digest([]) == sha(b"")


def test_build_tree_of_hard_links(store: LocalBlobStore, tmp_path: Path) -> None:
    config = store.put_bytes(b'{"model_type": "bert"}')
    weights = store.put_file(write(tmp_path / "w", os.urandom(2 * MIB))).digest
    files = [("config.json", config), ("weights/shard-1.safetensors", weights), ("weights/a/b/c.bin", config)]

    dirdigest, tree = store.build_tree(files)

    assert dirdigest == tree_digest(files)
    assert tree == store.trees / dirdigest == store.tree_path(dirdigest)
    for relpath, digest in files:
        assert os.stat(tree / relpath).st_ino == os.stat(store.path(digest)).st_ino
        assert stat.S_IMODE(os.stat(tree / relpath).st_mode) == 0o444
    for d in (tree, tree / "weights", tree / "weights/a", tree / "weights/a/b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o555
    assert sorted(str(p.relative_to(tree)) for p in files_under(tree)) == sorted(p for p, _ in files)
    # The manifest is a blob too, named by the directory digest.
    assert store.path(dirdigest).read_bytes() == manifest(files)
    assert store.verify(dirdigest) == "ok"
    # Idempotent.
    assert store.build_tree(list(reversed(files))) == (dirdigest, tree)
    assert [p.name for p in store.trees.iterdir()] == [dirdigest]


def test_build_tree_needs_the_blobs(store: LocalBlobStore) -> None:
    missing = sha(b"not stored")
    with pytest.raises(FileNotFoundError, match="not stored"):
        store.build_tree([("a/b.bin", missing)])
    assert list(store.trees.iterdir()) == []


@pytest.mark.parametrize(
    "relpath",
    ["/etc/passwd", "../x", "a/../../x", "a/..", "..", ".", "./a", "a/./b", "a//b", "a/", "", "a\0b",
     "a\nb", "bad\udcff"],
)
def test_hostile_relpaths_are_refused(store: LocalBlobStore, relpath: str) -> None:
    digest = store.put_bytes(b"x")
    with pytest.raises(ValueError):
        store.build_tree([("ok.json", digest), (relpath, digest)])
    with pytest.raises(ValueError):
        tree_digest([(relpath, digest)])
    assert list(store.trees.iterdir()) == []


def test_ambiguous_file_sets_are_refused(store: LocalBlobStore) -> None:
    d = store.put_bytes(b"x")
    for files in ([("a", d), ("a", d)], [("a", d), ("a/b", d)], [("a", "not-a-digest")]):
        with pytest.raises(ValueError):
            store.build_tree(files)


def test_delete_tree(store: LocalBlobStore) -> None:
    d = store.put_bytes(b"x")
    dirdigest, tree = store.build_tree([("a/b/c", d)])
    assert store.delete_tree(dirdigest) is True
    assert not tree.exists() and list(store.trees.iterdir()) == []
    assert store.delete_tree(dirdigest) is False
    assert store.exists(d)  # the blobs stay


# -- temps, crashes and a full disk ------------------------------------------------------------


def test_cleanup_temp(store: LocalBlobStore) -> None:
    kept = store.put_bytes(b"keep me")
    (store.tmp / "0123.tmp").write_bytes(b"half a model")
    (store.tmp / "4567.tmp").write_bytes(b"")
    stale_tree = store.trees / ".tmp-deadbeef"
    (stale_tree / "sub").mkdir(parents=True)
    (stale_tree / "sub" / "f").write_bytes(b"")
    os.chmod(stale_tree / "sub", 0o555)
    os.chmod(stale_tree, 0o555)

    assert store.cleanup_temp() == 3
    assert files_under(store.tmp) == [] and list(store.trees.iterdir()) == []
    assert store.verify(kept) == "ok"
    assert store.cleanup_temp() == 0


CRASHER = """
import sys, time
from pathlib import Path
from regd.store.blobs import LocalBlobStore

def stall(done):
    print("ready", flush=True)
    time.sleep(60)

LocalBlobStore(Path(sys.argv[1])).put_file(Path(sys.argv[2]), progress=stall)
"""


def test_a_crash_mid_write_leaves_no_blob(tmp_path: Path) -> None:
    root = tmp_path / "data"
    src = write(tmp_path / "model.bin", os.urandom(3 * copying.PROGRESS_EVERY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(root), str(src)], stdout=subprocess.PIPE, env=env, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()

    store = LocalBlobStore(root)
    assert list(store.digests()) == []
    assert len(files_under(store.tmp)) == 1
    assert store.cleanup_temp() == 1
    assert store.put_file(src).digest == sha(src.read_bytes())


@pytest.fixture
def tiny_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("simulating ENOSPC needs root to mount a 1 MiB tmpfs")
    mnt = tmp_path / f"tiny-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.parametrize("size", [2 * MIB, copying.DIRECT_MIN + 1], ids=["buffered", "direct"])
def test_enospc_removes_the_temp_and_the_store_keeps_working(tiny_fs: Path, tmp_path: Path, size: int) -> None:
    store = LocalBlobStore(tiny_fs / "data")
    src = write(tmp_path / "huge.bin", os.urandom(size))

    with pytest.raises(OSError) as caught:
        store.put_file(src)
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename is not None and Path(caught.value.filename).parent == store.tmp
    assert str(src) in str(caught.value)
    assert files_under(store.tmp) == [] and list(store.digests()) == []

    small = store.put_file(write(tmp_path / "small.bin", b"still works"))
    assert small.path is not None and small.path.read_bytes() == b"still works"
    shutil.rmtree(tiny_fs / "data", ignore_errors=True)
