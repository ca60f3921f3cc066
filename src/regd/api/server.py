"""The Unix-socket server: one JSON-RPC message per line, any number of connections.

A connection that sends nothing costs one idle coroutine until ``api.idle_timeout_s``; one that
drops mid-message is simply closed; a message longer than ``api.max_message_bytes`` is answered
-32600 and its connection closed (we cannot find the next message boundary safely).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.api import jsonrpc
from regd.api.methods import Call, dispatch
from regd.api.peercred import Caller, identify
from regd.errors import INVALID_REQUEST, Conflict

if TYPE_CHECKING:
    from regd.api.daemon import Daemon

log = logging.getLogger(__name__)


class Connection:
    """One client: its identity, its writer (shared by replies and notifications), its subscriptions."""

    def __init__(self, daemon: Daemon, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, caller: Caller):
        self.daemon = daemon
        self.reader = reader
        self.writer = writer
        self.caller = caller
        self._write_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.subscribed = False
        self.closed = False

    async def send(self, line: str) -> None:
        if self.closed:
            return
        async with self._write_lock:
            self.writer.write(line.encode() + b"\n")
            await self.writer.drain()

    def spawn(self, coro: Any) -> None:
        """Run a task owned by this connection (cancelled when it closes)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        limit = self.daemon.config.api.max_message_bytes
        idle = self.daemon.config.api.idle_timeout_s
        try:
            while True:
                try:
                    timeout = None if self.subscribed else idle
                    line = await asyncio.wait_for(self.reader.readuntil(b"\n"), timeout)
                except asyncio.LimitOverrunError:
                    await self.send(
                        jsonrpc.error_response(
                            None, INVALID_REQUEST, f"invalid request: message over api.max_message_bytes ({limit} bytes)"
                        )
                    )
                    return
                except asyncio.IncompleteReadError as exc:
                    # EOF: a final message without its newline (``printf`` instead of ``echo``) is still answered
                    if exc.partial.strip() and len(exc.partial) <= limit:
                        await self._answer(exc.partial)
                    return
                except TimeoutError:
                    return
                if len(line) - 1 > limit:
                    await self.send(jsonrpc.error_response(None, INVALID_REQUEST, "invalid request: message too large"))
                    return
                if line.strip():
                    await self._answer(line)
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            await self.close()

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

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            self.writer.close()
            await self.writer.wait_closed()


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
            self._server = await asyncio.start_unix_server(
                self._on_connect, path=str(path), limit=self.daemon.config.api.max_message_bytes + 1, backlog=512
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

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        api = self.daemon.config.api
        try:
            caller = identify(sock, api.roles, api.default_role)
        except OSError:
            writer.close()
            return
        conn = Connection(self.daemon, reader, writer, caller)
        self.connections.add(conn)
        try:
            await conn.serve()
        finally:
            self.connections.discard(conn)

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
