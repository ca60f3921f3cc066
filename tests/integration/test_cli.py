"""The `regd` command as scripts use it: JSON output, exit codes, helpful refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.modelfiles import write_safetensors


def regd(daemon, *args, input=None):
    env = daemon.env() if daemon is not None else None
    return subprocess.run([sys.executable, "-m", "regd", *args], env=env, capture_output=True, text=True, timeout=60,
                          input=input)  # fmt: skip


def weights(path, seed=0):
    rng = np.random.default_rng(seed)
    return write_safetensors(path, {"w": rng.standard_normal((3, 3)).astype(np.float32)})


def test_register_ls_show_path_json(daemon, tmp_path):
    f = weights(tmp_path / "m.safetensors")
    out = regd(daemon, "register", str(f), "--name", "fraud", "--metric", "accuracy=0.93", "--param", "lr=0.001",
               "--param", "layers=[64, 64]", "--tag", "team=risk", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    registered = json.loads(out.stdout)
    assert registered["created"] and registered["version"]["params"] == {"lr": 0.001, "layers": [64, 64]}
    models = json.loads(regd(daemon, "ls", "--json").stdout)
    assert [m["name"] for m in models["items"]] == ["fraud"]
    shown = json.loads(regd(daemon, "show", "fraud:latest", "--json").stdout)
    assert shown["metrics"] == {"accuracy": 0.93}
    path = regd(daemon, "path", "fraud").stdout.strip()
    assert open(path, "rb").read() == f.read_bytes()
    human = regd(daemon, "show", "fraud")
    assert human.returncode == 0 and "fraud 1.0.0" in human.stdout


def test_search_alias_tag_history_audit(daemon, tmp_path):
    regd(daemon, "register", str(weights(tmp_path / "a.safetensors", 1)), "--name", "m", "--metric", "auc=0.95")
    assert regd(daemon, "alias", "set", "m", "champion", "1.0.0").returncode == 0
    assert regd(daemon, "tag", "m@champion", "reviewed=yes").returncode == 0
    hits = json.loads(regd(daemon, "search", "metrics.auc > 0.9 and tags.reviewed = 'yes'", "--json").stdout)
    assert [h["version"] for h in hits["items"]] == ["1.0.0"]
    assert regd(daemon, "promote", "m:1.0.0", "production", "--reason", "ok").returncode == 0
    assert "production" in regd(daemon, "history", "m").stdout
    assert json.loads(regd(daemon, "audit", "--json").stdout)["items"][0]["action"] == "version.stage"
    assert regd(daemon, "audit", "verify").returncode == 0


def test_exit_codes(daemon, tmp_path):
    assert regd(daemon, "show", "ghost").returncode == 1  # not found: refused
    bad = regd(daemon, "search", "metrics.auc >")
    assert bad.returncode == 2 and "^" in bad.stderr  # usage: the caret under the error
    assert regd(daemon, "frobnicate").returncode == 2
    assert regd(daemon, "promote", "m:1.0.0", "production").returncode == 2  # --reason is required
    env_gone = regd(None, "--socket", str(tmp_path / "nothing.sock"), "ls")
    assert env_gone.returncode == 3 and "regd start" in env_gone.stderr


def test_gc_asks_before_deleting_and_scripts_must_say_yes(daemon, tmp_path):
    orphan = daemon.data_dir / "objects" / "sha256" / "cd" / ("cd" + "1" * 62)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    refused = regd(daemon, "gc")
    assert refused.returncode == 2 and "--yes" in refused.stderr and orphan.exists()
    assert "would free 1 blobs" in regd(daemon, "gc", "--dry-run").stdout
    assert regd(daemon, "gc", "--yes").returncode == 0 and not orphan.exists()


def test_help_teaches(daemon):
    top = regd(daemon, "--help").stdout
    assert "regd register" in top and "exit codes" in top
    assert "regd search \"metrics.accuracy" in regd(daemon, "search", "--help").stdout


def test_status_start_stop(daemon_factory):
    d = daemon_factory(start=False)
    assert regd(d, "status").returncode == 3
    started = regd(d, "start")
    assert started.returncode == 0, started.stderr
    assert "socket" in started.stdout
    assert json.loads(regd(d, "status", "--json").stdout)["pid"] > 0
    assert regd(d, "start").returncode == 0  # already running: says so
    assert regd(d, "stop").returncode == 0
    assert regd(d, "status").returncode == 3
