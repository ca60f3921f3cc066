"""The diff's pure logic on real files: versions built by ``probe`` (the registration analysis, nothing stored).

Each pair has known differences; the tests assert the exact verdicts and counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from regd.domain import EnvLock, Runtime, Signature, TensorSpec, Version
from regd.errors import InvalidParams, NotFound
from regd.ingest.probe import UNREGISTERED, probe
from regd.lifecycle import diff_files
from regd.lifecycle.diff import diff_versions, metrics_diff
from regd.lifecycle.diff_env import compare_versions, compare_versions_fallback, env_diff
from regd.lifecycle.diff_signature import shape_verdict, signature_diff
from regd.store.blobs import LocalBlobStore
from tests.modelfiles import write_gguf, write_hf_dir, write_mlflow_dir, write_onnx


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


def weights(n: int = 198, shape: tuple[int, ...] = (8, 8), seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer.{i:03d}.weight": rng.standard_normal(shape).astype(np.float32) for i in range(n)}


def fine_tune(tensors: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    out = dict(tensors)
    for name in names:
        out[name] = out[name] + 1
    return out


def st(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


async def version(path: Path, blobs: LocalBlobStore, **update: Any) -> Version:
    v = await probe(path, blobs)
    return v.model_copy(update=update) if update else v


# ----------------------------------------------------------------------------- tensors


async def test_a_fine_tune_touching_two_of_198_tensors(tmp_path, blobs):
    base = weights()
    a = await version(st(tmp_path / "a/model.safetensors", base), blobs, metrics={"accuracy": 0.9})
    b = await version(st(tmp_path / "b/model.safetensors", fine_tune(base, ["layer.003.weight", "layer.150.weight"])),
                      blobs, metrics={"accuracy": 0.912})  # fmt: skip
    d = diff_versions(a, b)
    assert d.verdict == "compatible; fine-tune touched 2 of 198 tensors (1.0% of parameters); accuracy +0.012"
    t = d.tensors
    assert t.available and t.note is None
    assert (t.counts.changed, t.counts.unchanged, t.counts.added, t.counts.removed, t.counts.unknown) == (2, 196, 0, 0, 0)
    assert t.changed == ["layer.003.weight", "layer.150.weight"]
    assert (t.a.tensors, t.a.params, t.a.bytes, t.a.fingerprinted) == (198, 198 * 64, 198 * 64 * 4, 198)
    assert t.touched_params == 128 and t.touched_share == pytest.approx(2 / 198)
    assert d.signature.verdict == "compatible" and d.signature.identical
    assert d.metrics.items[0].delta == 0.012 and d.metrics.items[0].verdict == "better"
    assert not d.same_bytes and d.files.changed[0].path == "model.safetensors"
    # nothing was stored: the probe hashed in reference mode
    assert list(blobs.digests()) == []


async def test_the_share_of_parameters_weighs_tensor_sizes(tmp_path, blobs):
    base = weights(97) | {"embed.weight": np.zeros((64, 64), dtype=np.float32)}
    a = await version(st(tmp_path / "a.safetensors", base), blobs)
    b = await version(st(tmp_path / "b.safetensors", fine_tune(base, ["embed.weight"])), blobs)
    d = diff_versions(a, b)
    # 4096 of 97 * 64 + 4096 = 10304 parameters
    assert d.tensors.summary == "fine-tune touched 1 of 98 tensors (39.8% of parameters)"


async def test_tensors_added_removed_reshaped_and_retyped_break_a_weights_file(tmp_path, blobs):
    base = weights(10)
    changed = dict(base)
    del changed["layer.009.weight"]
    changed["layer.000.weight"] = np.zeros((8, 16), dtype=np.float32)
    changed["layer.001.weight"] = base["layer.001.weight"].astype(np.float16)
    changed["head.weight"] = np.ones((8, 2), dtype=np.float32)
    changed["layer.002.weight"] = base["layer.002.weight"] * 2
    a = await version(st(tmp_path / "a.safetensors", base), blobs)
    b = await version(st(tmp_path / "b.safetensors", changed), blobs)
    d = diff_versions(a, b)
    c = d.tensors.counts
    assert (c.added, c.removed, c.reshaped, c.retyped, c.changed, c.unchanged) == (1, 1, 1, 1, 1, 6)
    assert [x.name for x in d.tensors.added] == ["head.weight"]
    assert [x.name for x in d.tensors.removed] == ["layer.009.weight"]
    assert d.tensors.reshaped[0].a.shape == [8, 8] and d.tensors.reshaped[0].b.shape == [8, 16]
    assert d.tensors.retyped[0].a.dtype == "F32" and d.tensors.retyped[0].b.dtype == "F16"
    # touched: added 16 + reshaped 128 + retyped 64 + changed 64 = 272 of b's 128 + 8 * 64 + 16 = 656
    assert d.tensors.touched == 4 and d.tensors.touched_params == 272
    assert d.signature.verdict == "breaking"
    assert d.signature.reasons == ["1 tensor added", "1 tensor removed", "1 tensor reshaped", "1 tensor retyped"]
    assert d.verdict == (
        "breaking: 1 tensor added, 1 removed, 1 reshaped, 1 retyped; touched 4 of 10 tensors (41.5% of parameters)"
    )


async def test_missing_fingerprints_are_said_not_guessed(tmp_path, blobs):
    base = weights(5)
    a = await version(st(tmp_path / "a.safetensors", base), blobs)
    b = await version(st(tmp_path / "b.safetensors", fine_tune(base, ["layer.000.weight"])), blobs)
    a_blind = a.model_copy(update={"tensors": [t.model_copy(update={"fingerprint": None}) for t in a.tensors or []]})
    d = diff_versions(a_blind, b)
    t = d.tensors
    assert (t.counts.unknown, t.counts.changed, t.counts.unchanged) == (5, 0, 0)
    assert t.touched_share is None
    assert t.note == "a has no tensor fingerprints: 5 tensors could not be compared (the format did not expose their byte ranges)"
    assert t.summary == "contents of 5 of 5 tensors unknown (a has no tensor fingerprints)"
    assert d.verdict == "compatible; contents of 5 of 5 tensors unknown (a has no tensor fingerprints)"


async def test_identical_bytes_across_models(tmp_path, blobs):
    path = st(tmp_path / "m.safetensors", weights(3))
    a = await version(path, blobs, model="churn", version="2.0.0")
    b = await version(path, blobs, model="fraud", version="1.0.0", tags={"team": "risk"})
    d = diff_versions(a, b)
    assert d.same_bytes and d.verdict == "identical bytes"
    assert d.tags.added == {"team": "risk"}
    assert d.a.label == "churn:2.0.0" and d.b.label == "fraud:1.0.0"


# ----------------------------------------------------------------------------- signatures (ONNX)


async def test_onnx_input_reshaped_and_input_added_is_breaking(tmp_path, blobs):
    a = await version(write_onnx(tmp_path / "a.onnx", [("X", "FLOAT", ["batch", 4])], [("Y", "FLOAT", ["batch", 3])]), blobs)
    b = await version(write_onnx(tmp_path / "b.onnx", [("X", "FLOAT", ["batch", 8]), ("mask", "BOOL", ["batch", 8])],
                                 [("Y", "FLOAT", ["batch", 3]), ("score", "FLOAT", ["batch"])],
                                 initializers={"W": np.arange(12, dtype=np.float32).reshape(4, 3) * 2,
                                               "B": np.array([0.5, 1.5, 2.5], dtype=np.float32)}), blobs)  # fmt: skip
    d = diff_versions(a, b)
    sig = d.signature
    assert sig.verdict == "breaking"
    assert [s.name for s in sig.inputs.added] == ["mask"] and [s.name for s in sig.outputs.added] == ["score"]
    assert [c.name for c in sig.inputs.reshaped] == ["X"] and sig.inputs.reshaped[0].why == "dim 1: 4 -> 8 (breaking)"
    assert sig.reasons == ["input 'mask' added (inputs are required)", "input 'X' reshaped: dim 1: 4 -> 8 (breaking)"]
    assert d.tensors.counts.changed == 1 and d.tensors.counts.unchanged == 1  # W's values, B kept
    assert d.verdict == (
        "breaking: 1 input added, 1 input reshaped, 1 output added; fine-tune touched 1 of 2 tensors (80.0% of parameters)"
    )


async def test_onnx_widening_an_input_and_adding_an_output_is_compatible(tmp_path, blobs):
    a = await version(write_onnx(tmp_path / "a.onnx", [("X", "FLOAT", [1, 4])], [("Y", "FLOAT", [1, 3])]), blobs)
    b = await version(write_onnx(tmp_path / "b.onnx", [("X", "FLOAT", ["batch", 4])],
                                 [("Y", "FLOAT", [1, 3]), ("Z", "FLOAT", [1])]), blobs)  # fmt: skip
    d = diff_versions(a, b)
    assert d.signature.verdict == "compatible" and not d.signature.identical
    assert d.signature.inputs.reshaped[0].why == "dim 0: 1 -> batch (widened)"
    assert d.verdict == "compatible: 1 input reshaped, 1 output added; same weights (2 tensors)"


async def test_onnx_removed_output_and_retyped_input_break(tmp_path, blobs):
    a = await version(write_onnx(tmp_path / "a.onnx", [("X", "FLOAT", ["n", 4])], [("Y", "FLOAT", ["n", 3])]), blobs)
    b = await version(write_onnx(tmp_path / "b.onnx", [("X", "DOUBLE", ["n", 4])], [("Y2", "FLOAT", ["n", 3])]), blobs)
    sig = diff_versions(a, b).signature
    assert sig.verdict == "breaking"
    assert [s.name for s in sig.outputs.removed] == ["Y"] and [s.name for s in sig.outputs.added] == ["Y2"]
    assert [c.name for c in sig.inputs.retyped] == ["X"] and sig.inputs.retyped[0].why == "FLOAT -> DOUBLE"
    assert sig.reasons == ["input 'X' retyped: FLOAT -> DOUBLE", "output 'Y' removed"]


def test_shape_rules_for_inputs_and_outputs():
    assert shape_verdict([4, 4], ["n", 4], output=False) == (False, "dim 0: 4 -> n (widened)")
    assert shape_verdict(["n", 4], [None, 4], output=False) == (False, "dim 0: n -> ? (renamed)")
    assert shape_verdict(["batch", 4], [1, 4], output=False) == (True, "dim 0: batch -> 1 (breaking)")
    assert shape_verdict([4], [4, 1], output=False) == (True, "rank 1 -> 2")
    assert shape_verdict(["batch", 3], [1, 3], output=True) == (False, "dim 0: batch -> 1 (narrowed)")
    assert shape_verdict([1, 3], ["batch", 3], output=True) == (True, "dim 0: 1 -> batch (breaking)")


def test_dtypes_compare_by_meaning_across_formats():
    a = Signature(inputs=[TensorSpec(name="x", dtype="FLOAT", shape=[1])])
    b = Signature(inputs=[TensorSpec(name="x", dtype="float32", shape=[1])])
    assert signature_diff(a, b).verdict == "compatible" and signature_diff(a, b).identical


def test_no_signature_is_unknown():
    d = signature_diff(None, Signature(inputs=[TensorSpec(name="x", dtype="float32")]))
    assert d.verdict == "unknown" and d.note == "no signature recorded for a: inputs and outputs not compared"


# ----------------------------------------------------------------------------- GGUF


async def test_gguf_fine_tune_and_metadata(tmp_path, blobs):
    base = {f"blk.{i}.attn_q.weight": np.full((4, 8), i, dtype=np.float32) for i in range(6)}
    a = await version(write_gguf(tmp_path / "a.gguf", base, {"llama.block_count": 6}), blobs)
    tuned = dict(base) | {"blk.2.attn_q.weight": np.full((4, 8), 99, dtype=np.float32)}
    b = await version(write_gguf(tmp_path / "b.gguf", tuned, {"llama.block_count": 7}), blobs)
    d = diff_versions(a, b)
    assert d.tensors.counts.changed == 1 and d.tensors.counts.unchanged == 5
    assert d.verdict == "compatible; fine-tune touched 1 of 6 tensors (16.7% of parameters)"
    assert [(c.key, c.a, c.b) for c in d.format_metadata.changed] == [("kv.llama.block_count", 6, 7)]


# ----------------------------------------------------------------------------- metrics, params, lineage, env


def test_metrics_use_lower_is_better():
    d = metrics_diff({"loss": 0.30, "accuracy": 0.90, "f1": 0.5, "old": 1.0}, {"loss": 0.25, "accuracy": 0.89, "f1": 0.5,
                                                                               "auc": 0.7}, {"loss"})  # fmt: skip
    by = {m.name: m for m in d.items}
    assert (by["loss"].verdict, by["loss"].direction, by["loss"].delta) == ("better", "lower", -0.05)
    assert (by["accuracy"].verdict, by["accuracy"].delta) == ("worse", -0.01)
    assert by["f1"].verdict == "same" and by["auc"].verdict == "added" and by["old"].verdict == "removed"
    assert (d.better, d.worse) == (1, 1)


async def test_lineage_names_the_ingredient_that_differs(tmp_path, blobs):
    path = st(tmp_path / "m.safetensors", weights(2))
    a = await version(path, blobs)
    b = await probe(path, blobs)
    b = b.model_copy(update={"params": {"lr": 0.01}, "lineage": b.lineage.model_copy(update={"run_id": "other"})})
    lin = diff_versions(a, b).lineage
    assert not lin.same_run and lin.differs == ["params"]
    assert [i.name for i in lin.ingredients if i.same] == ["code_sha", "data_version", "env_lock_digest"]
    assert diff_versions(a, b).verdict == "identical bytes; run differs: params"


async def test_probe_reads_sidecar_lock_and_run_identity(tmp_path, blobs):
    run = tmp_path / "run"
    path = st(run / "model.safetensors", weights(2))
    (run / "model.safetensors.regd.json").write_text(json.dumps(
        {"name": "fraud", "metrics": {"auc": 0.9}, "params": {"lr": 0.1}, "data_version": "ds-7", "code_sha": "abc1234",
         "parent": "fraud:1.0.0"}))  # fmt: skip
    (run / "requirements.txt").write_text("numpy==1.26.4\ntorch==2.3.0\n")
    v = await probe(path, blobs, name="ignored")
    assert (v.model, v.version, v.metrics, v.params) == ("fraud", UNREGISTERED, {"auc": 0.9}, {"lr": 0.1})
    assert v.lineage.data_version == "ds-7" and v.lineage.code_sha == "abc1234" and v.lineage.parent == "fraud:1.0.0"
    assert v.env_lock is not None and v.env_lock.packages == {"numpy": "1.26.4", "torch": "2.3.0"}
    assert list(blobs.digests()) == []  # the lock was parsed, not stored


async def test_probe_errors_name_the_path(tmp_path, blobs):
    with pytest.raises(NotFound, match="no such file"):
        await probe(tmp_path / "nope.safetensors", blobs)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidParams, match="holds no files"):
        await probe(empty, blobs)


def test_env_packages_and_runtime():
    a = EnvLock(digest="a" * 64, kind="uv.lock", packages={"torch": "2.3.0", "Scikit_Learn": "1.5.0", "numpy": "2.0.0",
                                                              "six": "1.16.0", "mylib": "git+https://x/y@abc"})  # fmt: skip
    b = EnvLock(digest="b" * 64, kind="uv.lock", packages={"torch": "2.4.1", "scikit-learn": "1.5.0", "numpy": "1.26.4",
                                                              "rich": "13.7.0", "mylib": "git+https://x/y@def"})  # fmt: skip
    d = env_diff(a, b, Runtime(python="3.11.7", cuda="12.1", gpus=["A100"]), Runtime(python="3.12.1", cuda="12.1", gpus=["H100"]))
    assert d.lock == "different"
    assert [(c.name, c.a, c.b) for c in d.upgraded] == [("torch", "2.3.0", "2.4.1")]
    assert [(c.name, c.a, c.b) for c in d.downgraded] == [("numpy", "2.0.0", "1.26.4")]
    assert [c.name for c in d.changed] == ["mylib"]
    assert d.added == {"rich": "13.7.0"} and d.removed == {"six": "1.16.0"} and d.unchanged == 1
    assert [(c.key, c.a, c.b) for c in d.runtime] == [("python", "3.11.7", "3.12.1"), ("gpus", ["A100"], ["H100"])]
    assert env_diff(None, b, None, None).lock == "missing_a"


@pytest.mark.parametrize("a, b, order", [
    ("1.0", "1.0.0", 0), ("1.9", "1.10", 1), ("2.0.0rc1", "2.0.0", 1), ("2.0.0", "2.0.0.post1", 1),
    ("1.0.dev1", "1.0a1", 1), ("1.0a1", "1.0b1", 1), ("2.4.1+cu121", "2.4.0", -1), ("1!1.0", "2.0", -1),
    ("abc", "1.0", None),
])  # fmt: skip
def test_version_order_with_and_without_packaging(a, b, order):
    assert compare_versions_fallback(a, b) == order
    assert compare_versions(a, b) == order


# ----------------------------------------------------------------------------- files and descriptors


async def test_hugging_face_directories_compare_config_json_key_by_key(tmp_path, blobs):
    a_dir = write_hf_dir(tmp_path / "a")
    b_dir = write_hf_dir(tmp_path / "b", tokenizer=True)
    config = json.loads((b_dir / "config.json").read_text())
    config |= {"num_hidden_layers": 2, "rope_theta": 10000.0}
    (b_dir / "config.json").write_text(json.dumps(config))
    a, b = await version(a_dir, blobs), await version(b_dir, blobs)
    d = diff_versions(a, b, descriptors=diff_files.read_descriptors(a, b, blobs))
    f = d.files
    assert [x.path for x in f.added] == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]
    assert [x.path for x in f.changed] == ["config.json"] and f.unchanged == 2 and not f.removed
    (desc,) = f.descriptors
    assert desc.path == "config.json" and desc.note is None
    assert desc.keys.added == {"rope_theta": 10000.0}
    assert [(c.key, c.a, c.b) for c in desc.keys.changed] == [("num_hidden_layers", 1, 2)]
    assert d.verdict == "compatible; same weights (3 tensors); files: 1 changed, 3 added"


async def test_mlflow_directories_compare_mlmodel_and_a_pruned_side_says_so(tmp_path, blobs):
    a_dir = write_mlflow_dir(tmp_path / "a")
    b_dir = write_mlflow_dir(tmp_path / "b")
    text = (b_dir / "MLmodel").read_text().replace("mlflow_version: 2.14.1", "mlflow_version: 2.16.0")
    (b_dir / "MLmodel").write_text(text)
    a, b = await version(a_dir, blobs), await version(b_dir, blobs)
    descriptors = diff_files.read_descriptors(a, b, blobs)
    (desc,) = diff_versions(a, b, descriptors=descriptors).files.descriptors
    assert [(c.key, c.a, c.b) for c in desc.keys.changed] == [("mlflow_version", "2.14.1", "2.16.0")]
    # a changed on disk since it was "registered": its bytes are no longer what the digest says
    (a_dir / "MLmodel").write_text(text + "\n# edited\n")
    (desc,) = diff_versions(a, b, descriptors=diff_files.read_descriptors(a, b, blobs)).files.descriptors
    assert desc.note == "a: the registered bytes of MLmodel are gone (pruned, or changed on disk)"


async def test_unknown_formats_still_diff_files_metadata_and_environment(tmp_path, blobs):
    (tmp_path / "a.bin").write_bytes(b"\x00\x01" * 100)
    (tmp_path / "b.bin").write_bytes(b"\x00\x02" * 100)
    lock_a = EnvLock(digest="a" * 64, kind="requirements.txt", packages={"torch": "2.3.0"})
    lock_b = EnvLock(digest="b" * 64, kind="requirements.txt", packages={"torch": "2.4.0"})
    a = await version(tmp_path / "a.bin", blobs, env_lock=lock_a, description="first")
    b = await version(tmp_path / "b.bin", blobs, env_lock=lock_b, description="second")
    d = diff_versions(a, b)
    assert (d.a.format, d.b.format) == ("unknown", "unknown")
    assert d.signature.verdict == "unknown" and not d.tensors.available
    assert d.files.changed[0].path == "a.bin -> b.bin"
    assert d.description.changed and d.env.upgraded[0].name == "torch"
    assert d.verdict == "signature unknown; bytes differ; env: packages 1 upgraded"


def test_the_cli_tells_a_path_from_a_reference(tmp_path, monkeypatch):
    from regd.cli.diff_cmds import b_target

    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    (tmp_path / "fraud").mkdir()
    assert b_target("fraud:production") == {"b": {"name": "fraud", "version": "production"}}
    assert b_target("fraud@champion") == {"b": {"name": "fraud", "version": "@champion"}}
    assert b_target("churn") == {"b": {"name": "churn", "version": "latest"}}
    assert b_target("model.safetensors") == {"b_path": str(tmp_path / "model.safetensors")}
    assert b_target("fraud") == {"b_path": str(tmp_path / "fraud")}  # on disk: ./fraud; the model is fraud:latest
    assert b_target("./out/model.safetensors") == {"b_path": str(tmp_path / "out/model.safetensors")}
