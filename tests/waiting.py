"""Polling helpers: wait for the daemon to reach a state, with a generous deadline (never a timed assertion)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def versions_of(client, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    from regd.errors import NotFound

    try:
        return [v["version"] for v in client.call("versions.list", {"name": name, "limit": 1000})["items"]]
    except NotFound:
        return []


def total_versions(client) -> int:  # type: ignore[no-untyped-def]
    return int(client.status()["counts"]["versions"])


def idle(client) -> bool:  # type: ignore[no-untyped-def]
    """Nothing pending or being hashed in the ingest queue."""
    return client.status()["ingest"]["pending"] == 0
