"""``lineage.get`` and ``regd lineage`` against a real daemon: data, commit, env, parents, children, deployments."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from regd.cli import main
from regd.errors import NotFound


def st(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.full((4, 4), seed, dtype=np.float32)}, str(path))
    return path


def git_repo(root: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x")
    root.mkdir(parents=True)
    for args in (["init", "-q", "-b", "main"], ["commit", "-q", "--allow-empty", "-m", "train"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def family(daemon_factory, tmp_path):
    """fraud 1.0.0 -> fraud 1.1.0 (production, @champion) -> distilled 1.0.0, with data, commit and lock."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    deploy = tmp_path / "deploy"
    daemon = daemon_factory(f'deploy_dir = "{deploy}"\n')
    client = daemon.client()
    repo = tmp_path / "repo"
    sha = git_repo(repo)
    (repo / "requirements.txt").write_text("torch==2.3.0\nnumpy==1.26.4\n")
    client.register(st(repo / "r1/model.safetensors", 1), name="fraud", data_version="ds-1", parent="base:0.9.0")
    client.register(st(repo / "r2/model.safetensors", 2), name="fraud", data_version="ds-2", parent="fraud:1.0.0")
    client.register(st(repo / "r3/model.safetensors", 3), name="distilled", parent="fraud:1.1.0")
    client.promote("fraud", "1.1.0", "staging", reason="try it")
    client.promote("fraud", "1.1.0", "production", reason="beats 1.0.0")
    client.set_alias("fraud", "champion", "1.1.0", reason="best so far")
    deadline = time.monotonic() + 10
    while not ((deploy / "fraud/production").is_symlink() and (deploy / "fraud/@champion").is_symlink()):
        assert time.monotonic() < deadline, "deploy pointers did not appear"
        time.sleep(0.02)
    return daemon, client, sha, deploy


def test_the_graph_of_a_version_in_production(family):
    daemon, client, sha, deploy = family
    g = client.call("lineage.get", {"name": "fraud", "version": "production"})
    assert g["root"] == "version:fraud:1.1.0"
    nodes = {n["id"]: n for n in g["nodes"]}
    edges = {(e["source"], e["target"], e["kind"]) for e in g["edges"]}
    root = "version:fraud:1.1.0"
    assert {("dataset:ds-2", root, "data"), ("dataset:ds-1", "version:fraud:1.0.0", "data"),
            (f"commit:{sha}", root, "code"), (f"commit:{sha}", "version:fraud:1.0.0", "code"),
            ("version:fraud:1.0.0", root, "parent"), ("version:base:0.9.0", "version:fraud:1.0.0", "parent"),
            (root, "version:distilled:1.0.0", "parent")} <= edges  # fmt: skip
    commit = nodes[f"commit:{sha}"]
    assert commit["data"]["branch"] == "main" and commit["data"]["sha"] == sha and commit["data"]["source"] == "git"
    env = next(n for n in g["nodes"] if n["kind"] == "env")
    assert env["data"]["packages"] == {"torch": "2.3.0", "numpy": "1.26.4"} and (env["id"], root, "env") in edges
    assert nodes["version:base:0.9.0"]["data"] == {"ref": "base:0.9.0", "missing": True}
    assert nodes[root]["data"]["stage"] == "production" and nodes[root]["data"]["aliases"] == ["champion"]
    deployments = sorted(n["label"].split()[0] for n in g["nodes"] if n["kind"] == "deployment")
    assert deployments == ["pointer", "pointer", "production", "staging"]
    production = next(n for n in g["nodes"] if n["kind"] == "deployment" and n["data"].get("stage") == "production")
    assert production["data"]["current"] and production["data"]["reason"] == "beats 1.0.0"
    pointers = {n["data"]["name"] for n in g["nodes"] if n["id"].startswith("pointer:")}
    assert pointers == {"production", "@champion"}
    (alias,) = [n for n in g["nodes"] if n["kind"] == "alias"]
    assert alias["label"] == "@champion (current)" and alias["data"]["events"][0]["reason"] == "best so far"


def test_a_parent_shows_its_descendants(family):
    _, client, _, _ = family
    g = client.call("lineage.get", {"name": "fraud", "version": "1.0.0"})
    kinds = {(e["source"], e["target"], e["kind"]) for e in g["edges"]}
    # children two generations down, no deployments of its own
    assert ("version:fraud:1.0.0", "version:fraud:1.1.0", "parent") in kinds
    assert ("version:fraud:1.1.0", "version:distilled:1.0.0", "parent") in kinds
    assert not [n for n in g["nodes"] if n["kind"] in ("deployment", "alias")]


def test_the_cli_prints_a_tree(family, capsys):
    daemon, _, sha, _ = family
    assert main(["lineage", "fraud@champion", "--socket", str(daemon.socket)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("fraud 1.1.0  production  run ")
    for expected in ("data  ds-2", f"commit  {sha[:12]} on main", "env  requirements.txt (2 packages)",
                     "parent  fraud 1.0.0", "parent  base:0.9.0 (not registered)", "children", "distilled 1.0.0",
                     "deployments", "@champion (current)", "production since "):  # fmt: skip
        assert expected in out, expected


def test_unknown_versions_are_not_found(family):
    _, client, _, _ = family
    with pytest.raises(NotFound) as exc:
        client.call("lineage.get", {"name": "fraud", "version": "7.0.0"})
    assert exc.value.code == -32001
