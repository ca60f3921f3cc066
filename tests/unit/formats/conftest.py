"""Shared helpers for the format reader tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
HOSTILE_TIMEOUT = 10.0
"""Generous: every hostile input should return in milliseconds; this only catches hangs."""


def run_bounded(fn: Callable[..., T], *args: Any, timeout: float = HOSTILE_TIMEOUT) -> T:
    """Run ``fn(*args)`` in a thread and fail the test if it has not returned within ``timeout``."""
    result: list[Any] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn(*args))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {timeout} s")
    if error:
        raise error[0]
    return result[0]


@pytest.fixture
def bounded() -> Callable[..., Any]:
    """Give a test the bounded runner."""
    return run_bounded
