"""Model directories: layout detection, completeness, combined reads, symlinks."""

from __future__ import annotations

import os

import numpy as np
import pytest

from regd.ingest.formats import detect_directory_layout, directory_requirements, read_directory, read_file
from tests.modelfiles import (
    pb_field,
    savedmodel_pb,
    tree_names,
    write_hf_dir,
    write_mlflow_dir,
    write_onnx,
    write_safetensors,
    write_savedmodel_dir,
)


def test_layout_detection(tmp_path):
    assert detect_directory_layout(tmp_path, ["MLmodel", "model.pkl", "config.json"]) == "mlflow"
    assert detect_directory_layout(tmp_path, ["saved_model.pb", "variables/variables.index"]) == "tensorflow-savedmodel"
    assert detect_directory_layout(tmp_path, ["config.json", "model.safetensors"]) == "huggingface"
    assert detect_directory_layout(tmp_path, ["config.json", "model.safetensors.index.json"]) == "huggingface"
    assert detect_directory_layout(tmp_path, ["adapter_config.json", "adapter_model.safetensors"]) == "huggingface"
    assert detect_directory_layout(tmp_path, ["config.json"]) is None  # weights not there yet
    assert detect_directory_layout(tmp_path, ["sub/config.json", "sub/model.safetensors"]) is None
    assert detect_directory_layout(tmp_path, ["model.pt", "notes.txt"]) is None


def test_hf_single_file(tmp_path):
    root = write_hf_dir(tmp_path / "hf")
    names = tree_names(root)
    assert detect_directory_layout(root, names) == "huggingface"
    status = directory_requirements(root, "huggingface", names)
    assert status.complete and status.missing == []
    assert status.expected_later == ["tokenizer_config.json", "tokenizer.json", "special_tokens_map.json"]
    info = read_directory(root, "huggingface", names)
    assert info.format == "huggingface" and info.warnings == []
    assert info.metadata["architectures"] == ["LlamaForCausalLM"]
    assert info.metadata["model_type"] == "llama" and info.metadata["torch_dtype"] == "float32"
    assert info.metadata["vocab_size"] == 3 and info.metadata["param_count"] == 28
    assert info.signature.extra == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert {t.file for t in info.tensors} == {"model.safetensors"}
    data = (root / "model.safetensors").read_bytes()
    embed = next(t for t in info.tensors if t.name == "model.embed_tokens.weight")
    assert data[embed.offset : embed.offset + embed.nbytes] == np.arange(12, dtype=np.float32).tobytes()


@pytest.mark.parametrize("weights", ["safetensors", "bin"])
def test_hf_sharded(tmp_path, weights):
    root = write_hf_dir(tmp_path / "hf", sharded=True, tokenizer=True, weights=weights)
    names = tree_names(root)
    status = directory_requirements(root, "huggingface", names)
    assert status.complete and status.expected_later == []
    info = read_directory(root, "huggingface", names)
    assert info.warnings == []
    assert info.metadata["shards"] == 2 and info.metadata["total_size"] == 112
    files = {t.name: t.file for t in info.tensors}
    assert files["lm_head.weight"].endswith(f"-00002-of-00002.{weights}")
    for t in info.tensors:
        raw = (root / t.file).read_bytes()[t.offset : t.offset + t.nbytes]
        assert len(raw) == t.nbytes

    partial = [n for n in names if "00002-of" not in n]
    status = directory_requirements(root, "huggingface", partial)
    assert not status.complete
    assert status.missing == [next(n for n in names if "00002-of" in n and not n.endswith(".json"))]


def test_hf_shards_without_index_are_required_by_name(tmp_path):
    status = directory_requirements(tmp_path, "huggingface", ["config.json", "model-00001-of-00003.safetensors"])
    assert status.missing == ["model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"]


def test_hf_unreadable_index_means_wait(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-0')
    status = directory_requirements(tmp_path, "huggingface", ["config.json", "model.safetensors.index.json"])
    assert not status.complete and status.missing == ["model.safetensors.index.json"]


def test_hf_index_naming_a_shard_outside_is_not_trusted(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"a": "../../etc/passwd"}}')
    status = directory_requirements(tmp_path, "huggingface", ["config.json", "model.safetensors.index.json"])
    assert not status.complete


