"""The daemon: owns the data dir, the catalog, the blob store, the event bus and the socket.

Start-up order matters for safety: the data-dir lock first (one daemon per data dir), then the
catalog (migrations), then the socket (clients only connect to a ready daemon), then the
watchers. Shutdown runs it backwards, so in-flight writes finish before the catalog closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from regd import __version__
from regd.api.events import EventBus
from regd.api.server import SocketServer, notify_systemd
from regd.config import Config, ConfigError, load_config
from regd.errors import Conflict
from regd.protocol import HookFailure
from regd.store import open_blobs, open_catalog

log = logging.getLogger(__name__)


class DataDirLock:
    """An flock on ``<data_dir>/regd.lock``: held for the daemon's life, released by the kernel on death."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "regd.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise Conflict(
                f"another regd (pid {holder or '?'}) already serves {self.path.parent}", {"pid": holder}
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Daemon:
    """Everything a handler may reach, and the daemon's life cycle."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started_at = time.monotonic()
        self.bus = EventBus()
        self.catalog = open_catalog(config.catalog, config.data_dir)
        self.blobs = open_blobs(config.objects, config.data_dir)
        self.lock = DataDirLock(config.data_dir)
        self.server = SocketServer(self, config.socket_path)
        self.hook_failures: deque[HookFailure] = deque(maxlen=50)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        from regd.api.effects import Effects
        from regd.api.registrar import Registrar

        self.registrar = Registrar(self)
        self.effects = Effects(self)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started_at

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task the daemon owns and cancels on shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def record_hook_failure(self, model: str, kind: str, detail: str) -> None:
        self.hook_failures.append(HookFailure(at=datetime.now(UTC), model=model, kind=kind, detail=detail))

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock.acquire()
        try:
            await asyncio.to_thread(self.blobs.cleanup_temp)
            await self.catalog.open()
            # events for changes other daemons make too (a shared catalog); hooks and webhooks only for
            # our own, so they run once, on the daemon that made the change; but this host's deploy
            # pointers follow every change, wherever it was made (a serving host watches them)
            self.catalog.add_commit_listener(self.bus.publish_audit, remote=True, wanted=lambda: self.bus.subscribers > 0)
            self.catalog.add_commit_listener(self.effects.on_commit)
            self.catalog.add_commit_listener(self.effects.on_remote_commit, remote=True, local=False,
                                             wanted=lambda: self.config.deploy_dir is not None)  # fmt: skip
            await self.effects.sync_all()
            await self.registrar.start()  # watching before answering: a file dropped at once is seen
            await self.server.start()
            self.spawn(self.catalog.follow(), "catalog.follow")
        except BaseException:
            with contextlib.suppress(Exception):
                await self.registrar.stop()
            await self._close_quietly()
            raise
        log.info("regd %s serving %s on %s", __version__, self.config.data_dir, self.config.socket_path)

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT or ``stop()``; SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        await self.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload(), "reload"))
        notify_systemd("READY=1")
        try:
            await self._stop.wait()
        finally:
            notify_systemd("STOPPING=1")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.shutdown()

    def stop(self) -> None:
        self._stop.set()

    async def reload(self) -> str:
        """Re-read the config; a broken one is refused and the one in force stays."""
        try:
            fresh = await asyncio.to_thread(load_config, self.config.source)
        except ConfigError as exc:
            log.error("config reload refused, keeping the one in force: %s", exc)
            raise
        self.config.policy = fresh.policy
        self.config.api.roles = fresh.api.roles
        self.config.api.default_role = fresh.api.default_role
        await self.registrar.reload(fresh)
        self.bus.emit("daemon.reloaded", source=str(fresh.source) if fresh.source else None)
        log.info("config reloaded from %s", fresh.source or "built-in defaults")
        return str(fresh.source) if fresh.source else "built-in defaults"

    async def shutdown(self) -> None:
        await self.server.stop()
        await self.registrar.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.effects.settle(), 5)  # hooks get a moment; their tasks are cancelled below
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_quietly()

    async def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.catalog.close()
        self.lock.release()
