"""Sidecars, trainer outputs and explicit fields: priority, validation, and bad files that only warn."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from regd.ingest.sidecar import (
    SIDECAR_SUFFIX,
    CollectedMetadata,
    SidecarFields,
    is_sidecar_or_companion,
    load_metadata,
)


def write_json(path: Path, value: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def messages(meta: CollectedMetadata) -> str:
    assert all(w.code == "sidecar_invalid" for w in meta.warnings)
    return "\n".join(w.message for w in meta.warnings)


TRAINER_STATE = {
    "best_global_step": 1000,
    "best_metric": 0.9312,
    "best_model_checkpoint": "out/checkpoint-1000",
    "epoch": 3.0,
    "eval_steps": 500,
    "global_step": 1500,
    "is_hyper_param_search": False,
    "is_local_process_zero": True,
    "is_world_process_zero": True,
    "log_history": [
        {"epoch": 1.0, "grad_norm": 3.21, "learning_rate": 4.5e-05, "loss": 0.612, "step": 500},
        {"epoch": 1.0, "eval_accuracy": 0.9012, "eval_loss": 0.31, "eval_runtime": 12.3, "step": 500},
        {"epoch": 2.0, "eval_accuracy": 0.9312, "eval_loss": 0.25, "eval_runtime": 12.1, "step": 1000},
        {"epoch": 3.0, "step": 1500, "total_flos": 1.2e15, "train_loss": 0.41, "train_runtime": 812.5},
    ],
    "logging_steps": 500,
    "max_steps": 1500,
    "num_input_tokens_seen": 0,
    "num_train_epochs": 3,
    "save_steps": 500,
    "stateful_callbacks": {
        "TrainerControl": {
            "args": {"should_epoch_stop": False, "should_evaluate": False, "should_save": True},
            "attributes": {},
        }
    },
    "total_flos": 1.2e15,
    "train_batch_size": 16,
    "trial_name": None,
    "trial_params": None,
}

ALL_RESULTS = {
    "epoch": 3.0,
    "eval_accuracy": 0.9287,
    "eval_loss": 0.2551,
    "eval_runtime": 12.06,
    "eval_samples": 872,
    "eval_samples_per_second": 72.3,
    "total_flos": 1.2e15,
    "train_loss": 0.4102,
    "train_runtime": 812.5,
    "train_samples": 67349,
}


def hf_output_dir(root: Path) -> Path:
    """A Hugging Face ``Trainer`` output directory after ``save_model`` and ``save_metrics``."""
    out = root / "sst2-bert"
    write_json(out / "config.json", {"architectures": ["BertForSequenceClassification"], "model_type": "bert"})
    (out / "model.safetensors").write_bytes(b"\0" * 8)
    write_json(out / "trainer_state.json", TRAINER_STATE)
    write_json(out / "all_results.json", ALL_RESULTS)
    write_json(out / "eval_results.json", {"epoch": 3.0, "eval_accuracy": 0.9287, "eval_loss": 0.2551})
    write_json(out / "train_results.json", {"train_loss": 0.4102})
    return out


def test_hugging_face_output_directory(tmp_path: Path) -> None:
    out = hf_output_dir(tmp_path)
    meta = load_metadata(out, is_dir=True)
    assert meta.warnings == []
    assert meta.fields.metrics["eval_accuracy"] == 0.9287  # the final results beat the best metric's name-less value
    assert meta.fields.metrics["best_metric"] == 0.9312
    assert meta.fields.metrics["global_step"] == 1500.0
    assert meta.fields.metrics["train_samples"] == 67349.0
    assert meta.fields.params == {}
    assert meta.sources == [str(out / "trainer_state.json"), str(out / "all_results.json"), str(out / "eval_results.json")]


def test_best_metric_takes_the_name_of_metric_for_best_model(tmp_path: Path) -> None:
    write_json(tmp_path / "run" / "trainer_state.json", {**TRAINER_STATE, "metric_for_best_model": "f1"})
    (tmp_path / "run" / "model.pt").write_bytes(b"x")
    meta = load_metadata(tmp_path / "run" / "model.pt", is_dir=False)
    assert meta.fields.metrics["eval_f1"] == 0.9312
    assert "best_metric" not in meta.fields.metrics


def test_checkpoint_directory_reads_its_own_state_and_the_run_above(tmp_path: Path) -> None:
    out = hf_output_dir(tmp_path)
    checkpoint = out / "checkpoint-1000"
    write_json(checkpoint / "trainer_state.json", {**TRAINER_STATE, "global_step": 1000, "epoch": 2.0})
    meta = load_metadata(checkpoint, is_dir=True)
    assert meta.fields.metrics["global_step"] == 1000.0  # inside beats the directory above
    assert meta.fields.metrics["eval_accuracy"] == 0.9287  # from the run's all_results.json


def test_lightning_checkpoint_reads_hparams_from_the_version_directory(tmp_path: Path) -> None:
    version = tmp_path / "lightning_logs" / "version_3"
    write(
        version / "hparams.yaml",
        """
        lr: 0.0003
        batch_size: 64
        betas: !!python/tuple
        - 0.9
        - 0.999
        backbone: resnet50
        schedule:
          warmup_steps: 500
          milestones: [10, 20]
        started: 2024-05-01
        """,
    )
    ckpt = version / "checkpoints" / "epoch=9-step=1000.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"PK")
    meta = load_metadata(ckpt, is_dir=False)
    assert meta.warnings == []
    assert meta.fields.params == {
        "lr": 0.0003,
        "batch_size": 64,
        "betas": [0.9, 0.999],
        "backbone": "resnet50",
        "schedule": {"warmup_steps": 500, "milestones": [10, 20]},
        "started": "2024-05-01",
    }


def test_python_object_tags_in_hparams_are_malformed_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write(
        tmp_path / "hparams.yaml",
        f"""
        lr: 0.1
        args: !!python/object/apply:os.system ["touch {marker}"]
        """,
    )
    write_json(tmp_path / "metrics.json", {"val_loss": 0.2})
    (tmp_path / "model.ckpt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.ckpt", is_dir=False)
    assert not marker.exists()
    assert meta.fields.params == {}
    assert meta.fields.metrics == {"val_loss": 0.2}  # the other sources still apply
    text = messages(meta)
    assert str(tmp_path / "hparams.yaml") in text and "python/object/apply" in text


def test_sidecar_wins_over_trainer_outputs_key_by_key(tmp_path: Path) -> None:
    out = hf_output_dir(tmp_path)
    write_json(
        tmp_path / f"sst2-bert{SIDECAR_SUFFIX}",
        {"name": "sst2", "metrics": {"eval_accuracy": 0.95, "latency_ms": 12}, "tags": {"team": "nlp"}},
    )
    meta = load_metadata(out, is_dir=True)
    assert meta.fields.name == "sst2"
    assert meta.fields.metrics["eval_accuracy"] == 0.95
    assert meta.fields.metrics["latency_ms"] == 12.0
    assert meta.fields.metrics["eval_loss"] == 0.2551
    assert meta.fields.tags == {"team": "nlp"}


def test_file_sidecar_beats_the_shared_regd_json(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    write_json(tmp_path / "regd.json", {"name": "fraud", "description": "shared", "tags": {"stage": "exp"}})
    write_json(tmp_path / f"model.onnx{SIDECAR_SUFFIX}", {"description": "mine", "version": "2.1.0"})
    meta = load_metadata(model, is_dir=False)
    assert (meta.fields.name, meta.fields.description, meta.fields.version) == ("fraud", "mine", "2.1.0")
    assert meta.fields.tags == {"stage": "exp"}


def test_directory_sidecars_inside_and_beside(tmp_path: Path) -> None:
    model = tmp_path / "bert"
    model.mkdir()
    write_json(model / "regd.json", {"name": "inside", "data_version": "v1"})
    write_json(tmp_path / "bert.regd.json", {"name": "beside"})
    write_json(model / "metrics.json", {"f1": 0.7})
    write_json(tmp_path / "metrics.json", {"f1": 0.6, "auc": 0.8})
    meta = load_metadata(model, is_dir=True)
    assert meta.fields.name == "beside"
    assert meta.fields.data_version == "v1"
    assert meta.fields.metrics == {"f1": 0.7, "auc": 0.8}


def test_metrics_and_params_files(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04N.")
    write_json(tmp_path / "metrics.json", {"train": {"loss": 0.12}, "val": {"loss": 0.2, "auc": 0.91}, "note": "ok"})
    write_json(tmp_path / "params.json", {"n_estimators": 300, "max_depth": None, "features": ["a", "b"]})
    meta = load_metadata(tmp_path / "model.pkl", is_dir=False)
    assert meta.fields.metrics == {"train.loss": 0.12, "val.loss": 0.2, "val.auc": 0.91}
    assert meta.fields.params == {"n_estimators": 300, "max_depth": None, "features": ["a", "b"]}
    assert "metric 'note'" in messages(meta)


def test_explicit_fields_win(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    write_json(tmp_path / "model.pt.regd.json", {"name": "a", "version": "1.0.0", "metrics": {"acc": 0.5, "f1": 0.4}})
    meta = load_metadata(
        tmp_path / "model.pt",
        is_dir=False,
        explicit={"name": "b", "metrics": {"acc": 0.9}, "description": None},
    )
    assert meta.fields.name == "b"
    assert meta.fields.version == "1.0.0"
    assert meta.fields.metrics == {"acc": 0.9, "f1": 0.4}
    assert meta.sources[-1] == "explicit"


@pytest.mark.parametrize(
    ("explicit", "problem"),
    [
        ({"version": "1.2"}, "MAJOR.MINOR.PATCH"),
        ({"name": "has space"}, "not a valid name"),
        ({"metrics": {"acc": float("nan")}}, "not a finite number"),
        ({"metrics": {"ok": True}}, "not a number"),
        ({"tags": {"bad key!": "x"}}, "not a valid tag name"),
        ({"parent": "fraud"}, "name:MAJOR.MINOR.PATCH"),
        ({"code_sha": "not-hex"}, "commit hash"),
        ({"unknown_field": 1}, "Extra inputs are not permitted"),
        ({"params": {"blob": "x" * 70_000}}, "larger than 64 KiB"),
    ],
)
def test_invalid_explicit_fields_raise(tmp_path: Path, explicit: dict[str, Any], problem: str) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    with pytest.raises(ValueError, match=problem) as caught:
        load_metadata(tmp_path / "model.pt", is_dir=False, explicit=explicit)
    assert isinstance(caught.value, ValidationError)  # the API answers these with -32602


def test_malformed_sidecar_json_warns_with_position_and_the_rest_applies(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    (tmp_path / "model.pt.regd.json").write_text('{\n  "name": "fraud",\n  "version": 1.0.0\n}\n')
    write_json(tmp_path / "metrics.json", {"auc": 0.8})
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    assert meta.fields.name is None
    assert meta.fields.metrics == {"auc": 0.8}
    assert len(meta.warnings) == 1
    assert meta.warnings[0].message.startswith(str(tmp_path / "model.pt.regd.json"))
    assert "invalid JSON at line 3, column" in meta.warnings[0].message


def test_bad_fields_are_dropped_one_by_one(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    (tmp_path / "model.pt.regd.json").write_text(
        json.dumps(
            {
                "name": "fraud detector",
                "version": "v1.2.0",
                "description": "gradient boosted",
                "metrics": {"auc": 0.93, "loss": float("nan"), "flag": True, "recall": "0.8"},
                "tags": {"team": "risk", "owner/email": "a@b.c", "bad key": "x", "n": 3},
                "parent": "fraud:1.0.0",
                "code_sha": "8F1C2D3E",
                "env_lock": "../env/uv.lock",
                "created_by": "alice",
                "data_version": "2024-06-01",
                "favourite_colour": "blue",
            }
        )
    )
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    fields = meta.fields
    assert fields.name is None and fields.version is None
    assert fields.description == "gradient boosted"
    assert fields.metrics == {"auc": 0.93}
    assert fields.tags == {"team": "risk", "owner/email": "a@b.c"}
    assert fields.parent == "fraud:1.0.0"
    assert fields.code_sha == "8f1c2d3e"
    assert fields.env_lock == str(tmp_path.parent / "env" / "uv.lock")
    assert (fields.created_by, fields.data_version) == ("alice", "2024-06-01")
    text = messages(meta)
    for expected in (
        "name: 'fraud detector' is not a valid name",
        "version: 'v1.2.0' is not a MAJOR.MINOR.PATCH version",
        "metric 'loss': nan is not a finite number",
        "metric 'flag': True is not a number",
        "metric 'recall': '0.8' is not a number",
        "tag 'bad key'",
        "tag 'n': expected a string",
        "unknown key 'favourite_colour' ignored",
    ):
        assert expected in text
    assert len(meta.warnings) == 1  # one warning per file, naming every problem


def test_infinity_and_huge_integers_are_not_metrics(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"PK")
    (tmp_path / "m.pt.regd.json").write_text('{"metrics": {"a": Infinity, "b": -Infinity, "c": 1e999, "d": %s, "e": 2}}' % ("9" * 400))
    meta = load_metadata(tmp_path / "m.pt", is_dir=False)
    assert meta.fields.metrics == {"e": 2.0}
    assert messages(meta).count("not a finite number") == 4


def test_nan_in_trainer_results_is_reported(tmp_path: Path) -> None:
    (tmp_path / "all_results.json").write_text('{"eval_loss": NaN, "eval_accuracy": 0.5, "note": "x"}')
    (tmp_path / "model.bin").write_bytes(b"x")
    meta = load_metadata(tmp_path / "model.bin", is_dir=False)
    assert meta.fields.metrics == {"eval_accuracy": 0.5}
    assert "metric 'eval_loss': nan is not a finite number" in messages(meta)
    assert "note" not in messages(meta)  # a trainer's non-numbers are skipped quietly


def test_params_too_deep_or_too_big(tmp_path: Path) -> None:
    deep: Any = "leaf"
    for _ in range(20):
        deep = {"d": deep}
    shallow: Any = "leaf"
    for _ in range(10):
        shallow = [shallow]
    write_json(tmp_path / "params.json", {"deep": deep, "big": "x" * 70_000, "ok": shallow})
    (tmp_path / "model.pt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    assert list(meta.fields.params) == ["ok"]
    text = messages(meta)
    assert "param 'deep': nested deeper than 16 levels" in text
    assert "param 'big': larger than 64 KiB as JSON" in text


def test_params_from_all_sources_share_one_budget(tmp_path: Path) -> None:
    write_json(tmp_path / "params.json", {f"p{i}": "x" * 1000 for i in range(40)})
    write_json(tmp_path / "model.pt.regd.json", {"params": {f"s{i}": "y" * 1000 for i in range(40)}})
    (tmp_path / "model.pt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    assert all(f"s{i}" in meta.fields.params for i in range(40))  # the sidecar's win the budget
    assert len(json.dumps(meta.fields.params, separators=(",", ":"))) <= 64 * 1024
    assert "params dropped" in messages(meta) and str(tmp_path / "params.json") in messages(meta)


@pytest.mark.timeout(20)  # expanded, this alias bomb is 9**12 nodes
def test_yaml_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 12):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    (tmp_path / "hparams.yaml").write_text("\n".join(lines) + "\n")
    (tmp_path / "model.ckpt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.ckpt", is_dir=False)
    assert "a11" not in meta.fields.params
    assert "larger than 64 KiB" in messages(meta)


def test_deeply_nested_json_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    (tmp_path / "model.pt.regd.json").write_text("[" * 100_000 + "]" * 100_000)
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    assert "nested too deeply" in messages(meta)


def test_oversized_and_odd_sources_warn(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    with (tmp_path / "model.pt.regd.json").open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    (tmp_path / "metrics.json").mkdir()
    os.mkfifo(tmp_path / "params.json")
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    text = messages(meta)
    assert f"{tmp_path / 'model.pt.regd.json'}: cannot read: larger than 1 MiB" in text
    assert f"{tmp_path / 'metrics.json'}: cannot read: not a regular file" in text
    assert f"{tmp_path / 'params.json'}: cannot read: not a regular file" in text


def test_wrong_top_level_types_warn(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    write_json(tmp_path / "model.pt.regd.json", ["name", "fraud"])
    write_json(tmp_path / "regd.json", {"metrics": [0.9], "tags": "team=risk", "params": 3})
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    assert meta.fields == SidecarFields()
    text = messages(meta)
    assert "expected a JSON object, found list" in text
    assert "metrics: expected an object, found list" in text
    assert "tags: expected an object, found str" in text


def test_root_keeps_the_lookup_inside_the_watch_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    write_json(tmp_path / "all_results.json", {"eval_accuracy": 0.1})  # above the root
    (root / "model.pt").write_bytes(b"PK")
    assert load_metadata(root / "model.pt", is_dir=False, root=root).fields.metrics == {}
    assert load_metadata(root / "model.pt", is_dir=False).fields.metrics == {"eval_accuracy": 0.1}


def test_nothing_there(tmp_path: Path) -> None:
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    meta = load_metadata(tmp_path / "model.gguf", is_dir=False)
    assert meta == CollectedMetadata(fields=SidecarFields(), warnings=[], sources=[])


def test_explicit_env_lock_is_relative_to_the_artifact(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.pt", is_dir=False, explicit={"env_lock": "locks/uv.lock"})
    assert meta.fields.env_lock == str(tmp_path / "locks" / "uv.lock")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("model.pt.regd.json", True),
        ("regd.json", True),
        ("metrics.json", True),
        ("params.json", True),
        ("all_results.json", True),
        ("eval_results.json", True),
        ("train_results.json", True),
        ("trainer_state.json", True),
        ("hparams.yaml", True),
        ("model.pt", False),
        ("config.json", False),
        ("model.safetensors.index.json", False),
    ],
)
def test_is_sidecar_or_companion(tmp_path: Path, name: str, expected: bool) -> None:
    assert is_sidecar_or_companion(tmp_path / "runs" / name) is expected
    assert is_sidecar_or_companion(name) is expected


def test_recursive_yaml_is_refused(tmp_path: Path) -> None:
    (tmp_path / "hparams.yaml").write_text("loop: &loop [*loop]\nlr: 0.1\n")
    (tmp_path / "model.ckpt").write_bytes(b"PK")
    meta = load_metadata(tmp_path / "model.ckpt", is_dir=False)
    assert meta.fields.params == {"lr": 0.1}
    assert "param 'loop': nested deeper than 16 levels" in messages(meta)


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["name", "version", "metrics", "params", "tags", "parent", "code_sha", "env_lock", "x", "1.0.0"]),
        children,
        max_size=5,
    ),
    max_leaves=25,
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sidecar=_JSON, results=_JSON)
def test_file_sources_never_raise(tmp_path: Path, sidecar: Any, results: Any) -> None:
    (tmp_path / "model.pt").write_bytes(b"PK")
    (tmp_path / "model.pt.regd.json").write_text(json.dumps(sidecar))
    (tmp_path / "all_results.json").write_text(json.dumps(results))
    meta = load_metadata(tmp_path / "model.pt", is_dir=False)
    SidecarFields.model_validate(meta.fields.model_dump())  # what comes out is always valid
