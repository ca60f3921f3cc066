"""``versions.diff`` and ``regd diff`` against a real daemon: registered pairs with known differences."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from regd.cli import main
from regd.errors import InvalidParams, NotFound
from tests.modelfiles import write_hf_dir, write_onnx

POLICY = '[policy."fraud*".production]\nlower_is_better = ["loss"]\n'


def weights(n: int = 198, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i:03d}.weight": rng.standard_normal((8, 8)).astype(np.float32) for i in range(n)}


def st(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


@pytest.fixture
def pair(daemon_factory, tmp_path):
    """fraud 1.0.0 and 1.1.0: a fine-tune touching 2 of 198 tensors, accuracy up, loss down."""
    daemon = daemon_factory(POLICY)
    client = daemon.client()
    base = weights()
    tuned = dict(base) | {n: base[n] + 1 for n in ("layer.010.weight", "layer.100.weight")}
    client.register(st(tmp_path / "r1/model.safetensors", base), name="fraud",
                    metrics={"accuracy": 0.9, "loss": 0.3}, params={"lr": 0.001}, tags={"team": "risk"})  # fmt: skip
    client.register(st(tmp_path / "r2/model.safetensors", tuned), name="fraud",
                    metrics={"accuracy": 0.912, "loss": 0.25}, params={"lr": 0.0005}, tags={"team": "risk"})  # fmt: skip
    return daemon, client, base, tuned


def test_a_fine_tune_between_two_registered_versions(pair):
    daemon, client, _, _ = pair
    d = client.call("versions.diff", {"a": {"name": "fraud", "version": "1.0.0"}, "b": {"name": "fraud", "version": "1.1.0"}})
    assert d["verdict"] == (
        "compatible; fine-tune touched 2 of 198 tensors (1.0% of parameters); accuracy +0.012, loss -0.05; run differs: params"
    )
    assert d["a"]["version"] == "1.0.0" and d["b"]["version"] == "1.1.0"
    assert d["tensors"]["counts"] == {"added": 0, "removed": 0, "reshaped": 0, "retyped": 0, "changed": 2,
                                      "unchanged": 196, "unknown": 0}  # fmt: skip
    assert d["tensors"]["changed"] == ["layer.010.weight", "layer.100.weight"]
    metrics = {m["name"]: m for m in d["metrics"]["items"]}
    assert metrics["loss"]["verdict"] == "better" and metrics["loss"]["direction"] == "lower"
    assert metrics["accuracy"]["verdict"] == "better" and metrics["accuracy"]["delta"] == 0.012
    assert d["params"]["changed"] == [{"key": "lr", "a": 0.001, "b": 0.0005}]
    assert d["lineage"]["differs"] == ["params"] and not d["lineage"]["same_run"]
    assert d["env"]["runtime"] == []  # same machine


def test_the_cli_prints_the_verdict_first_and_json_for_scripts(pair, capsys):
    daemon, *_ = pair
    sock = str(daemon.socket)
    assert main(["diff", "fraud:1.0.0", "fraud:latest", "--socket", sock]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == (
        "compatible; fine-tune touched 2 of 198 tensors (1.0% of parameters); accuracy +0.012, loss -0.05; run differs: params"
    )
    assert "layer.010.weight" in out and "lr: 0.001 -> 0.0005" in out
    assert main(["diff", "fraud:1.0.0", "fraud:1.1.0", "--json", "--socket", sock]) == 0
    assert json.loads(capsys.readouterr().out)["tensors"]["counts"]["changed"] == 2


def test_unknown_references_name_the_side(pair, capsys):
    _, client, _, _ = pair
    with pytest.raises(NotFound) as exc:
        client.call("versions.diff", {"a": {"name": "fraud", "version": "1.0.0"}, "b": {"name": "fraud", "version": "9.9.9"}})
    assert exc.value.code == -32001 and exc.value.message == "b: model 'fraud' has no version 9.9.9"
    assert exc.value.data == {"side": "b", "name": "fraud", "version": "9.9.9"}
    with pytest.raises(NotFound) as exc:
        client.call("versions.diff", {"a": {"name": "nope", "version": "latest"}, "b": {"name": "fraud"}})
    assert exc.value.message == "a: no model named 'nope'" and exc.value.data["side"] == "a"
    with pytest.raises(InvalidParams):
        client.call("versions.diff", {"a": {"name": "fraud"}})  # neither b nor b_path
    assert main(["diff", "fraud:1.0.0", "fraud@nobody", "--socket", str(pair[0].socket)]) == 1
    assert "b: model 'fraud' has no alias 'nobody'" in capsys.readouterr().err


def test_a_file_on_disk_is_hashed_not_stored(pair, tmp_path, capsys, monkeypatch):
    daemon, client, _, tuned = pair
    candidate = dict(tuned) | {"layer.000.weight": tuned["layer.000.weight"] * 3, "extra.bias": np.ones(8, np.float32)}
    path = st(tmp_path / "out/model.safetensors", candidate)
    before = sorted(p.name for p in (daemon.data_dir / "objects/sha256").rglob("*") if p.is_file())
    d = client.call("versions.diff", {"a": {"name": "fraud"}, "b_path": str(path)})
    assert d["b"]["path"] == str(path) and d["b"]["version"] is None
    assert d["tensors"]["counts"]["added"] == 1 and d["tensors"]["counts"]["changed"] == 1
    assert d["signature"]["verdict"] == "breaking"  # a weights file gained a tensor: strict loading fails
    assert d["verdict"].startswith("breaking: 1 tensor added; touched 2 of 199 tensors")
    after = sorted(p.name for p in (daemon.data_dir / "objects/sha256").rglob("*") if p.is_file())
    assert after == before
    assert len(client.call("versions.list", {"name": "fraud"})["items"]) == 2  # nothing registered
    # the CLI takes a path for B
    monkeypatch.chdir(tmp_path)
    assert main(["diff", "fraud", "./out/model.safetensors", "--socket", str(daemon.socket)]) == 0
    assert capsys.readouterr().out.startswith("breaking: 1 tensor added")


def test_bad_paths_are_clear_errors(pair, tmp_path):
    _, client, _, _ = pair
    with pytest.raises(NotFound) as exc:
        client.call("versions.diff", {"a": {"name": "fraud"}, "b_path": str(tmp_path / "missing.safetensors")})
    assert exc.value.message == f"b_path: no such file or directory: {tmp_path / 'missing.safetensors'}"
    fifo = tmp_path / "model.safetensors.pipe"
    os.mkfifo(fifo)
    with pytest.raises(InvalidParams) as exc:
        client.call("versions.diff", {"a": {"name": "fraud"}, "b_path": str(fifo)})
    assert exc.value.code == -32602
    assert exc.value.message == f"b_path: {fifo} is not a regular file or a model directory"
    locked = st(tmp_path / "locked.safetensors", weights(2))
    locked.chmod(0)
    try:
        if not os.access(locked, os.R_OK):  # root reads mode-000 files: only a normal user sees this refusal
            with pytest.raises(InvalidParams) as exc:
                client.call("versions.diff", {"a": {"name": "fraud"}, "b_path": str(locked)})
            assert exc.value.message == f"b_path: {locked} is not readable"
    finally:
        locked.chmod(0o644)


def test_onnx_versions_across_models(daemon, tmp_path):
    client = daemon.client()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    client.register(write_onnx(tmp_path / "a/model.onnx", [("X", "FLOAT", ["batch", 4])]), name="churn")
    client.register(write_onnx(tmp_path / "b/model.onnx", [("X", "FLOAT", ["batch", 8]), ("mask", "BOOL", ["batch", 8])]),
                    name="fraud")  # fmt: skip
    d = client.call("versions.diff", {"a": {"name": "churn", "version": "1.0.0"}, "b": {"name": "fraud", "version": "1.0.0"}})
    sig = d["signature"]
    assert sig["verdict"] == "breaking"
    assert [s["name"] for s in sig["inputs"]["added"]] == ["mask"]
    assert [c["name"] for c in sig["inputs"]["reshaped"]] == ["X"]
    assert d["verdict"] == "breaking: 1 input added, 1 input reshaped; same weights (2 tensors)"


def test_model_directories_diff_files_and_config_keys(daemon, tmp_path):
    client = daemon.client()
    a_dir = write_hf_dir(tmp_path / "a/llama")
    b_dir = write_hf_dir(tmp_path / "b/llama", tokenizer=True)
    config = json.loads((b_dir / "config.json").read_text()) | {"num_hidden_layers": 2}
    (b_dir / "config.json").write_text(json.dumps(config))
    client.register(a_dir, name="llama")
    client.register(b_dir, name="llama")
    d = client.call("versions.diff", {"a": {"name": "llama", "version": "1.0.0"}, "b": {"name": "llama", "version": "latest"}})
    assert [f["path"] for f in d["files"]["added"]] == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    (desc,) = d["files"]["descriptors"]
    assert desc["path"] == "config.json" and desc["keys"]["changed"] == [{"key": "num_hidden_layers", "a": 1, "b": 2}]
    assert d["verdict"].startswith("compatible; same weights (3 tensors); files: 1 changed, 3 added")
    assert d["format_metadata"]["changed"] == [{"key": "num_hidden_layers", "a": 1, "b": 2}]
