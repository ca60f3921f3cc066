"""``regd migrate``: an embedded registry moved into PostgreSQL + S3, interrupted, resumed, verified."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.modelfiles import write_hf_dir, write_safetensors


def _weights(path: Path, seed: int, mib: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    tensors = {"w": rng.standard_normal((4, 4)).astype(np.float32)}
    if mib:
        tensors["big"] = rng.standard_normal(mib * (1 << 18)).astype(np.float32)
    return write_safetensors(path, tensors)


def _embedded_registry(daemon_factory, tmp_path: Path, big: int = 0):  # type: ignore[no-untyped-def]
    """A stopped SQLite daemon's data dir with versions, stages, aliases, an env lock and a directory."""
    d = daemon_factory()
    c = d.client()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "requirements.txt").write_text("numpy==1.26.4\n")
    for i in range(4):
        c.register(_weights(tmp_path / "src" / f"m{i}.safetensors", i, mib=big), name="fraud", metrics={"auc": 0.8 + i / 100})
    c.register(write_hf_dir(tmp_path / "hf"), name="hf")
    c.call("versions.promote", {"name": "fraud", "version": "1.0.0", "stage": "production", "reason": "first"})
    c.call("versions.promote", {"name": "fraud", "version": "1.2.0", "stage": "production", "reason": "better"})
    c.call("models.rollback", {"name": "fraud", "reason": "worse"})
    c.call("aliases.set", {"name": "fraud", "alias": "champion", "version": "1.3.0"})
    c.call("versions.tag", {"name": "fraud", "version": "1.1.0", "set": {"team": "risk"}})
    (tmp_path / "runs").mkdir()
    c.call("watch.add", {"path": str(tmp_path / "runs")})  # a runtime watch: kept in the catalog
    before = {
        "versions": c.call("versions.search", {"filter": "", "limit": 1000})["items"],
        "audit": c.call("audit.list", {"limit": 1000})["items"],
        "fraud": c.call("models.get", {"name": "fraud"}),
    }
    d.stop()
    return d, before


def _migrate(d, pg_url: str, bucket: str, *extra: str) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "regd", "migrate", "--to", pg_url, "--objects", f"s3://{bucket}/team", *extra],
        env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _team_config(d, pg_url: str, bucket: str) -> None:  # type: ignore[no-untyped-def]
    d.write_config(f'catalog = "{pg_url}"\nobjects = "s3://{bucket}/team"\n')


def test_migrate_interrupted_then_resumed_moves_everything_verified(daemon_factory, pg_url, bucket, s3_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d, before = _embedded_registry(daemon_factory, tmp_path, big=24)
    blobs = sum(1 for p in (d.data_dir / "objects" / "sha256").rglob("*") if p.is_file())
    s3 = s3_server.client()

    def uploaded() -> int:
        return s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)

    first = _migrate(d, pg_url, bucket, "--jobs", "1", "--json")
    deadline = time.monotonic() + 60
    while uploaded() == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # half-way: rows copied, some blobs up
    first.wait(30)
    assert 0 < uploaded() < blobs, "the migration was not interrupted half-way; make the registry bigger"

    second = _migrate(d, pg_url, bucket, "--json")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] and report["blobs"] == blobs and report["problems"] == []
    assert report["tables"]["versions"] == 5 and report["audit_rows"] == len(before["audit"])

    # a third run finds everything there and changes nothing
    third = _migrate(d, pg_url, bucket, "--json")
    out, err = third.communicate(timeout=120)
    assert third.returncode == 0 and json.loads(out)["tables"] == report["tables"], err

    # the same data dir, now a team daemon: same registry, chain intact, bytes served from the bucket
    _team_config(d, pg_url, bucket)
    d.start()
    c = d.client()
    assert c.call("audit.verify")["ok"]
    assert c.call("audit.list", {"limit": 1000})["items"] == before["audit"]
    after = c.call("versions.search", {"filter": "", "limit": 1000})["items"]
    assert [(v["model"], v["version"], v["stage"], v["aliases"], v["digest"]) for v in after] == [
        (v["model"], v["version"], v["stage"], v["aliases"], v["digest"]) for v in before["versions"]
    ]
    fraud = c.call("models.get", {"name": "fraud"})
    assert (fraud["production"], fraud["aliases"]) == (before["fraud"]["production"], before["fraud"]["aliases"])
    assert {i["status"] for i in c.call("versions.verify", {})["items"]} == {"ok"}
    # the runtime watch is this host's and user's now: the team daemon here goes on watching it
    assert str((tmp_path / "runs").resolve()) in [w["path"] for w in c.call("watch.list")["items"]]
    v = c.call("versions.get", {"name": "fraud", "version": "1.3.0", "fetch": True})
    assert Path(v["artifact"]["stored_path"]).read_bytes() == (tmp_path / "src" / "m3.safetensors").read_bytes()
    assert v["env_lock"]["packages"] == {"numpy": "1.26.4"}
    # new rows number on from the copied ids
    new = c.register(_weights(tmp_path / "m9.safetensors", 9, mib=24), name="fraud")
    assert new.version == "1.4.0" and c.call("audit.verify")["ok"]


def test_migrate_refuses_a_running_daemon_and_a_foreign_catalog(daemon_factory, pg_url, bucket, tmp_path) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory()
    d.client().register(_weights(tmp_path / "a.safetensors", 1), name="a")
    busy = _migrate(d, pg_url, bucket)
    _, err = busy.communicate(timeout=60)
    assert busy.returncode == 1 and "stop it first" in err
    d.stop()
    other = daemon_factory()
    other.client().register(_weights(tmp_path / "b.safetensors", 2), name="b")
    other.stop()
    ok = _migrate(other, pg_url, bucket, "--json")
    assert ok.wait(120) == 0
    # the target holding a prefix of the rows (as after a run killed while copying them) is finished
    other.start()
    other.client().register(_weights(tmp_path / "c.safetensors", 3), name="b")
    other.stop()
    more = _migrate(other, pg_url, bucket, "--json")
    out, err = more.communicate(timeout=120)
    assert more.returncode == 0 and json.loads(out)["tables"]["versions"] == 2, err
    refused = _migrate(d, pg_url, bucket)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 1 and "another registry" in err


@pytest.mark.parametrize(("to", "objects"), [("sqlite", "s3://b-x/p"), ("postgresql://h/db", "local"),
                                              ("postgresql://h:x/db", "s3://b-x/p"), ("postgresql://h/db", "s3://B")])
def test_migrate_refuses_bad_targets_as_usage_errors(daemon_factory, to, objects) -> None:  # type: ignore[no-untyped-def]
    d = daemon_factory(start=False)
    proc = subprocess.run([sys.executable, "-m", "regd", "migrate", "--to", to, "--objects", objects], env=d.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.startswith("regd: ")
