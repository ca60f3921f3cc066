"""Recognise a Hugging Face ``save_pretrained`` directory, check its shards, read config.json facts."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

from regd.ingest.formats.info import DirectoryStatus, FormatInfo
from regd.ingest.formats.limits import FormatError, bounded, contained, read_json_file

CONFIG_FILES = ("config.json", "adapter_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".ckpt")
INDEX_SUFFIX = ".index.json"
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "special_tokens_map.json")
"""Often saved by a separate ``tokenizer.save_pretrained`` call after the model."""
CONFIG_KEYS = (
    "architectures", "model_type", "torch_dtype", "dtype", "hidden_size", "intermediate_size",
    "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
    "max_position_embeddings", "n_embd", "n_layer", "n_head", "d_model", "transformers_version",
    "peft_type", "base_model_name_or_path", "r", "task_type",
)  # fmt: skip
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<ext>\.[A-Za-z0-9]+)$")
MAX_SHARDS = 100_000


def _top(names: Collection[str]) -> set[str]:
    return {n for n in names if "/" not in n}


def is_huggingface(names: Collection[str]) -> bool:
    """Tell whether the names look like a save_pretrained directory: a config plus weights or an index."""
    top = _top(names)
    has_config = any(c in top for c in CONFIG_FILES)
    has_weights = any(n.endswith(WEIGHT_SUFFIXES) or n.endswith(INDEX_SUFFIX) for n in top)
    return has_config and has_weights


def index_files(names: Collection[str]) -> list[str]:
    """List the top-level ``*.index.json`` shard indexes."""
    return sorted(n for n in _top(names) if n.endswith(INDEX_SUFFIX))


def shard_names(root: Path, index: str) -> list[str]:
    """Return the shard files an index's weight_map names, in first-seen order."""
    doc = _read_json(root, index)
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict):
        raise FormatError(f"{index} has no weight_map")
    shards: list[str] = []
    seen: set[str] = set()
    for shard in weight_map.values():
        if not isinstance(shard, str) or not _inside(shard):
            raise FormatError(f"{index} names an invalid shard {str(shard)[:80]!r}")
        if shard not in seen:
            seen.add(shard)
            shards.append(shard)
            if len(shards) > MAX_SHARDS:
                raise FormatError(f"{index} names more than {MAX_SHARDS} shards")
    return shards


def _read_json(root: Path, relpath: str) -> Any:
    path = contained(root, relpath)
    if path is None:
        raise FormatError(f"{relpath} links outside the model directory")
    return read_json_file(path, relpath)


def _inside(relpath: str) -> bool:
    path = PurePosixPath(relpath)
    return bool(path.parts) and not path.is_absolute() and ".." not in path.parts


def huggingface_requirements(root: Path, names: Collection[str]) -> DirectoryStatus:
    """Require every shard an index names, and every ``-0000k-of-0000n`` sibling of a shard present."""
    present = set(names)
    missing: list[str] = []
    for index in index_files(names):
        try:
            shards = shard_names(root, index)
        except FormatError:
            missing.append(index)  # still being written: wait for a readable one
            continue
        missing.extend(s for s in shards if s not in present and s not in missing)
    for name in sorted(_top(names)):
        match = _SHARD.match(name)
        if not match or int(match["total"]) > MAX_SHARDS:
            continue
        total = int(match["total"])
        for i in range(1, total + 1):
            sibling = f"{match['stem']}-{i:05d}-of-{total:05d}{match['ext']}"
            if sibling not in present and sibling not in missing:
                missing.append(sibling)
    later = [n for n in TOKENIZER_FILES if n not in present]
    return DirectoryStatus(complete=not missing, missing=missing, expected_later=later)


def read_config(root: Path, info: FormatInfo) -> dict[str, Any]:
    """Record config.json's architecture facts in the metadata; return them for the signature."""
    facts: dict[str, Any] = {}
    for name in CONFIG_FILES:
        path = contained(root, name)
        if path is None or not path.is_file():
            continue
        try:
            config = read_json_file(path, name)
        except FormatError as exc:
            info.format_error(str(exc))
            continue
        if not isinstance(config, dict):
            info.format_error(f"{name} is not a JSON object")
            continue
        for key in CONFIG_KEYS:
            if key in config and key not in facts:
                facts[key] = bounded(config[key])
    if "dtype" in facts and "torch_dtype" not in facts:
        facts["torch_dtype"] = facts["dtype"]
    facts.pop("dtype", None)
    info.metadata.update(facts)
    return facts


def read_indexes(root: Path, names: Collection[str], info: FormatInfo) -> dict[str, str]:
    """Record each index's total_size and shard count; return the merged weight_map."""
    merged: dict[str, str] = {}
    for index in index_files(names):
        try:
            doc = _read_json(root, index)
        except FormatError as exc:
            info.format_error(str(exc))
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("weight_map"), dict):
            info.format_error(f"{index} has no weight_map")
            continue
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        if isinstance(metadata.get("total_size"), int):
            info.metadata.setdefault("total_size", metadata["total_size"])
        weight_map = {str(k): v for k, v in doc["weight_map"].items() if isinstance(v, str)}
        info.metadata.setdefault("shards", len(set(weight_map.values())))
        merged.update(weight_map)
    return merged
