"""The Unix-socket server: one JSON-RPC message per line, any number of connections.

A connection that sends nothing costs one idle timer until ``api.idle_timeout_s``; one that
drops mid-message is simply closed; a message longer than ``api.max_message_bytes`` is answered
-32600 and its connection closed (we cannot find the next message boundary safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.api import jsonrpc
from regd.api.methods import Call, dispatch
from regd.api.peercred import Caller, identify
from regd.errors import INVALID_REQUEST, Conflict

if TYPE_CHECKING:
    from regd.api.daemon import Daemon

log = logging.getLogger(__name__)


_CLOSE: Any = object()
"""Queued after the last line of a connection whose client finished sending: close once answered."""
_PAUSE_AT = 64
"""Lines queued unanswered before the connection stops reading (a client that never reads its answers)."""


class Connection(asyncio.Protocol):
    """One client: its identity, its transport (shared by replies and notifications), its subscriptions.

    A protocol, not a stream reader/writer pair with a task per connection: a script's call (connect,
    one line, close) costs a third less on the loop this way. Lines are answered one at a time and
    in order, by a task that exists only while something is owed.
    """

    def __init__(self, daemon: Daemon, server: SocketServer) -> None:
        self.daemon = daemon
        self.server = server
        self.caller: Caller
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.subscribed = False
        self.closed = False
        self._limit = daemon.config.api.max_message_bytes
        self._buf = bytearray()
        self._lines: deque[Any] = deque()
        """Messages to answer; a str is a refusal to send before closing, ``_CLOSE`` the end."""
        self._reading = True
        self._worker: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        api = self.daemon.config.api
        try:
            self.caller = identify(transport.get_extra_info("socket"), api.roles, api.default_role)
        except OSError:
            self.closed = True
            transport.close()
            return
        self.server.connections.add(self)
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if not self._reading or self.closed:
            return
        buf = self._buf
        buf += data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            if end - start > self._limit:
                self._stop_reading("invalid request: message too large")
                break
            if not buf[start:end].isspace() and end > start:
                self._lines.append(bytes(buf[start : end + 1]))
            start = end + 1
        if self._reading:
            del buf[:start]
            if len(buf) > self._limit:
                # no newline within the limit: we cannot find the next message boundary safely
                self._stop_reading(f"invalid request: message over api.max_message_bytes ({self._limit} bytes)")
            elif len(self._lines) > _PAUSE_AT:
                self.transport.pause_reading()  # type: ignore[union-attr]
        if self._lines:
            self._wake()

    def eof_received(self) -> bool:
        if self._reading:
            # a final message without its newline (``printf`` instead of ``echo``) is still answered
            partial = bytes(self._buf)
            if partial.strip() and len(partial) <= self._limit:
                self._lines.append(partial)
            self._stop_reading(None)
            self._wake()
        return True  # keep the transport open for the answers still owed; ``_work`` closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self._shut()
        self.server.connections.discard(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._release_writers()

    # ------------------------------------------------------------------ answering

    def _stop_reading(self, refusal: str | None) -> None:
        self._reading = False
        self._buf = bytearray()
        if refusal is not None:
            self._lines.append(refusal)
        self._lines.append(_CLOSE)
        if not self.closed:
            with contextlib.suppress(Exception):
                self.transport.pause_reading()  # type: ignore[union-attr]

    def _wake(self) -> None:
        if self._worker is not None or self.closed:
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._lines[0] is _CLOSE:  # nothing owed: close without a task
            self._shut()
            return
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        try:
            while self._lines and not self.closed:
                item = self._lines.popleft()
                if item is _CLOSE:
                    self._shut()
                elif isinstance(item, str):
                    await self.send(jsonrpc.error_response(None, INVALID_REQUEST, item))
                else:
                    await self._answer(item)
                    if self._reading and len(self._lines) < _PAUSE_AT // 4 and not self.closed:
                        self.transport.resume_reading()  # type: ignore[union-attr]
        except (ConnectionError, BrokenPipeError):
            self._shut()
        except BaseException:
            self._shut()
            raise
        finally:
            self._worker = None
        if not self.closed:
            self._arm_idle()

    async def _answer(self, raw: bytes) -> None:
        after: list[Any] = []

        async def run(method: str, params: Any, req_id: Any) -> Any:
            call = Call(self.daemon, self.caller, self, req_id)
            try:
                return await dispatch(call, method, params)
            finally:
                after.extend(call.after_reply)

        reply = await jsonrpc.handle_message(raw, run)
        if reply is not None:
            await self.send(reply)
        for fn in after:
            fn()

    def _arm_idle(self) -> None:
        if self.subscribed or self.closed or self._idle is not None:
            return
        self._idle = asyncio.get_running_loop().call_later(self.daemon.config.api.idle_timeout_s, self._shut)

    # ------------------------------------------------------------------ writing, closing

    async def send(self, line: str) -> None:
        if self.closed:
            return
        # a lone surrogate echoed from the request ("\ud800" in a method name, a key) cannot be UTF-8:
        # written as its JSON escape instead, the line stays valid JSON and the answer still goes out
        self.transport.write(line.encode("utf-8", "backslashreplace") + b"\n")  # type: ignore[union-attr]
        if self._write_paused and not self.closed:
            # the client reads slower than we write: wait (a subscriber's queue then drops, bounded)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._drain_waiters.remove(waiter)

    def _release_writers(self) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)

    def spawn(self, coro: Any) -> None:
        """Run a task owned by this connection (cancelled when it closes)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _shut(self) -> None:
        if self.closed and self.transport is None:
            return
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        for task in list(self.tasks):
            task.cancel()
        self._release_writers()
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()  # an answer already written still goes out first

    async def close(self) -> None:
        self._shut()


class SocketServer:
    """Binds the socket safely (0600 in a 0700 dir, stale sockets replaced, live ones refused)."""

    def __init__(self, daemon: Daemon, path: Path) -> None:
        self.daemon = daemon
        self.path = path
        self._server: asyncio.base_events.Server | None = None
        self.connections: set[Connection] = set()

    async def start(self) -> None:
        path = self.path
        if len(os.fsencode(path)) > 107:
            raise Conflict(f"socket path too long for a Unix socket (max 107 bytes): {path}; set socket = in the config")
        shared = bool(self.daemon.config.api.group)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750 if shared else 0o700)
        with contextlib.suppress(PermissionError):
            os.chmod(path.parent, 0o750 if shared else 0o700)
        if path.exists() or path.is_symlink():
            if await _is_live(path):
                raise Conflict(f"another regd already answers on {path}", {"socket": str(path)})
            path.unlink()  # stale: left by a daemon that was killed
        old = os.umask(0o177)  # the socket is born 0600: no window where others could connect
        try:
            self._server = await asyncio.get_running_loop().create_unix_server(
                lambda: Connection(self.daemon, self), path=str(path), backlog=512
            )
        finally:
            os.umask(old)
        if shared:
            import grp

            gid = grp.getgrnam(self.daemon.config.api.group).gr_gid
            os.chown(path, -1, gid)
            os.chown(path.parent, -1, gid)
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            await conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


async def _is_live(path: Path) -> bool:
    """Tell a live daemon's socket from a stale file: try to connect."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


def notify_systemd(state: str) -> None:
    """Tell systemd (Type=notify) that we are ready or stopping; a no-op outside systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), addr)
