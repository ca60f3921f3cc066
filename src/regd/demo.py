"""The demo registry: real model files written into a watched folder over a few seconds.

Everything here is what a user's training script would do: write a safetensors file or a
Hugging Face directory, with a sidecar of metrics beside it, into a folder regd watches. The
files are real (valid safetensors headers and float32 data), written with the standard library
only, so ``regd demo`` needs nothing beyond regd itself.
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path

DEMO_CONFIG = """\
# the demo registry's config (written by `regd demo`)
data_dir = "{data}"
socket = "{socket}"
deploy_dir = "{deploy}"
log_level = "info"

[[watch]]
path = "{runs}"
settle_ms = 300
dir_settle_ms = 1500

[policy."fraud".production]
min = {{ accuracy = 0.9 }}
max_regression = {{ accuracy = 0.02 }}
require = ["signature", "env_lock"]
"""

REQUIREMENTS = "numpy==2.1.3\nsafetensors==0.4.5\nscikit-learn==1.5.2\ntorch==2.5.1\n"


def safetensors_bytes(tensors: dict[str, tuple[list[int], list[float]]], metadata: dict[str, str] | None = None) -> bytes:
    """A valid safetensors file of float32 tensors: 8-byte header length, JSON header, data."""
    header: dict[str, object] = {}
    data = bytearray()
    for name, (shape, values) in tensors.items():
        start = len(data)
        data += struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [start, len(data)]}
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format aligns the data section to 8 bytes
    return struct.pack("<Q", len(raw)) + raw + bytes(data)


def _weights(rng: random.Random, layers: list[tuple[str, list[int]]]) -> dict[str, tuple[list[int], list[float]]]:
    return {name: (shape, [rng.gauss(0, 0.1) for _ in range(math.prod(shape))]) for name, shape in layers}


def write_atomically(path: Path, data: bytes) -> None:
    """Write-then-rename, as careful trainers do (regd ignores the ``.tmp`` name)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sidecar(path: Path, **fields: object) -> None:
    path.with_name(path.name + ".regd.json").write_text(json.dumps(fields, indent=2))


def steps(runs: Path, seed: int = 7) -> Iterator[tuple[str, Callable[[], None]]]:
    """The demo's drops, in order: (what happens, a function that writes it)."""
    rng = random.Random(seed)
    mlp = [("fc1.weight", [16, 8]), ("fc1.bias", [16]), ("fc2.weight", [2, 16]), ("fc2.bias", [2])]
    for i, acc in enumerate([0.912, 0.927, 0.934]):
        def drop(i: int = i, acc: float = acc) -> None:
            run = runs / "fraud" / f"run-{i + 1}"
            run.mkdir(parents=True, exist_ok=True)
            (run / "requirements.txt").write_text(REQUIREMENTS)
            target = run / "model.safetensors"
            _sidecar(target, metrics={"accuracy": acc, "auc": round(acc + 0.03, 3)}, params={"lr": 10 ** -(i + 2), "epochs": 10 + 5 * i},
                     tags={"team": "risk"}, description=f"fraud detector, run {i + 1}")  # fmt: skip
            write_atomically(target, safetensors_bytes(_weights(rng, mlp), {"format": "pt"}))

        yield f"fraud run {i + 1}: accuracy {acc}", drop

    def churn(version: int, width: int, auc: float) -> Callable[[], None]:
        def drop() -> None:
            run = runs / "churn" / f"v{version}"
            run.mkdir(parents=True, exist_ok=True)
            target = run / "churn.safetensors"
            _sidecar(target, metrics={"auc": auc, "loss": round(1 - auc, 3)}, tags={"team": "growth"})
            write_atomically(target, safetensors_bytes(_weights(rng, [("dense.weight", [width, 12]), ("dense.bias", [width])])))

        return drop

    yield "churn v1", churn(1, 8, 0.81)
    yield "churn v2 (a wider layer: a new MAJOR version)", churn(2, 12, 0.84)

    def hf() -> None:
        model = runs / "tiny-bert" / "checkpoint-500"
        model.mkdir(parents=True, exist_ok=True)
        config = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 16,
                  "num_hidden_layers": 2, "vocab_size": 64, "torch_dtype": "float32"}  # fmt: skip
        (model / "config.json").write_text(json.dumps(config, indent=2))
        time.sleep(0.5)  # a trainer writes the config first, the weights later
        layers = [("embeddings.word_embeddings.weight", [64, 16]), ("classifier.weight", [2, 16]), ("classifier.bias", [2])]
        write_atomically(model / "model.safetensors", safetensors_bytes(_weights(rng, layers), {"format": "pt"}))
        (model / "all_results.json").write_text(json.dumps({"eval_accuracy": 0.88, "eval_loss": 0.31}))
        (model / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(64)))

    yield "tiny-bert: a Hugging Face directory, written file by file", hf


def write_config(base: Path, socket: Path) -> Path:
    """Lay out a demo dir (data, runs, deploy) and write its config; return the config's path."""
    for sub in ("data", "runs", "deploy"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    config = base / "regd.toml"
    config.write_text(
        DEMO_CONFIG.format(data=base / "data", socket=socket, deploy=base / "deploy", runs=base / "runs")
    )
    return config
