"""Registering, reading, tagging, aliasing and searching through a real daemon."""

from __future__ import annotations

import os
import stat
import subprocess

import numpy as np
import pytest

from regd.errors import Conflict, InvalidParams, NotFound
from tests.modelfiles import write_safetensors
from tests.rawsocket import call


def weights(path, seed=0, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal(shape).astype(np.float32), "b": np.zeros(shape[1], np.float32)})


def test_register_stores_the_exact_bytes_read_only(client, tmp_path):
    src = weights(tmp_path / "model.safetensors")
    v = client.register(src, name="fraud", metrics={"auc": 0.91}, params={"lr": 0.001}, tags={"team": "risk"})
    assert (v.model, v.version, v.artifact.format) == ("fraud", "1.0.0", "safetensors")
    stored = v.artifact.stored_path
    assert open(stored, "rb").read() == src.read_bytes()
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o444
    assert v.metrics == {"auc": 0.91} and v.params == {"lr": 0.001} and v.tags == {"team": "risk"}
    assert {t.name for t in v.signature.tensors} == {"w", "b"}
    assert any(w.code == "no_env_lock" for w in v.warnings)


def test_known_bytes_make_no_new_version(client, tmp_path):
    src = weights(tmp_path / "m.safetensors")
    first = client.call("versions.register", {"path": str(src), "name": "fraud"})
    again = client.call("versions.register", {"path": str(src), "name": "fraud"})
    assert first["created"] and not again["created"]
    assert again["version"]["version"] == "1.0.0"
    assert client.model("fraud").versions == 1


def test_same_signature_bumps_minor_and_a_changed_one_bumps_major(client, tmp_path):
    assert client.register(weights(tmp_path / "a.safetensors", 0), name="m").version == "1.0.0"
    assert client.register(weights(tmp_path / "b.safetensors", 1), name="m").version == "1.1.0"
    assert client.register(weights(tmp_path / "c.safetensors", 2, (5, 3)), name="m").version == "2.0.0"
    assert client.register(weights(tmp_path / "d.safetensors", 3, (5, 3)), name="m").version == "2.1.0"


def test_a_pinned_version_is_used_and_a_clash_is_a_conflict(client, tmp_path):
    v = client.register(weights(tmp_path / "a.safetensors", 0), name="m", version="3.1.4")
    assert v.version == "3.1.4"
    with pytest.raises(Conflict):
        client.register(weights(tmp_path / "b.safetensors", 1), name="m", version="3.1.4")
    assert client.model("m").versions == 1


def test_references_resolve(client, tmp_path):
    client.register(weights(tmp_path / "a.safetensors", 0), name="m")
    client.register(weights(tmp_path / "b.safetensors", 1), name="m")
    client.set_alias("m", "champion", "1.0.0")
    assert client.version("m", "latest").version == "1.1.0"
    assert client.version("m", "@champion").version == "1.0.0"
    assert client.version("m", "1.0.0").aliases == ["champion"]
    with pytest.raises(NotFound) as err:
        client.version("m", "@nobody")
    assert "nobody" in err.value.message
    with pytest.raises(NotFound):
        client.version("m", "9.9.9")
    with pytest.raises(NotFound):
        client.version("ghost")


def test_alias_moves_are_kept_and_deleting_an_unknown_alias_is_not_found(client, tmp_path):
    client.register(weights(tmp_path / "a.safetensors", 0), name="m")
    client.register(weights(tmp_path / "b.safetensors", 1), name="m")
    client.set_alias("m", "champion", "1.0.0", reason="first")
    client.set_alias("m", "champion", "1.1.0", reason="better")
    history = client.call("models.history", {"name": "m"})["items"]
    moves = [(e["from"], e["to"], e["reason"]) for e in history if e["kind"] == "alias"]
    assert moves == [("1.0.0", "1.1.0", "better"), (None, "1.0.0", "first")]
    assert client.call("aliases.delete", {"name": "m", "alias": "champion"})["aliases"] == {}
    with pytest.raises(NotFound):
        client.call("aliases.delete", {"name": "m", "alias": "champion"})


def test_tags_set_and_remove(client, tmp_path):
    client.register(weights(tmp_path / "a.safetensors"), name="m", tags={"a": "1", "b": "2"})
    v = client.tag("m", "1.0.0", set={"c": "3", "a": "9"}, remove=["b"])
    assert v.tags == {"a": "9", "c": "3"}


