"""The README documents every CLI verb, RPC method and config key; config/regd.toml every key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from regd.cli import build_parser
from regd.config import Config, parse_config
from regd.protocol import METHODS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
DEFAULT_TOML = (ROOT / "config" / "regd.toml").read_text()


def verbs() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")  # noqa: SLF001
    return list(sub.choices)


@pytest.mark.parametrize("verb", verbs())
def test_every_cli_verb_is_in_the_readme(verb):
    assert re.search(rf"`regd[^`]*\b{verb}\b", README) or f"/ `{verb}`" in README or f"`{verb}`" in README, verb


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_rpc_method_is_in_the_readme(method):
    assert f"`{method}`" in README, method


def _keys(model: type, prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields") and name not in ("watch", "policy"):
            out += _keys(ann, f"{prefix}{name}.")
        else:
            out.append(f"{prefix}{name}")
    return out


@pytest.mark.parametrize("key", _keys(Config))
def test_every_config_key_is_documented(key):
    leaf = key.split(".")[-1]
    forms = (f"[[{leaf}]]", f"[{leaf}.")
    assert re.search(rf"^#?\s*{re.escape(leaf)}\b", DEFAULT_TOML, re.M) or any(f in DEFAULT_TOML for f in forms), key
    assert any(form in README for form in (f"`{key}`", f"`{leaf}`", f"[[{leaf}]]", f"[{leaf}."))


def test_the_shipped_config_is_exactly_the_defaults():
    shipped = parse_config(DEFAULT_TOML)
    defaults = Config()
    assert shipped.model_dump(exclude={"data_dir"}) == defaults.model_dump(exclude={"data_dir"})
    tomllib.loads(DEFAULT_TOML)


def test_the_commented_examples_in_the_config_parse():
    """The [[watch]] and [policy] examples, uncommented, are a valid config."""
    blocks, current = [], None
    for line in DEFAULT_TOML.splitlines():
        if line.startswith(("# [[watch]]", "# [policy")):
            current = []
            blocks.append(current)
        if current is not None:
            if not line.startswith("#"):
                current = None
                continue
            body = line[2:]
            if not body.startswith("#") and body.strip():
                current.append(body)
    config = parse_config("\n".join("\n".join(b) for b in blocks))
    assert config.watch[0].ignore and config.policy["fraud*"]["production"].approvals == 1
