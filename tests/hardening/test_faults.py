"""Faults from outside: a full disk, a read-only store, blobs deleted or corrupted behind the daemon's back.

The full-disk and read-only cases need real filesystems: as root they mount a small tmpfs as the data
dir, or bind-mount ``objects/`` read-only; otherwise the disk tests skip (saying why) and the
read-only test falls back to ``chmod 0555``.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from regd.errors import NotFound, RegdError
from tests.hardening.crashlib import CONTRACT_CODES
from tests.modelfiles import write_hf_dir, write_safetensors
from tests.waiting import idle, versions_of, wait_for

MiB = 1 << 20


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)  # busy: detach it anyway


@functools.cache
def _can_mount() -> str | None:
    """Why mounting is impossible here, or None."""
    if os.geteuid() != 0:
        return "a full disk is simulated with a small tmpfs, which needs root to mount"
    probe = Path("/tmp") / f"regd-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        return f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {getattr(exc, 'stderr', exc)}"
    else:
        _umount(probe)
    finally:
        probe.rmdir()
    return None


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int) -> Path:
    """Write a filler file until ``leave`` bytes are free (or the disk is full, for ``leave=0``)."""
    filler = path / "filler"
    with filler.open("wb") as f:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while free_bytes(path) - len(block) >= leave:
                f.write(block)
                f.flush()
            if leave == 0:
                while True:
                    f.write(block)
                    f.flush()
    return filler


def model_file(path: Path, nbytes: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal(nbytes // 4, dtype=np.float32)})


def refusal(fn) -> RegdError:  # type: ignore[no-untyped-def]
    with pytest.raises(RegdError) as caught:
        fn()
    return caught.value


def nothing_half_written(d, client, name: str) -> None:  # type: ignore[no-untyped-def]
    assert list((d.data_dir / "objects" / "tmp").iterdir()) == [], "a temp was left in objects/tmp"
    with pytest.raises(NotFound):
        client.call("models.get", {"name": name})
    assert not client.call("audit.list", {"name": name})["items"]
    assert client.status()["ingest"]["pending"] == 0


def still_serving(client, known: str) -> None:  # type: ignore[no-untyped-def]
    assert client.status()["pid"] > 0
    assert client.version(known).version == "1.0.0"
    assert [m.name for m in client.models()] and client.search(f"name = '{known}'")
    assert client.call("audit.verify")["ok"]


@pytest.fixture
def small_disk(daemon_factory, tmp_path):  # type: ignore[no-untyped-def]
    """A daemon whose data dir is a 16 MiB tmpfs, watching ``tmp_path/runs``; stopped before the unmount."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    root = tmp_path / "runs"
    root.mkdir()
    d = daemon_factory(f'[[watch]]\npath = "{root}"\nsettle_ms = 100\n', start=False)
    with tmpfs(d.data_dir, "16m"):
        d.start()
        try:
            yield d, d.client(), root
        finally:
            d.stop()


@pytest.mark.parametrize("space_returns", ["a file is deleted", "the filesystem grows"])
def test_a_blob_larger_than_the_space_left_is_refused_cleanly_and_ingest_resumes_when_space_returns(
    small_disk, tmp_path, space_returns
):
    d, client, _ = small_disk
    client.register(model_file(tmp_path / "small.safetensors", MiB, 1), name="small")
    filler = fill(d.data_dir, leave=3 * MiB)
    big = model_file(tmp_path / "big.safetensors", 6 * MiB, 2)

    err = refusal(lambda: client.register(big, name="big"))
    assert err.code in CONTRACT_CODES, f"{err.code}: {err.message}"  # an answer, not a dropped connection
    nothing_half_written(d, client, "big")
    still_serving(client, "small")
    client.tag("small", "1.0.0", set={"after": "enospc"})  # the catalog still takes writes

    if space_returns == "a file is deleted":
        filler.unlink()
    else:
        _mount("-o", "remount,size=64m", str(d.data_dir))
    v = client.register(big, name="big")
    assert v.version == "1.0.0" and v.artifact.size == big.stat().st_size
    assert client.call("versions.verify")["ok"]
    assert client.version("small").tags == {"after": "enospc"}


