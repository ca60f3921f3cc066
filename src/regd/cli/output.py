"""Printing for the CLI: JSON for scripts, rich tables for people (rich is imported only then)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from regd.errors import GuardFailed, InvalidTransition, PermissionDenied, RegdError


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, caption: str | None = None) -> None:
    """Print a table of plain or rich-markup cells; columns empty in every row are left out."""
    from rich.table import Table

    rows = [[cell if isinstance(cell, str) else fmt(cell) for cell in row] for row in rows]
    keep = [i for i, _ in enumerate(columns) if not rows or any(row[i] for row in rows)]
    columns = [columns[i] for i in keep]
    rows = [[row[i] for i in keep] for row in rows]
    t = Table(title=title, caption=caption, show_lines=False, header_style="bold", title_justify="left")
    for col in columns:
        # short, fixed-shape cells never wrap; free text (metrics, tags, details) takes what is left
        t.add_column(col, overflow="fold", no_wrap=col in _NO_WRAP)
    for row in rows:
        t.add_row(*row)
    console().print(t)


_NO_WRAP = {"#", "name", "version", "stage", "size", "created", "changed", "when", "production", "latest", "versions",
            "status", "by", "actor", "format"}


def pairs(title: str | None, rows: Iterable[tuple[str, str]]) -> None:
    """Print ``key  value`` lines under a title (a table without a header)."""
    from rich.table import Table

    t = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")
    for key, value in rows:
        t.add_row(key, value)
    console().print(t)


def fmt(value: Any) -> str:
    """A cell: numbers compact, None blank, times short and local."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def when(iso: str | None) -> str:
    """``2026-11-23T19:02:50.123+00:00`` -> ``11-23 19:02`` (local time; the year only when not this one)."""
    if not iso:
        return ""
    try:
        moment = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso
    return moment.strftime("%m-%d %H:%M" if moment.year == datetime.now().year else "%Y-%m-%d %H:%M")


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def stage_badge(stage: str) -> str:
    colour = {"production": "bold green", "staging": "yellow", "archived": "dim", "none": ""}.get(stage, "")
    return f"[{colour}]{stage}[/]" if colour else stage


def describe_error(exc: RegdError) -> str:
    """A readable one-paragraph error, with guard checks and allowed transitions spelled out."""
    msg = exc.message
    data = exc.data if isinstance(exc.data, dict) else {}
    if isinstance(exc, GuardFailed):
        failed = [c for c in data.get("checks", []) if not c.get("passed")]
        lines = [f"  ✗ {c.get('rule')}: {c.get('detail', '')}" for c in failed]
        return "\n".join([msg, *lines])
    if isinstance(exc, InvalidTransition) and data.get("allowed") is not None:
        return f"{msg} (allowed: {', '.join(data['allowed']) or 'none'})"
    if isinstance(exc, PermissionDenied) and data.get("role"):
        return f"{msg}"
    if exc.code == -32602 and isinstance(exc.data, list):
        parts = [f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}" for e in exc.data[:10]]
        return f"{msg}: " + "; ".join(parts)
    if exc.code == -32602 and "position" in data and "filter" in data:
        caret = " " * int(data["position"]) + "^"
        return f"{msg}\n  {data['filter']}\n  {caret}"
    return msg
