"""The client and one-shot CLI stay light: no server, store, watcher or UI modules on their path."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["aiosqlite", "watchfiles", "textual", "regd.store", "regd.api", "regd.ingest", "regd.lifecycle"]


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_client_loads_nothing_heavy():
    mods = loaded_after("import regd.client")
    assert not {m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY)}
    assert "pydantic" not in mods  # typed helpers import it when first used


def test_the_cli_parser_loads_nothing_heavy():
    mods = loaded_after("from regd.cli import build_parser; build_parser()")
    assert not {m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY)}
    assert not {"pydantic", "rich"} & mods


def test_import_linter_contracts_hold():
    import shutil

    import pytest

    lint = shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed")
    out = subprocess.run([lint], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
