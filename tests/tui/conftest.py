"""regtui against a real daemon: seeded registries, the app on a client to them, waiting helpers.

The seeded registry is fixed (file contents, metrics, order of registration) so that versions,
digests and tables come out the same every run; the app gets a fixed time format so that snapshots
do not depend on the clock. ``created_by`` is the user running the tests (the daemon takes it from
the socket's peer credentials, not from the caller).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file
from textual.pilot import Pilot
from textual.worker import WorkerState

from regd.client import AsyncClient, Client
from regtui.app import RegTUI
from tests.conftest import DaemonHandle, make_daemon

BACKGROUND = {"live", "status"}
"""Worker groups that never finish (the event feed) or tick on their own (the status poll)."""

USER = pwd.getpwuid(os.getuid()).pw_name
"""Who the daemon says registered the seeded versions."""

POLICY = '[policy."fraud*".production]\nmin = { auc = 0.85 }\n'
"""fraud needs auc >= 0.85 for production: 1.5.0 and later pass, earlier ones fail."""


def fixed_time(_: datetime) -> str:
    return "2026-01-02 03:04"


def write_weights(path: Path, seed: int, n: int = 4) -> Path:
    """A real safetensors file whose bytes (and so digest) depend only on ``seed``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"dense.weight": (np.arange(n, dtype=np.float32) + seed).reshape(1, n),
               "dense.bias": np.full((1,), seed, dtype=np.float32)}, str(path))  # fmt: skip
    return path


def seed_registry(client: Client, root: Path) -> None:
    """fraud: 12 versions (auc 0.80 .. 0.91), 1.2.0 then 1.5.0 in production, 1.9.0 staging, @champion;
    churn: 3 versions, no stage."""
    for i in range(12):
        client.register(write_weights(root / f"fraud/run-{i}/model.safetensors", i), name="fraud",
                        metrics={"auc": round(0.80 + 0.01 * i, 4), "loss": round(0.5 - 0.02 * i, 4)},
                        params={"lr": 0.001 * (i + 1)}, tags={"team": "risk"})  # fmt: skip
    for i in range(3):
        client.register(write_weights(root / f"churn/run-{i}/model.safetensors", 100 + i), name="churn",
                        metrics={"f1": round(0.6 + 0.05 * i, 4)})  # fmt: skip
    client.promote("fraud", "1.2.0", "production", "first release", force=True)
    client.promote("fraud", "1.5.0", "production", "better auc")
    client.promote("fraud", "1.9.0", "staging", "candidate")
    client.set_alias("fraud", "champion", "1.5.0", reason="best so far")


def start_seeded(base: Path, extra_config: str = POLICY) -> DaemonHandle:
    handle = make_daemon(base, extra_config)
    handle.start()
    seed_registry(handle.client(), base / "files")
    return handle


@pytest.fixture(scope="session")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonHandle]:
    """A seeded daemon shared by the tests that only look (never change it in a test that uses this)."""
    handle = start_seeded(tmp_path_factory.mktemp("seeded"))
    yield handle
    handle.stop()
    shutil.rmtree(handle.socket.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def seeded_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data dir of a seeded daemon, stopped: ``fresh`` copies it instead of seeding again."""
    handle = start_seeded(tmp_path_factory.mktemp("template"))
    handle.stop()
    shutil.rmtree(handle.socket.parent, ignore_errors=True)
    return handle.data_dir


@pytest.fixture
def fresh(daemon_factory: Callable[..., DaemonHandle], seeded_data: Path) -> DaemonHandle:
    """A seeded daemon of this test's own, for tests that promote, archive, register ...

    A copy of the seeded registry (the same rows, digests and audit chain), so only the daemon's
    start is paid per test; its stored paths point into the template, which lives for the session.
    """
    handle = daemon_factory(POLICY, start=False)
    shutil.copytree(seeded_data, handle.data_dir, ignore=shutil.ignore_patterns("regd.lock", "*.sock"))
    handle.start()
    return handle


class RecordingClient(AsyncClient):
    """The real client, remembering which methods were called with which params."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
        self.calls.append((method, dict(params or {})))
        return await super().call(method, params, **kw)


def make_app(handle: DaemonHandle, **kwargs: Any) -> RegTUI:
    """The app on a (recording) client to ``handle``, with a fixed clock face and no autostart."""
    kwargs.setdefault("autostart", False)
    kwargs.setdefault("time_format", fixed_time)
    return RegTUI(RecordingClient(handle.socket, timeout=30), **kwargs)


async def settle(pilot: Pilot, timeout: float = 30.0) -> None:
    """Wait until every worker but the background ones has finished, and the screen has caught up."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        busy = [w for w in app.workers if w.group not in BACKGROUND and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        quiet = 0 if busy else quiet + 1
        if quiet >= 3:  # three quiet looks in a row: nothing is about to start another worker
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError(f"workers still busy after {timeout} s: {busy}")


async def wait_until(pilot: Pilot, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``predicate`` while the app runs (no timed assertion: the deadline only stops a hang)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def screen_text(app: RegTUI) -> str:
    """Everything on the current screen, as plain text (what a person would read)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(segment.text for segment in strip) for strip in strips)


def notifications(app: RegTUI) -> list[str]:
    return [f"{n.title}: {n.message}" for n in app._notifications]


async def run_in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a blocking client call (the daemon side of a test) without stopping the app's loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)
