"""Talking to the daemon byte by byte, as socat or a hostile client would."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def exchange(sock_path: Path, payload: bytes, *, replies: int = 1, timeout: float = 10.0) -> list[Any]:
    """Send raw bytes, read ``replies`` lines back (fewer if the daemon closes), parsed as JSON."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(sock_path))
        s.sendall(payload)
        buf = b""
        out: list[Any] = []
        while len(out) < replies:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf and len(out) < replies:
                line, buf = buf.split(b"\n", 1)
                out.append(json.loads(line))
        return out


def call(sock_path: Path, method: str, params: Any = None, req_id: Any = 1) -> Any:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": req_id}
    if params is not None:
        msg["params"] = params
    (reply,) = exchange(sock_path, json.dumps(msg).encode() + b"\n")
    return reply