def test_a_full_disk_under_the_catalog_refuses_changes_and_keeps_serving_reads(small_disk, tmp_path):
    d, client, _ = small_disk
    client.register(model_file(tmp_path / "small.safetensors", MiB, 1), name="small")
    filler = fill(d.data_dir, leave=0)
    refusal(lambda: client.tag("small", "1.0.0", set={"lost": "yes"}))
    refusal(lambda: client.set_alias("small", "champion", "1.0.0"))
    refusal(lambda: client.register(model_file(tmp_path / "more.safetensors", MiB, 3), name="more"))
    assert client.version("small").tags == {}
    still_serving(client, "small")

    filler.unlink()
    client.tag("small", "1.0.0", set={"kept": "yes"})
    assert client.version("small").tags == {"kept": "yes"}
    assert client.call("versions.verify")["ok"] and client.call("audit.verify")["ok"]
    d.stop()
    db = sqlite3.connect(f"file:{d.data_dir / 'registry.db'}?mode=ro", uri=True)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()


# a storage OSError (ENOSPC, EROFS) while storing a blob or committing was answered -32603 'internal error:
# OSError/OperationalError', naming neither the cause nor the data dir
@pytest.mark.parametrize("where", ["blob", "catalog"])
def test_a_full_disk_is_refused_with_a_contract_code_that_names_the_cause(small_disk, tmp_path, where):
    d, client, _ = small_disk
    client.register(model_file(tmp_path / "small.safetensors", MiB, 1), name="small")
    if where == "blob":
        fill(d.data_dir, leave=3 * MiB)
        err = refusal(lambda: client.register(model_file(tmp_path / "big.safetensors", 6 * MiB, 2), name="big"))
    else:
        fill(d.data_dir, leave=0)
        err = refusal(lambda: client.tag("small", "1.0.0", set={"k": "v"}))
    assert err.code in CONTRACT_CODES, f"{err.code}: {err.message}"
    assert "space" in err.message.lower(), err.message
    assert str(d.data_dir) in err.message, err.message
    assert err.data["storage"] == "no_space", err.data
    if where == "blob":
        nothing_half_written(d, client, "big")
    else:
        assert client.version("small").tags == {}


def test_a_file_dropped_while_the_disk_is_full_registers_once_space_returns(small_disk):
    d, client, root = small_disk
    filler = fill(d.data_dir, leave=2 * MiB)
    model_file(root / "late.safetensors", 4 * MiB, 4)
    wait_for(lambda: client.status()["ingest"]["failed"] >= 1, what="the drop to fail for lack of space")
    filler.unlink()
    wait_for(lambda: versions_of(client, "late"), timeout=15, what="the dropped file to register after space returned")


