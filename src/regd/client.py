"""Talk to a running regd over its Unix socket: ``Client`` (sync) and ``AsyncClient``.

    >>> from regd.client import Client
    >>> v = Client().register("out/model.safetensors", name="fraud", metrics={"auc": 0.91})
    >>> v.version, v.artifact.stored_path

``call()`` returns the raw JSON result; the named helpers return ``regd.domain`` models. Errors
come back as the ``regd.errors`` class of their JSON-RPC code (``NotFound``, ``GuardFailed`` ...).
This module imports nothing heavy at import time: pydantic loads only when a typed helper is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.errors import RegdError, Unreachable
from regd.paths import resolve_socket

if TYPE_CHECKING:
    from regd.domain import Event, Model, Version

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while a registration hashes."""


def _encode(method: str, params: dict[str, Any] | None, req_id: int | None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params:
        msg["params"] = params
    if req_id is not None:
        msg["id"] = req_id
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _unreachable(path: Path, exc: BaseException) -> Unreachable:
    return Unreachable(
        f"no regd daemon answers on {path} ({exc.__class__.__name__}: {exc}); start one with `regd start`",
        {"socket": str(path)},
    )


def _register_params(path: str | os.PathLike[str], name: str | None, metadata: dict[str, Any]) -> dict[str, Any]:
    """versions.register params from keyword metadata (metrics=, params=, tags=, ...) or ``metadata=``."""
    meta = _clean({**(metadata.pop("metadata", None) or {}), **metadata})
    # a relative path means the caller's cwd, not the daemon's
    return _clean({"path": str(Path(path).expanduser().absolute()), "name": name, "metadata": meta or None})


class Client:
    """A synchronous client on one persistent connection (reconnects when the daemon restarts).

    Not thread-safe: give each thread its own ``Client``.
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *, timeout: float | None = 60.0,
                 config: str | os.PathLike[str] | None = None) -> None:  # fmt: skip
        self.socket_path = Path(socket_path) if socket_path else resolve_socket(config)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ plumbing

    def connect(self) -> None:
        if self._sock is not None:
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(os.fspath(self.socket_path))
        except OSError as exc:
            s.close()
            raise _unreachable(self.socket_path, exc) from None
        self._sock, self._buf = s, b""

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buf:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ConnectionResetError("the daemon closed the connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def call(self, method: str, params: dict[str, Any] | None = None, *, on_progress: Progress | None = None) -> Any:
        """Call ``method`` and return its raw result; raise the matching ``RegdError`` on an error."""
        req_id = next(self._ids)
        payload = _encode(method, _clean(params or {}), req_id)
        for attempt in (1, 2):
            self.connect()
            assert self._sock is not None
            try:
                self._sock.sendall(payload)
                return self._await_reply(req_id, on_progress)
            except (BrokenPipeError, ConnectionResetError) as exc:
                # the daemon restarted under a persistent connection: reconnect once, then give up
                self.close()
                if attempt == 2:
                    raise _unreachable(self.socket_path, exc) from None
            except TimeoutError as exc:
                self.close()
                raise Unreachable(f"regd did not answer {method} within {self.timeout} s") from exc
        raise AssertionError("unreachable")

    def _await_reply(self, req_id: int, on_progress: Progress | None) -> Any:
        while True:
            msg = json.loads(self._readline())
            if "id" not in msg:  # a notification: progress of our request, or an event
                if msg.get("method") == "progress" and on_progress is not None:
                    p = msg.get("params", {})
                    on_progress(int(p.get("done", 0)), int(p.get("total", 0)))
                continue
            if msg.get("id") != req_id and msg.get("id") is not None:
                continue
            if "error" in msg:
                raise RegdError.from_error(msg["error"])
            return msg.get("result")

    # ------------------------------------------------------------------ typed helpers

    def status(self) -> dict[str, Any]:
        return self.call("daemon.status")

    def models(self, **filters: Any) -> list[Model]:
        from regd.domain import Model

        return [Model.model_validate(m) for m in self._all("models.list", filters)]

    def model(self, name: str) -> Model:
        from regd.domain import Model

        return Model.model_validate(self.call("models.get", {"name": name}))

    def version(self, name: str, version: str = "latest", *, tensors: bool = False) -> Version:
        from regd.domain import Version

        return Version.model_validate(self.call("versions.get", {"name": name, "version": version, "tensors": tensors}))

    def register(self, path: str | os.PathLike[str], *, name: str | None = None, progress: Progress | None = None,
                 **metadata: Any) -> Version:  # fmt: skip
        """Register a file or model directory; ``metadata``: metrics, params, tags, description, version ..."""
        from regd.domain import Version

        params = _register_params(path, name, metadata) | ({"progress": True} if progress else {})
        result = self.call("versions.register", params, on_progress=progress)
        return Version.model_validate(result["version"])

    def search(self, filter: str, *, order_by: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        return self._all("versions.search", {"filter": filter, "order_by": order_by}, limit=limit)

    def tag(self, name: str, version: str, set: dict[str, str] | None = None, remove: list[str] | None = None) -> Version:
        from regd.domain import Version

        return Version.model_validate(self.call("versions.tag", {"name": name, "version": version, "set": set, "remove": remove}))

    def set_alias(self, name: str, alias: str, version: str, reason: str | None = None) -> dict[str, str]:
        return self.call("aliases.set", {"name": name, "alias": alias, "version": version, "reason": reason})["aliases"]

    def path(self, name: str, version: str = "latest") -> str:
        """The stored artifact's path: what serving code loads."""
        return self.call("versions.get", {"name": name, "version": version})["artifact"]["stored_path"]

    def promote(self, name: str, version: str, stage: str, reason: str, force: bool = False) -> dict[str, Any]:
        return self.call("versions.promote", {"name": name, "version": version, "stage": stage, "reason": reason, "force": force})

    def rollback(self, name: str, reason: str, to: str | None = None) -> dict[str, Any]:
        return self.call("models.rollback", {"name": name, "reason": reason, "to": to})

    def events(self, topics: list[str] | None = None) -> Iterator[Event]:
        """Subscribe on this connection now; iterate to receive events until the connection closes.

        The subscription starts before this returns, so nothing published after the call is missed.
        """
        self.call("events.subscribe", {"topics": topics})
        return self._event_stream()

    def _event_stream(self) -> Iterator[Event]:
        from regd.domain import Event

        while True:
            msg = json.loads(self._readline())
            if msg.get("method") == "event":
                yield Event.model_validate(msg["params"])

    def _all(self, method: str, params: dict[str, Any], limit: int | None = None) -> list[Any]:
        """Follow cursors until the list (or ``limit`` items) is complete."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.call(method, {**params, "cursor": cursor, "limit": min(1000, limit - len(items)) if limit else 1000})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor or (limit and len(items) >= limit):
                return items


class AsyncClient:
    """An asyncio client: concurrent calls multiplexed on one connection by request id."""

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *, timeout: float | None = 60.0,
                 config: str | os.PathLike[str] | None = None) -> None:  # fmt: skip
        self.socket_path = Path(socket_path) if socket_path else resolve_socket(config)
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._progress: dict[int, Progress] = {}
        self._ids = itertools.count(1)
        self._pump: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        async with self._lock:
            if self._writer is not None and not self._writer.is_closing():
                return
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    os.fspath(self.socket_path), limit=64 * 1024 * 1024
                )
            except OSError as exc:
                raise _unreachable(self.socket_path, exc) from None
            self._pump = asyncio.create_task(self._read_replies())

    async def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pump
            self._pump = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
        self._fail_pending(ConnectionResetError("client closed"))

    async def __aenter__(self) -> AsyncClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _fail_pending(self, exc: BaseException) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(_unreachable(self.socket_path, exc))
        self._pending.clear()

    async def _read_replies(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    raise ConnectionResetError("the daemon closed the connection")
                msg = json.loads(line)
                if "id" not in msg:
                    if msg.get("method") == "progress":
                        p = msg.get("params", {})
                        cb = self._progress.get(p.get("id"))
                        if cb is not None:
                            cb(int(p.get("done", 0)), int(p.get("total", 0)))
                    continue
                fut = self._pending.pop(msg.get("id"), None)
                if fut is None or fut.done():
                    continue
                if "error" in msg:
                    fut.set_exception(RegdError.from_error(msg["error"]))
                else:
                    fut.set_result(msg.get("result"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter must learn the connection is gone
            self._fail_pending(exc)
            if self._writer is not None:
                self._writer.close()

    async def call(self, method: str, params: dict[str, Any] | None = None, *, on_progress: Progress | None = None) -> Any:
        """Call ``method``; many calls may be in flight at once."""
        await self.connect()
        assert self._writer is not None
        req_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        if on_progress is not None:
            self._progress[req_id] = on_progress
        try:
            self._writer.write(_encode(method, _clean(params or {}), req_id))
            await self._writer.drain()
            return await asyncio.wait_for(fut, self.timeout)
        except TimeoutError:
            raise Unreachable(f"regd did not answer {method} within {self.timeout} s") from None
        except (ConnectionError, BrokenPipeError) as exc:
            raise _unreachable(self.socket_path, exc) from None
        finally:
            self._pending.pop(req_id, None)
            self._progress.pop(req_id, None)

    async def register(self, path: str | os.PathLike[str], *, name: str | None = None,
                       progress: Progress | None = None, **metadata: Any) -> Version:  # fmt: skip
        from regd.domain import Version

        params = _register_params(path, name, metadata) | ({"progress": True} if progress else {})
        result = await self.call("versions.register", params, on_progress=progress)
        return Version.model_validate(result["version"])

    async def version(self, name: str, version: str = "latest", *, tensors: bool = False) -> Version:
        from regd.domain import Version

        return Version.model_validate(await self.call("versions.get", {"name": name, "version": version, "tensors": tensors}))

    async def events(
        self, topics: list[str] | None = None, *, on_subscribed: Callable[[], None] | None = None
    ) -> AsyncIterator[Event]:
        """Yield events on a dedicated connection until cancelled. ``on_subscribed`` is called once the
        daemon has answered the subscription: every change committed after that is an event here, so
        a caller that loaded something before can look once for what it missed in between."""
        from regd.domain import Event

        try:
            reader, writer = await asyncio.open_unix_connection(os.fspath(self.socket_path), limit=64 * 1024 * 1024)
        except OSError as exc:
            raise _unreachable(self.socket_path, exc) from None
        try:
            writer.write(_encode("events.subscribe", _clean({"topics": topics}), 0))
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise _unreachable(self.socket_path, ConnectionResetError("the daemon closed the connection"))
                msg = json.loads(line)
                if "error" in msg:
                    raise RegdError.from_error(msg["error"])
                if msg.get("method") == "event":
                    yield Event.model_validate(msg["params"])
                elif "result" in msg and on_subscribed is not None:
                    on_subscribed()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
