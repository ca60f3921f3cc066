"""Find the daemon, or start one with ``regd start`` when none answers."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from regd.client import AsyncClient
from regd.errors import Unreachable


@dataclass
class Connected:
    """The daemon that answered and whether regtui had to start it."""

    status: dict[str, Any]
    started: bool = False


def start_command(config: str | None, socket: str | None) -> list[str]:
    """The ``regd start`` command line, passing ``--config`` and ``--socket`` through."""
    cmd = [sys.executable, "-m", "regd", "start"]
    if config:
        cmd += ["--config", config]
    if socket:
        cmd += ["--socket", socket]
    return cmd


async def start_daemon(config: str | None, socket: str | None) -> None:
    """Run ``regd start`` without blocking the loop; raise ``Unreachable`` with its output if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *start_command(config, socket),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        detail = (err or out).decode(errors="replace").strip().splitlines()[-3:]
        raise Unreachable(f"`regd start` failed (exit {proc.returncode}): " + " / ".join(detail))


async def connect(client: AsyncClient, *, autostart: bool, config: str | None, socket: str | None) -> Connected:
    """Ask for ``daemon.status``; start the daemon first if nothing answers and ``autostart`` allows."""
    try:
        return Connected(await client.call("daemon.status"))
    except Unreachable:
        if not autostart:
            raise
    await start_daemon(config, socket)
    return Connected(await client.call("daemon.status"), started=True)

