"""Shared fixtures: a real ``regd serve`` process on a temporary data dir and short socket path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from regd.client import Client
from regd.errors import Unreachable


@dataclass
class DaemonHandle:
    """A running daemon and where it lives."""

    data_dir: Path
    socket: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    clients: list[Client] = field(default_factory=list)

    def client(self, timeout: float | None = 30.0) -> Client:
        c = Client(self.socket, timeout=timeout)
        self.clients.append(c)
        return c

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["REGD_SOCKET"] = str(self.socket)
        env["REGD_CONFIG"] = str(self.config_path)
        return env

    def start(self, wait: float = 20.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "regd", "serve", "--config", str(self.config_path)],
            env=self.env(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"regd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.status()
                return
            except Unreachable:
                time.sleep(0.02)
        raise RuntimeError(f"regd did not answer within {wait} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        for c in self.clients:
            c.close()
        self.clients.clear()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def write_config(self, extra: str = "") -> None:
        self.config_path.write_text(
            f'data_dir = "{self.data_dir}"\nsocket = "{self.socket}"\nlog_level = "debug"\n{extra}\n'
        )


def make_daemon(tmp_path: Path, extra_config: str = "") -> DaemonHandle:
    # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer
    sock_dir = Path(tempfile.mkdtemp(prefix="regd-", dir="/tmp"))
    handle = DaemonHandle(
        data_dir=tmp_path / "data",
        socket=sock_dir / "regd.sock",
        config_path=tmp_path / "regd.toml",
        log_path=tmp_path / "regd.log",
    )
    handle.write_config(extra_config)
    return handle


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[callable]:
    """Make (and afterwards stop) daemons with extra config text."""
    handles: list[DaemonHandle] = []

    def make(extra_config: str = "", start: bool = True, sub: str = "d") -> DaemonHandle:
        base = tmp_path / f"{sub}{len(handles)}"
        base.mkdir()
        h = make_daemon(base, extra_config)
        handles.append(h)
        if start:
            h.start()
        return h

    yield make
    for h in handles:
        h.stop()
        shutil.rmtree(h.socket.parent, ignore_errors=True)


@pytest.fixture
def daemon(daemon_factory: callable) -> DaemonHandle:
    """A running daemon with default settings."""
    return daemon_factory()


@pytest.fixture
def client(daemon: DaemonHandle) -> Client:
    return daemon.client()
