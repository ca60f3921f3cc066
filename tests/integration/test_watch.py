"""Auto-registration: what lands in a watched folder registers itself, once, when it is complete."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from tests.modelfiles import write_hf_dir, write_safetensors
from tests.waiting import idle, total_versions, versions_of, wait_for

FAST = "settle_ms = 200\ndir_settle_ms = 1000\n"


def watched(daemon_factory, tmp_path, extra=""):
    root = tmp_path / "runs"
    root.mkdir()
    d = daemon_factory(f'[[watch]]\npath = "{root}"\n{FAST}{extra}')
    return d, d.client(), root


def weights(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal((8, 4)).astype(np.float32)})


def quiet(client, seconds=1.5):
    """Let any late event settle, then check nothing is pending."""
    time.sleep(seconds)
    wait_for(lambda: idle(client), what="an idle ingest queue")


def test_a_dropped_file_registers_under_its_first_directory(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    (root / "fraud" / "run-12").mkdir(parents=True)
    weights(root / "fraud" / "run-12" / "model.safetensors")
    wait_for(lambda: versions_of(client, "fraud") == ["1.0.0"], what="fraud 1.0.0")
    v = client.version("fraud")
    assert v.artifact.source_path.endswith("run-12/model.safetensors")
    assert v.created_by == os.environ.get("USER", v.created_by)


def test_write_then_rename_registers_once(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    tmp = weights(root / "model.safetensors.tmp")
    os.rename(tmp, root / "model.safetensors")
    wait_for(lambda: versions_of(client, "model") == ["1.0.0"])
    quiet(client)
    assert total_versions(client) == 1


def test_a_slow_writer_registers_once_after_the_last_write(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    data = (root / "tmpsrc.bin")
    weights(data)
    payload = data.read_bytes()
    data.unlink()
    target = root / "slow.safetensors"
    with open(target, "wb") as f:
        for i in range(0, len(payload), 64):
            f.write(payload[i : i + 64])
            f.flush()
            time.sleep(0.03)
    wait_for(lambda: versions_of(client, "slow") == ["1.0.0"])
    quiet(client)
    assert client.version("slow").artifact.size == len(payload)
    assert total_versions(client) == 1


def test_temporary_names_and_unmatched_patterns_are_ignored(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    weights(root / "a.safetensors.part")
    weights(root / ".hidden.safetensors")
    (root / "notes.txt").write_text("hello")
    quiet(client)
    assert total_versions(client) == 0


def test_sidecar_metadata_is_read(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    sidecar = {"name": "churn", "metrics": {"auc": 0.9}, "tags": {"team": "growth"}, "description": "first try"}
    (root / "m.safetensors.regd.json").write_text(json.dumps(sidecar))
    weights(root / "m.safetensors")
    wait_for(lambda: versions_of(client, "churn"))
    v = client.version("churn")
    assert v.metrics == {"auc": 0.9} and v.tags == {"team": "growth"} and v.description == "first try"


def test_a_malformed_sidecar_registers_with_a_warning_and_an_audit_row(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    (root / "m.safetensors.regd.json").write_text('{"metrics": {"auc": "high"')
    weights(root / "m.safetensors")
    wait_for(lambda: versions_of(client, "m"))
    assert "sidecar_invalid" in [w.code for w in client.version("m").warnings]
    assert client.call("audit.list", {"action": "sidecar.invalid"})["items"]


def test_duplicates_make_no_new_version(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    (root / "fraud").mkdir()
    weights(root / "fraud" / "a.safetensors", 1)
    wait_for(lambda: versions_of(client, "fraud"))
    weights(root / "fraud" / "copy.safetensors", 1)
    quiet(client)
    assert versions_of(client, "fraud") == ["1.0.0"]


def test_a_huggingface_directory_written_file_by_file_is_one_version(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    staging = tmp_path / "staging"
    write_hf_dir(staging, tokenizer=True)
    target = root / "bert" / "checkpoint"
    target.mkdir(parents=True)
    order = ["config.json"] + sorted(p.name for p in staging.iterdir() if p.name.endswith(".safetensors")) + sorted(
        p.name for p in staging.iterdir() if p.name.startswith("tokenizer") or p.name.endswith(".txt")
    )
    rest = [p.name for p in staging.iterdir() if p.name not in order]
    for name in order + rest:
        (target / name).write_bytes((staging / name).read_bytes())
        time.sleep(0.4)  # a real trainer pauses between files, longer than settle_ms
    wait_for(lambda: versions_of(client, "bert"), timeout=30)
    quiet(client, 2.5)
    assert versions_of(client, "bert") == ["1.0.0"]
    v = client.version("bert")
    assert v.artifact.kind == "directory"
    assert sorted(f.path for f in v.artifact.files) == sorted(order + rest)


def test_a_sharded_checkpoint_waits_for_every_shard(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    staging = tmp_path / "staging"
    write_hf_dir(staging, sharded=True)
    target = root / "llama"
    target.mkdir()
    shards = sorted(p.name for p in staging.iterdir() if p.name.startswith("model-"))
    assert len(shards) >= 2
    for name in ["config.json", next(p.name for p in staging.iterdir() if p.name.endswith(".index.json")), shards[0]]:
        (target / name).write_bytes((staging / name).read_bytes())
    time.sleep(2.5)  # well past dir_settle_ms: still incomplete, so nothing registers
    assert versions_of(client, "llama") == []
    for name in [p.name for p in staging.iterdir() if not (target / p.name).exists()]:
        (target / name).write_bytes((staging / name).read_bytes())
    wait_for(lambda: versions_of(client, "llama"), timeout=30)
    assert len(client.version("llama").artifact.files) == len(list(staging.iterdir()))


def test_symlinks_out_of_the_root_are_not_followed(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    outside = weights(tmp_path / "outside.safetensors")
    os.symlink(outside, root / "link.safetensors")
    quiet(client)
    assert total_versions(client) == 0


def test_an_unreadable_file_is_reported_once(daemon_factory, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads everything: an unreadable file needs a non-root test run")
    d, client, root = watched(daemon_factory, tmp_path)
    f = weights(root / "secret.safetensors")
    os.chmod(f, 0)
    wait_for(lambda: client.status()["ingest"]["failed"] >= 1)
    quiet(client)
    assert client.status()["ingest"]["failed"] == 1


def test_runtime_watches_survive_a_restart_and_files_that_arrived_meanwhile_register_once(daemon_factory, tmp_path):
    d = daemon_factory()
    client = d.client()
    root = tmp_path / "later"
    root.mkdir()
    client.call("watch.add", {"path": str(root), "settle_ms": 200})
    weights(root / "a.safetensors", 1)
    wait_for(lambda: versions_of(client, "a"))
    d.stop()
    weights(root / "b.safetensors", 2)
    d.start()
    client = d.client()
    assert [w["path"] for w in client.call("watch.list")["items"]] == [str(root)]
    wait_for(lambda: versions_of(client, "b"), what="b registered after the restart")
    quiet(client)
    assert total_versions(client) == 2
    d.restart()
    client = d.client()
    quiet(client)
    assert total_versions(client) == 2


def test_sigkill_in_a_burst_of_drops_then_restart_registers_every_file_exactly_once(daemon_factory, tmp_path):
    d, client, root = watched(daemon_factory, tmp_path)
    n = 60
    for i in range(n):
        weights(root / f"m{i:03d}.safetensors", i)
    wait_for(lambda: total_versions(client) >= 5, what="the burst to start registering")
    d.kill()
    d.start()
    client = d.client()
    wait_for(lambda: total_versions(client) == n, timeout=60, what=f"all {n} files registered")
    quiet(client)
    assert total_versions(client) == n
    assert client.call("versions.verify")["ok"]
    assert all(versions_of(client, f"m{i:03d}") == ["1.0.0"] for i in range(n))


def test_watch_add_rm_ls_at_runtime(daemon, tmp_path):
    client = daemon.client()
    root = tmp_path / "w"
    listing = client.call("watch.add", {"path": str(root), "patterns": ["*.onnx"]})["items"]
    assert listing[0]["state"] in ("missing", "starting")  # the folder does not exist yet: watched for
    root.mkdir()
    wait_for(lambda: client.call("watch.list")["items"][0]["state"] == "watching")
    assert client.call("watch.remove", {"path": str(root)})["items"] == []
    from regd.errors import InvalidParams, NotFound

    with pytest.raises(NotFound):
        client.call("watch.remove", {"path": str(root)})
    with pytest.raises(InvalidParams):
        client.call("watch.add", {"path": str(daemon.data_dir)})
