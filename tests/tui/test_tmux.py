"""One test in a real terminal: regtui in tmux, a model dropped into a watched folder shows up on screen."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from regd.client import Client
from tests.tui.conftest import write_weights
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")


def capture(session: str) -> str:
    out = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False)
    return out.stdout


def test_a_model_dropped_into_a_watched_folder_appears_while_the_app_is_open(daemon, tmp_path: Path):
    watched = tmp_path / "runs"
    watched.mkdir()
    Client(daemon.socket).call("watch.add", {"path": str(watched), "settle_ms": 200})
    session = f"regtui-test-{os.getpid()}"
    command = f"{sys.executable} -m regtui --socket {daemon.socket} --no-start"
    env = {**os.environ, "TERM": "xterm-256color", "REGD_SOCKET": str(daemon.socket)}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], env=env, check=True)
    try:
        wait_for(lambda: "0 models" in capture(session), timeout=30, what="regtui showing the empty registry")
        # the first directory under the watch root names the model (DESIGN, "Auto-registration")
        write_weights(watched / "vision" / "run-1" / "model.safetensors", 42)
        row = re.compile(r"^\s*vision\s+—\s+1\.0\.0\s+1\b", re.MULTILINE)
        screen = wait_for(lambda: (s := capture(session)) and row.search(s) and s, timeout=60,
                          what="the vision row in the models table")  # fmt: skip
        assert "1 model" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)


def test_regd_demo_opens_the_tui_on_a_registry_that_fills_while_you_watch(tmp_path: Path):
    """The README's first command: `regd demo` starts a daemon, drops models, and opens regtui."""
    session = f"regd-demo-test-{os.getpid()}"
    demo_dir = tmp_path / "demo"
    command = f"{sys.executable} -m regd demo --dir {demo_dir} --pace 0.2"
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("REGD_SOCKET", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], env=env, check=True)
    try:
        # the three demo models appear in the models table without a key press
        for name in ("fraud", "churn", "tiny-bert"):
            wait_for(lambda name=name: re.search(rf"^\s*{name}\s", capture(session), re.MULTILINE), timeout=90,
                     what=f"the {name} row in the demo's models table")  # fmt: skip
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        # quitting the TUI stops the demo daemon (no --keep): its socket goes away with it
        wait_for(lambda: subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0,
                 timeout=30, what="regd demo exiting after the TUI quits")  # fmt: skip
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)
        # a killed session leaves the demo's own daemon behind: its command line names this test's dir
        subprocess.run(["pkill", "-f", f"regd serve --config {demo_dir}"], check=False, capture_output=True)
