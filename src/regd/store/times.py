"""Times as the catalog stores them: integer unix microseconds, UTC, converted exactly."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_dt(us: int) -> datetime:
    """Unix microseconds (the column unit) to an aware UTC datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(microseconds=us)


def to_us(dt: datetime) -> int:
    """An aware datetime (naive means UTC) to unix microseconds, exactly."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US


def now_us() -> int:
    """The current time in unix microseconds."""
    return time.time_ns() // 1000
