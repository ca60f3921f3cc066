"""Turn the API's raw JSON into short strings and coloured text for tables and dialogs."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from regd.errors import GuardFailed, RegdError, Unreachable

TimeFormat = Callable[[datetime], str]
"""How regtui shows a moment; snapshot tests hand in a fixed one."""

METHOD_NOT_FOUND = -32601
NOT_AVAILABLE = "not available in this daemon"

# metrics people rank models by, most telling first; the first one a model has is its key metric
_KEY_METRICS = (
    "accuracy", "acc", "auc", "roc_auc", "f1", "f1_score", "precision", "recall", "r2", "map", "bleu",
    "eval_accuracy", "val_accuracy", "loss", "val_loss", "eval_loss", "rmse", "mae",
)  # fmt: skip

WARNING_LABELS = {
    "unsafe_pickle": "unsafe-pickle",
    "no_env_lock": "no-lock",
    "sidecar_invalid": "bad-sidecar",
    "format_error": "format-err",
    "unknown_format": "unknown-fmt",
}


def parse_time(value: str | datetime | None) -> datetime | None:
    """Read an API timestamp (ISO 8601, ``Z`` for UTC)."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def default_time_format(moment: datetime, now: datetime | None = None) -> str:
    """Recent moments as ``5m ago``, older ones as a local ``YYYY-MM-DD HH:MM``."""
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    if 0 <= seconds < 60:
        return f"{int(seconds)}s ago"
    if 0 <= seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if 0 <= seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def size(n: float | None) -> str:
    """Bytes for people: ``1.2 MB``."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"


def number(value: Any) -> str:
    """A metric value in at most 7 significant characters."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"


def key_metric(metrics: dict[str, float]) -> str | None:
    """The metric a model is best known by: a well-known one if present, else the first by name."""
    if not metrics:
        return None
    lowered = {k.lower(): k for k in metrics}
    for name in _KEY_METRICS:
        if name in lowered:
            return lowered[name]
    return min(metrics)


def metric_columns(metrics: dict[str, float], limit: int) -> list[str]:
    """Which metrics to show as columns: the key one first, then the rest by name."""
    first = key_metric(metrics)
    if first is None:
        return []
    return [first, *sorted(k for k in metrics if k != first)][:limit]


def ref(name: str, version: str | None) -> str:
    """``name:version`` as the CLI spells a reference."""
    return f"{name}:{version}" if version else name


def shape(dims: list[Any] | None) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in (dims or [])) + "]"


def describe(exc: BaseException) -> str:
    """A readable one- or few-line message for an error (never a traceback)."""
    if isinstance(exc, Unreachable):
        return exc.message
    if isinstance(exc, RegdError):
        if exc.code == METHOD_NOT_FOUND:
            method = exc.data.get("method") if isinstance(exc.data, dict) else None
            return f"{method or 'this method'}: {NOT_AVAILABLE}"
        message = exc.message
        if isinstance(exc, GuardFailed):
            failed = [c for c in guard_checks(exc) if not c.get("passed")]
            if failed:
                message += "\n" + "\n".join(f"✘ {c.get('rule')}: {c.get('detail', '')}" for c in failed)
        elif isinstance(exc.data, list) and exc.data and isinstance(exc.data[0], dict):
            # pydantic's error list for -32602
            first = exc.data[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            message += f"\n{loc}: {first.get('msg', '')}"
        elif isinstance(exc.data, dict) and exc.data.get("allowed"):
            message += f"\nallowed: {', '.join(map(str, exc.data['allowed']))}"
        return message
    if isinstance(exc, OSError | TimeoutError | ConnectionError):
        return f"{exc.__class__.__name__}: {exc}"
    return f"unexpected {exc.__class__.__name__}: {exc}"


def guard_checks(exc: RegdError) -> list[dict[str, Any]]:
    """The checks a ``GuardFailed`` carries in its data."""
    data = exc.data
    if isinstance(data, dict):
        data = data.get("checks", [])
    return [c for c in data or [] if isinstance(c, dict)]


def is_missing_method(exc: BaseException) -> bool:
    return isinstance(exc, RegdError) and exc.code == METHOD_NOT_FOUND


_AT_COLUMN = re.compile(r" at (?:line \d+, )?column \d+")


def filter_error(exc: RegdError, prefix_len: int, user_text: str) -> tuple[str, int | None]:
    """A filter error's message and the 0-based column in the user's text it points at.

    Args:
        prefix_len: characters regtui put in front of the user's filter (``name = 'x' and (``).
    """
    data = exc.data if isinstance(exc.data, dict) else {}
    position = data.get("position")
    if "filter" not in data or not isinstance(position, int):
        return exc.message, None
    column = max(0, min(len(user_text), position - prefix_len))
    message = _AT_COLUMN.sub(f" at column {column + 1}", exc.message, count=1)
    return message, column


def caret_line(text: str, column: int | None, message: str) -> Text:
    """The filter, a caret under the column it fails at, and the message, for an inline error."""
    out = Text()
    if column is not None:
        out.append(text + "\n", style="bold")
        out.append(" " * column + "^\n", style="bold red")
    out.append(message, style="red")
    return out