def test_search_filters_and_orders(client, tmp_path):
    for i, (auc, team) in enumerate([(0.8, "risk"), (0.95, "risk"), (0.97, "growth"), (0.99, "risk")]):
        client.register(weights(tmp_path / f"{i}.safetensors", i), name=f"m{i % 2}", metrics={"auc": auc}, tags={"team": team})
    hits = client.search("metrics.auc > 0.9 and tags.team = 'risk'")
    assert sorted(h["metrics"]["auc"] for h in hits) == [0.95, 0.99]
    ordered = client.call("versions.search", {"filter": "metrics.auc > 0", "order_by": "metrics.auc desc", "limit": 2})
    assert [v["metrics"]["auc"] for v in ordered["items"]] == [0.99, 0.97]
    rest = client.call("versions.search", {"filter": "metrics.auc > 0", "order_by": "metrics.auc desc", "limit": 2,
                                           "cursor": ordered["next_cursor"]})  # fmt: skip
    assert [v["metrics"]["auc"] for v in rest["items"]] == [0.95, 0.8] and rest["next_cursor"] is None


def test_a_filter_syntax_error_names_the_position(client):
    with pytest.raises(InvalidParams) as err:
        client.search("metrics.auc >> 0.9")
    assert err.value.code == -32602
    assert err.value.data["position"] == 13


def test_lists_paginate_with_cursors(client, tmp_path):
    for i in range(5):
        client.register(weights(tmp_path / f"{i}.safetensors", i), name="m")
    seen, cursor = [], None
    while True:
        page = client.call("versions.list", {"name": "m", "limit": 2, "cursor": cursor})
        seen += [v["version"] for v in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["1.4.0", "1.3.0", "1.2.0", "1.1.0", "1.0.0"]
    with pytest.raises(InvalidParams):
        client.call("versions.list", {"name": "m", "cursor": "garbage!"})


def test_a_model_directory_is_one_version_with_a_read_only_tree(client, tmp_path):
    from tests.modelfiles import write_hf_dir

    d = write_hf_dir(tmp_path / "hf")
    v = client.register(d, name="bert")
    assert v.artifact.kind == "directory" and v.artifact.format == "huggingface"
    tree = v.artifact.stored_path
    for f in v.artifact.files:
        stored = os.path.join(tree, f.path)
        assert open(stored, "rb").read() == (d / f.path).read_bytes()
    assert os.stat(tree).st_mode & 0o222 == 0


def test_bad_paths_are_refused_with_clear_messages(client, daemon, tmp_path):
    with pytest.raises(NotFound):
        client.register(tmp_path / "nope.safetensors", name="m")
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(InvalidParams, match="fifo"):
        client.register(fifo, name="m")
    blob = next((daemon.data_dir / "objects" / "sha256").rglob("*"), None) or daemon.data_dir / "registry.db"
    with pytest.raises(InvalidParams, match="data dir"):
        client.register(blob, name="m")
    with pytest.raises(InvalidParams):
        client.call("versions.register", {"path": str(tmp_path), "name": "bad name!"})
    assert client.call("models.list")["items"] == []


def test_deprecated_models_are_hidden_unless_asked(client, tmp_path):
    client.register(weights(tmp_path / "a.safetensors"), name="old")
    client.call("models.deprecate", {"name": "old", "reason": "replaced by new"})
    assert client.call("models.list")["items"] == []
    (m,) = client.call("models.list", {"include_deprecated": True})["items"]
    assert m["deprecated"] and m["deprecated_reason"] == "replaced by new"


def test_verify_finds_a_corrupted_blob(client, tmp_path):
    v = client.register(weights(tmp_path / "a.safetensors"), name="m")
    assert client.call("versions.verify")["ok"]
    path = v.artifact.stored_path
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"X")
    result = client.call("versions.verify", {"name": "m"})
    assert not result["ok"] and result["items"][0]["status"] == "corrupt"


def test_gc_frees_orphans_and_prunes_only_what_is_safe(client, daemon, tmp_path):
    for i in range(4):
        client.register(weights(tmp_path / f"{i}.safetensors", i), name="m")
    client.call("versions.promote", {"name": "m", "version": "1.0.0", "stage": "production", "reason": "r"})
    client.set_alias("m", "keep", "1.1.0")
    orphan = daemon.data_dir / "objects" / "sha256" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"left by a crash")
    plan = client.call("gc.plan", {"keep_last": 1})
    assert plan["dry_run"] and plan["versions"] == ["m:1.2.0"]
    assert {b["reason"] for b in plan["blobs"]} == {"orphan", "pruned m:1.2.0"}
    assert orphan.exists()
    done = client.call("gc.run", {"keep_last": 1})
    assert not done["dry_run"] and not orphan.exists()
    assert client.version("m", "1.2.0").warnings[-1].code == "pruned"
    assert client.call("versions.verify")["ok"]
    assert client.call("gc.plan", {"keep_last": 1})["blobs"] == []