def test_hf_index_that_lies_about_shard_contents(tmp_path):
    root = write_hf_dir(tmp_path / "hf", sharded=True)
    index = root / "model.safetensors.index.json"
    index.write_text(index.read_text().replace('"lm_head.weight"', '"ghost.weight"'))
    info = read_directory(root, "huggingface", tree_names(root))
    assert any(w.code == "format_error" and "ghost.weight" in w.message for w in info.warnings)


def test_mlflow_columns(tmp_path):
    root = write_mlflow_dir(tmp_path / "ml")
    names = tree_names(root)
    assert detect_directory_layout(root, names) == "mlflow"
    assert directory_requirements(root, "mlflow", names).complete
    info = read_directory(root, "mlflow", names)
    assert info.format == "mlflow" and info.warnings == []
    sig = info.signature
    assert [(s.name, s.dtype) for s in sig.inputs] == [
        ("sepal_length", "double"), ("petal_count", "long"), ("tags", "array<string>"),
    ]  # fmt: skip
    assert [(s.name, s.dtype) for s in sig.outputs] == [("0", "long")]
    assert sig.extra["flavors"] == ["python_function", "sklearn"]
    assert sig.extra["params"][0]["name"] == "threshold"
    meta = info.metadata
    assert meta["run_id"] == "5d2a6f0c9b8e4f7a8c1d2e3f4a5b6c7d"
    assert meta["model_uuid"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert meta["utc_time_created"] == "2024-06-01 12:00:00.000000"
    assert meta["requirements"] == ["mlflow==2.14.1", "scikit-learn==1.5.0", "numpy==1.26.4"]
    assert meta["python_version"] == "3.11.7"
    assert meta["flavors"]["sklearn"]["pickled_model"] == "model.pkl"
    assert meta["files"] == {"model.pkl": "pickle"}


def test_mlflow_tensors_and_unsafe_model(tmp_path):
    root = write_mlflow_dir(tmp_path / "ml", signature="tensors", unsafe=True)
    info = read_directory(root, "mlflow", tree_names(root))
    assert [(s.name, s.dtype, s.shape) for s in info.signature.inputs] == [("image", "float32", [None, 28, 28])]
    assert [(s.name, s.dtype, s.shape) for s in info.signature.outputs] == [("0", "float32", [None, 10])]
    assert info.unsafe_imports == ["cloudpickle.cloudpickle._make_function"]
    assert any(w.code == "unsafe_pickle" and w.message.startswith("model.pkl: ") for w in info.warnings)


def test_mlflow_requirements(tmp_path):
    root = write_mlflow_dir(tmp_path / "ml", env=False, model_file=False)
    status = directory_requirements(root, "mlflow", ["MLmodel"])
    assert not status.complete and status.missing == ["model.pkl"]
    assert status.expected_later == ["conda.yaml", "python_env.yaml", "requirements.txt"]
    status = directory_requirements(root, "mlflow", ["MLmodel", "model.pkl"])
    assert status.complete
    assert directory_requirements(root, "mlflow", ["model.pkl"]).missing == ["MLmodel"]


def test_mlflow_data_directory_counts_when_it_has_files(tmp_path):
    root = tmp_path / "ml"
    root.mkdir()
    (root / "MLmodel").write_text("flavors:\n  pytorch:\n    model_data: data\n  python_function:\n    data: data\n")
    assert directory_requirements(root, "mlflow", ["MLmodel"]).missing == ["data"]
    assert directory_requirements(root, "mlflow", ["MLmodel", "data/model.pth"]).complete


@pytest.mark.parametrize(
    "text",
    [
        "flavors: [unclosed",
        "a: &x [1, 2]\nb: *x\n",  # aliases are refused outright
        "- just\n- a list\n",
        "signature:\n  inputs: '[{not json'\n",
    ],
)
def test_mlflow_bad_mlmodel(tmp_path, bounded, text):
    root = tmp_path / "ml"
    root.mkdir()
    (root / "MLmodel").write_text(text)
    info = bounded(read_directory, root, "mlflow", ["MLmodel"])
    assert info.format == "mlflow"
    assert any(w.code == "format_error" for w in info.warnings)
    single = read_file(root / "MLmodel")
    assert single.format == "mlflow" and any(w.code == "format_error" for w in single.warnings)


def test_mlmodel_read_alone(tmp_path):
    root = write_mlflow_dir(tmp_path / "ml")
    info = read_file(root / "MLmodel")
    assert info.format == "mlflow" and info.warnings == []
    assert len(info.signature.inputs) == 3 and info.metadata["requirements"][0] == "mlflow==2.14.1"


def test_savedmodel(tmp_path):
    root = write_savedmodel_dir(tmp_path / "sm")
    names = tree_names(root)
    assert detect_directory_layout(root, names) == "tensorflow-savedmodel"
    assert directory_requirements(root, "tensorflow-savedmodel", names).complete
    info = read_directory(root, "tensorflow-savedmodel", names)
    assert info.format == "tensorflow-savedmodel" and info.warnings == []
    assert [(s.name, s.dtype, s.shape) for s in info.signature.inputs] == [("x", "float32", [None, 4])]
    assert [(s.name, s.dtype, s.shape) for s in info.signature.outputs] == [("y", "float32", [None, 3])]
    assert info.signature.extra["signature"] == "serving_default"
    assert info.metadata["tags"] == ["serve"] and info.metadata["tensorflow_version"] == "2.16.1"


def test_savedmodel_requirements(tmp_path):
    status = directory_requirements(tmp_path, "tensorflow-savedmodel", ["saved_model.pb", "variables/variables.index"])
    assert status.missing == ["variables/variables.data-00000-of-00001"]
    status = directory_requirements(
        tmp_path, "tensorflow-savedmodel", ["saved_model.pb", "variables/variables.data-00001-of-00002"]
    )
    assert status.missing == ["variables/variables.index", "variables/variables.data-00000-of-00002"]
    assert directory_requirements(tmp_path, "tensorflow-savedmodel", ["saved_model.pb"]).complete


@pytest.mark.parametrize("raw", [b"", b"garbage bytes here", pb_field(1, 1), savedmodel_pb()[:-7]])
def test_savedmodel_garbage(tmp_path, bounded, raw):
    root = tmp_path / "sm"
    root.mkdir()
    (root / "saved_model.pb").write_bytes(raw)
    info = bounded(read_directory, root, "tensorflow-savedmodel", ["saved_model.pb"])
    assert any(w.code == "format_error" for w in info.warnings)


def test_symlinks_outside_are_not_followed(tmp_path):
    outside = write_safetensors(tmp_path / "secret.safetensors")
    root = write_hf_dir(tmp_path / "hf")
    os.symlink(outside, root / "extra.safetensors")
    os.symlink(tmp_path, root / "up")
    inside_target = root / "model.safetensors"
    os.symlink(inside_target, root / "alias.safetensors")
    names = [*tree_names(root), "up/secret.safetensors", "../secret.safetensors"]
    info = read_directory(root, "huggingface", names)
    files = {t.file for t in info.tensors}
    assert files == {"model.safetensors", "alias.safetensors"}
    skipped = [w.message for w in info.warnings if w.code == "symlink_skipped"]
    assert len(skipped) == 4  # extra.safetensors, the "up" link itself, up/secret..., ../secret...
    assert any("extra.safetensors" in m for m in skipped)


def test_companion_files_with_model_extensions_do_not_warn(tmp_path):
    root = write_hf_dir(tmp_path / "hf")
    (root / "vocab.bin").write_bytes(b"\x00\x01\x02 not a zip nor a pickle")  # .bin is not only torch
    info = read_directory(root, "huggingface", tree_names(root))
    assert info.warnings == []
    assert info.metadata["files"]["vocab.bin"] == "unknown"


def test_descriptor_symlinks_outside_are_not_read(tmp_path):
    elsewhere = write_mlflow_dir(tmp_path / "elsewhere")
    root = tmp_path / "ml"
    root.mkdir()
    os.symlink(elsewhere / "MLmodel", root / "MLmodel")
    status = directory_requirements(root, "mlflow", ["MLmodel"])
    assert status.missing == []  # the outside MLmodel's model.pkl is never asked for
    info = read_directory(root, "mlflow", ["MLmodel"])
    assert info.signature is None or not info.signature.inputs
    assert [w.code for w in info.warnings] == ["symlink_skipped"]


def test_a_plain_directory_reads_its_model_files(tmp_path):
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "weights").mkdir()
    write_safetensors(root / "weights" / "a.safetensors")
    write_onnx(root / "model.onnx")
    (root / "notes.txt").write_text("hello")
    names = tree_names(root)
    assert detect_directory_layout(root, names) is None
    info = read_directory(root, "directory", names)
    assert info.format == "directory" and info.warnings == []
    assert {t.file for t in info.tensors} == {"weights/a.safetensors", "model.onnx"}
    assert [s.name for s in info.signature.inputs] == ["X"]
    assert info.signature.extra == {"opset": {"ai.onnx": 17}}