# ----------------------------------------------------------------------------- a read-only store


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable: a read-only bind mount as root (root ignores modes), else chmod 0555."""
    if os.geteuid() == 0 and _can_mount() is None:
        _mount("--bind", str(path), str(path))
        try:
            _mount("-o", "remount,ro,bind", str(path))
            yield
        finally:
            _umount(path)
        return
    dirs = [path, *[p for p in path.rglob("*") if p.is_dir()]]
    modes = {p: p.stat().st_mode for p in dirs}
    for p in dirs:
        p.chmod(0o555)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_a_read_only_object_store_refuses_registrations_and_still_serves_reads(daemon, tmp_path):
    client = daemon.client()
    client.register(model_file(tmp_path / "small.safetensors", MiB, 1), name="small")
    new = model_file(tmp_path / "new.safetensors", MiB, 2)
    with read_only(daemon.data_dir / "objects"):
        err = refusal(lambda: client.register(new, name="new"))
        assert err.code in CONTRACT_CODES, f"{err.code}: {err.message}"
        with pytest.raises(NotFound):
            client.call("models.get", {"name": "new"})
        still_serving(client, "small")
        assert client.call("versions.verify")["ok"]  # reading the store needs no write
        client.tag("small", "1.0.0", set={"ro": "objects"})  # the catalog is elsewhere and writable
    assert client.register(new, name="new").version == "1.0.0"
    assert client.call("versions.verify")["ok"]
    assert list((daemon.data_dir / "objects" / "tmp").iterdir()) == []


# registering into a read-only object store was answered -32603 'internal error: OSError' without saying
# the store is read-only
def test_a_read_only_object_store_is_named_in_the_refusal(daemon, tmp_path):
    client = daemon.client()
    new = model_file(tmp_path / "new.safetensors", MiB, 2)
    with read_only(daemon.data_dir / "objects"):
        err = refusal(lambda: client.register(new, name="new"))
    assert err.code in CONTRACT_CODES, f"{err.code}: {err.message}"
    assert "read-only" in err.message.lower() or "permission" in err.message.lower(), err.message
    assert str(daemon.data_dir / "objects") in err.message, err.message


def test_a_daemon_on_a_read_only_data_dir_refuses_to_start_and_says_why(daemon_factory, tmp_path):
    if _can_mount():
        pytest.skip(f"needs a read-only bind mount (modes alone leave existing files writable): {_can_mount()}")
    d = daemon_factory()
    d.client().register(model_file(tmp_path / "m.safetensors", MiB, 1), name="m")
    d.stop()
    with read_only(d.data_dir):
        with pytest.raises(RuntimeError) as caught:
            d.start(wait=15)
        assert d.proc is not None and d.proc.returncode == 1
        d.proc = None
    text = str(caught.value)
    assert "cannot start" in text and ("Read-only" in text or "Permission denied" in text), text
    d.start()
    assert d.client().version("m").version == "1.0.0"


# ----------------------------------------------------------------------------- bytes changed behind our back


def _writable(path: Path) -> None:
    path.chmod(0o644)  # blobs are 0444; root ignores that, others need it


def corrupt(path: Path) -> None:
    _writable(path)
    with path.open("r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def regd_cli(d, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run(["regd", "--json", *args], env=d.env(), capture_output=True, text=True, timeout=120, check=False)


def statuses(result: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {f"{i['model']}:{i['version']}": i["status"] for i in result["items"]}


def test_a_deleted_and_a_corrupted_blob_are_reported_and_repaired_from_their_originals(daemon, tmp_path):
    client = daemon.client()
    gone = client.register(model_file(tmp_path / "gone.safetensors", MiB, 1), name="gone")
    bad = client.register(model_file(tmp_path / "bad.safetensors", MiB, 2), name="bad")
    client.register(model_file(tmp_path / "fine.safetensors", MiB, 3), name="fine")
    os.unlink(gone.artifact.stored_path)
    corrupt(Path(bad.artifact.stored_path))

    report = client.call("versions.verify")
    assert not report["ok"]
    assert statuses(report) == {"gone:1.0.0": "missing", "bad:1.0.0": "corrupt", "fine:1.0.0": "ok"}

    out = regd_cli(daemon, "verify", "--repair")
    assert out.returncode == 0, out.stdout + out.stderr
    repaired = json.loads(out.stdout)
    assert statuses(repaired) == {"gone:1.0.0": "repaired", "bad:1.0.0": "repaired", "fine:1.0.0": "ok"}
    assert client.call("versions.verify") | {"items": []} == {"ok": True, "checked": 3, "items": []}
    assert Path(bad.artifact.stored_path).read_bytes() == (tmp_path / "bad.safetensors").read_bytes()
    actions = [a["model"] for a in client.call("audit.list", {"action": "blob.repaired"})["items"]]
    assert sorted(actions) == ["bad", "gone"]
    assert client.call("audit.verify")["ok"]


def test_a_blob_whose_original_changed_is_not_repaired_and_says_why(daemon, tmp_path):
    client = daemon.client()
    src = model_file(tmp_path / "m.safetensors", MiB, 1)
    v = client.register(src, name="m")
    os.unlink(v.artifact.stored_path)
    model_file(src, MiB, 99)  # the training run overwrote its output since

    out = regd_cli(daemon, "verify", "--repair", "m")
    assert out.returncode == 1, out.stdout + out.stderr
    (item,) = json.loads(out.stdout)["items"]
    assert item["status"] == "missing"
    assert "changed since it was registered" in item["detail"], item
    src.unlink()  # and once the original is gone altogether
    (item,) = client.call("versions.verify", {"name": "m", "repair": True})["items"]
    assert item["status"] == "missing" and "cannot repair" in item["detail"] and str(src) in item["detail"]
    assert not client.call("audit.list", {"action": "blob.repaired"})["items"]


# integrity.repair_artifact deleted a corrupt blob before it knew the original still matched; when it did
# not, the damaged copy (perhaps the only one, nearly all good bytes) was gone, verify said 'missing' from
# then on, and the changed original was stored as an orphan blob
def test_a_failed_repair_leaves_the_corrupt_copy_and_stores_nothing(daemon, tmp_path):
    client = daemon.client()
    src = model_file(tmp_path / "m.safetensors", MiB, 1)
    v = client.register(src, name="m")
    corrupt(Path(v.artifact.stored_path))
    model_file(src, MiB, 99)  # the original changed since
    (item,) = client.call("versions.verify", {"name": "m", "repair": True})["items"]
    assert item["status"] == "corrupt" and "changed since it was registered" in item["detail"]
    assert Path(v.artifact.stored_path).is_file(), "the corrupt copy was deleted by a repair that could not repair"
    assert client.call("gc.plan")["blobs"] == [], "the changed original was stored as an orphan"
    (item,) = client.call("versions.verify", {"name": "m"})["items"]
    assert item["status"] == "corrupt", item  # still the damaged copy, not 'missing'
    assert not client.call("audit.list", {"action": "blob.repaired"})["items"]


def test_a_model_directory_with_a_lost_file_blob_is_repaired_and_its_tree_rebuilt(daemon, tmp_path):
    client = daemon.client()
    src = write_hf_dir(tmp_path / "bert")
    v = client.register(src, name="bert")
    weights = next(f for f in v.artifact.files if f.path.endswith(".safetensors"))
    blob = daemon.data_dir / "objects" / "sha256" / weights.digest[:2] / weights.digest
    corrupt(blob)  # a hard link: the tree's copy is corrupt too
    (item,) = client.call("versions.verify", {"name": "bert"})["items"]
    assert item["status"] == "corrupt" and weights.path in item["detail"]

    (item,) = client.call("versions.verify", {"name": "bert", "repair": True})["items"]
    assert item["status"] == "repaired", item
    assert client.call("versions.verify", {"name": "bert"})["ok"]
    tree = Path(v.artifact.stored_path)
    assert (tree / weights.path).read_bytes() == (src / weights.path).read_bytes()


def fill_up(path: Path) -> Path:
    """Fill the filesystem to its last page (``fill`` stops within a 64 KiB block of the end)."""
    filler = fill(path, leave=0)
    fd = os.open(filler, os.O_WRONLY | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


# integrity.repair_artifact deleted a damaged blob before storing the good one: when that failed (a full
# disk), the blob's name was gone, and with it, for a model directory, the only way back to its bytes
def test_a_repair_on_a_full_disk_keeps_the_damaged_copy_and_works_once_space_returns(small_disk, tmp_path):
    d, client, _ = small_disk
    src = tmp_path / "bert"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    model_file(src / "model.safetensors", MiB, 7)
    v = client.register(src, name="bert")
    weights = next(f for f in v.artifact.files if f.path == "model.safetensors")
    blob = d.data_dir / "objects" / "sha256" / weights.digest[:2] / weights.digest
    corrupt(blob)  # the tree's hard link shares it: deleting the blob's name frees no space
    filler = fill_up(d.data_dir)

    (item,) = client.call("versions.verify", {"name": "bert", "repair": True})["items"]
    assert item["status"] == "corrupt" and "cannot repair" in item["detail"], item
    assert "space" in item["detail"].lower(), item
    assert blob.is_file(), "the damaged copy's name was removed by a repair that could not store the good one"
    (item,) = client.call("versions.verify", {"name": "bert"})["items"]
    assert item["status"] == "corrupt", item  # still the damaged copy, not 'missing'
    assert list((d.data_dir / "objects" / "tmp").iterdir()) == [], "a temp was left in objects/tmp"

    filler.unlink()
    (item,) = client.call("versions.verify", {"name": "bert", "repair": True})["items"]
    assert item["status"] == "repaired", item
    assert client.call("versions.verify", {"name": "bert"})["ok"]
    assert (Path(v.artifact.stored_path) / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()


def test_repair_needs_no_restart_and_racing_registrations_still_verify(daemon, tmp_path):
    """Repair while registrations of the same bytes arrive: the store ends with one good blob."""
    client = daemon.client()
    src = model_file(tmp_path / "m.safetensors", 2 * MiB, 1)
    v = client.register(src, name="m")
    os.unlink(v.artifact.stored_path)
    other = daemon.client()

    results: list[object] = []
    t = threading.Thread(target=lambda: results.append(other.call("versions.register", {"path": str(src), "name": "m2"})))
    t.start()
    client.call("versions.verify", {"repair": True})
    t.join(60)
    wait_for(lambda: idle(client))
    assert client.call("versions.verify")["ok"], client.call("versions.verify")
    assert Path(v.artifact.stored_path).is_file()
    assert results and results[0]["created"] is True  # type: ignore[index]