def test_audit_records_every_change_and_its_chain_verifies(client, tmp_path):
    client.register(weights(tmp_path / "a.safetensors"), name="m")
    client.tag("m", "1.0.0", set={"x": "1"})
    client.set_alias("m", "champion", "1.0.0")
    actions = [e["action"] for e in client.call("audit.list", {"name": "m"})["items"]]
    assert actions == ["alias.set", "version.tagged", "version.registered"]
    assert client.call("audit.list", {"action": "alias"})["items"][0]["action"] == "alias.set"
    assert client.call("audit.verify") == {"ok": True, "rows": 3, "first_broken": None, "detail": ""}


def test_the_audit_log_refuses_edits_and_verify_finds_them(client, daemon, tmp_path):
    import sqlite3

    client.register(weights(tmp_path / "a.safetensors", 0), name="m")
    client.register(weights(tmp_path / "b.safetensors", 1), name="m")
    db = sqlite3.connect(daemon.data_dir / "registry.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit WHERE id = 1")
    # someone who drops the trigger can edit a row, but the chain shows it
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor = 'mallory' WHERE id = 1")
    db.commit()
    db.close()
    result = client.call("audit.verify")
    assert not result["ok"] and result["first_broken"] == 1


def test_socat_style_one_shot_scripts_work(daemon):
    reply = call(daemon.socket, "models.list")
    assert reply["result"] == {"items": [], "next_cursor": None}


def test_a_second_daemon_on_the_same_data_dir_is_refused(daemon):
    env = daemon.env()
    env["REGD_SOCKET"] = str(daemon.socket.parent / "other.sock")
    proc = subprocess.run(["python", "-m", "regd", "serve", "--config", str(daemon.config_path)], env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 1
    assert "already serves" in proc.stderr


def test_a_stale_socket_is_replaced(daemon_factory):
    d = daemon_factory(start=False)
    d.socket.parent.mkdir(exist_ok=True)
    import socket as socketlib

    s = socketlib.socket(socketlib.AF_UNIX)
    s.bind(str(d.socket))
    s.close()  # a socket file nobody listens on: what kill -9 leaves behind
    d.start()
    assert d.client().status()["pid"] == d.proc.pid


def test_lists_and_searches_show_every_change_at_once(client, tmp_path):
    """Summaries are rendered once and reused while nothing changes (store/summary_cache.py): every
    kind of change must still show in the very next list and search, on every reader connection."""
    for i in range(3):
        client.register(weights(tmp_path / f"{i}.safetensors", i), name="m", tags={"team": "risk"})

    def seen() -> dict[str, dict]:
        found = [client.call("versions.search", {"filter": "tags.team = 'risk'"})["items"] for _ in range(3)]
        listed = [client.call("versions.list", {"name": "m"})["items"] for _ in range(3)]
        assert all(p == found[0] for p in found) and all(p == listed[0] for p in listed), "reader connections disagree"
        assert all(s in listed[0] for s in found[0])
        return {s["version"]: s for s in found[0]}

    assert seen()["1.0.0"]["tags"] == {"team": "risk"}
    client.tag("m", "1.0.0", set={"team": "risk", "x": "1"})
    assert seen()["1.0.0"]["tags"] == {"team": "risk", "x": "1"}
    client.set_alias("m", "champion", "1.0.0")
    assert seen()["1.0.0"]["aliases"] == ["champion"]
    client.set_alias("m", "champion", "1.1.0")
    assert seen()["1.0.0"]["aliases"] == [] and seen()["1.1.0"]["aliases"] == ["champion"]
    client.call("aliases.delete", {"name": "m", "alias": "champion"})
    assert seen()["1.1.0"]["aliases"] == []
    client.call("versions.promote", {"name": "m", "version": "1.0.0", "stage": "production", "reason": "r"})
    assert seen()["1.0.0"]["stage"] == "production"
    client.call("versions.promote", {"name": "m", "version": "1.1.0", "stage": "production", "reason": "r"})
    assert seen()["1.0.0"]["stage"] == "archived" and seen()["1.1.0"]["stage"] == "production"
    client.call("gc.run", {"keep_last": 0})  # 1.2.0 is neither in a stage nor aliased: its bytes go
    assert seen()["1.2.0"]["warnings"][-1] == "pruned"
    client.tag("m", "1.2.0", remove=["team"])
    assert "1.2.0" not in seen()
