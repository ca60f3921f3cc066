"""A semantic diff, drawn generically: the verdict on top, then each section the daemon sent.

Sections are dicts or lists; keys named like ``added``/``removed``/``changed`` are coloured, and
a dict holding ``a`` and ``b`` (or ``from``/``to``, ``old``/``new``) is a change ``a → b``.
Nothing is assumed about which sections exist, so a richer daemon shows more without a change here.
"""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from regtui.fmt import number

ADDED = {"added", "new", "only_b", "b_only", "inserted"}
REMOVED = {"removed", "deleted", "only_a", "a_only", "missing", "dropped"}
CHANGED = {"changed", "modified", "retyped", "reshaped", "differ", "different"}
SAME = {"unchanged", "same", "equal", "identical"}
TONES = {"added": ("+ ", "green"), "removed": ("- ", "red"), "changed": ("~ ", "yellow"), "same": ("= ", "dim")}
PAIRS = (("a", "b"), ("from", "to"), ("old", "new"), ("before", "after"))
_PAIR_EXTRAS = {"delta", "kind", "why", "ratio", "change", "name", "path", "key", "rel", "verdict", "direction", "unit",
                "same", "changed", "a_size", "b_size", "a_digest", "b_digest"}
_VERDICT_STYLES = {"better": "bold green", "worse": "bold red", "same": "dim", "equal": "dim"}


def _tone_of(key: str) -> str | None:
    k = key.lower()
    if k in ADDED:
        return "added"
    if k in REMOVED:
        return "removed"
    if k in CHANGED:
        return "changed"
    if k in SAME:
        return "same"
    return None


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return number(value)
    if isinstance(value, str):
        # digests and run ids: the first 12 characters identify them for a reader
        if len(value) >= 40 and all(c in "0123456789abcdef" for c in value):
            return value[:12] + "…"
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _pair(value: dict[str, Any]) -> tuple[Any, Any] | None:
    for a, b in PAIRS:
        if a in value and b in value and set(value) <= {a, b, *_PAIR_EXTRAS}:
            return value[a], value[b]
    return None


def _change_line(prefix: str, value: dict[str, Any], a: Any, b: Any) -> Text:
    same = a == b
    line = Text(prefix)
    label = value.get("name") or value.get("path") or value.get("key")
    if label is not None:
        line.append(f"{label}: ", style="bold")
    if value.get("change") or value.get("kind"):
        line.append(f"{value.get('change') or value.get('kind')} ", style="yellow")
    line.append(_scalar(a), style="red" if not same else "dim")
    line.append(" → ", style="dim")
    line.append(_scalar(b), style="green" if not same else "dim")
    delta = value.get("delta")
    if isinstance(delta, int | float) and not isinstance(delta, bool) and delta:
        line.append(f"  ({'+' if delta > 0 else ''}{number(delta)})", style="green" if delta > 0 else "red")
    elif delta not in (None, 0, ""):
        line.append(f"  ({_scalar(delta)})", style="yellow")
    verdict = value.get("verdict")
    if isinstance(verdict, str):
        line.append(f"  {verdict}", style=_VERDICT_STYLES.get(verdict, "yellow"))
    return line


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | dict) and not value)


def _version_line(value: dict[str, Any]) -> Text:
    """A version summary (a dict naming ``model`` and ``version``) on one line."""
    line = Text(f"{value['model']}:{value['version']}", style="bold")
    for key, item in value.items():
        if key in ("model", "version") or _empty(item) or isinstance(item, dict | list):
            continue
        shown = _scalar(item)
        if key == "digest" or len(shown) > 40:
            shown = shown[:12] + "…"
        line.append(f"  {key} ", style="dim")
        line.append(shown)
    return line


def render_value(value: Any, indent: int = 0, tone: str | None = None) -> list[Text]:
    """Lines of coloured text for any JSON value; every line has a 2-character +/-/~ column."""
    pad = "  " * indent
    marker, style = TONES.get(tone or "", ("  ", ""))
    if isinstance(value, dict):
        if "model" in value and "version" in value:
            return [Text(pad + marker) + _version_line(value)]
        if (pair := _pair(value)) is not None:
            return [_change_line(pad + marker, value, *pair)]
        entries = [(k, v) for k, v in value.items() if not _empty(v)]
        if all(_tone_of(str(k)) == "same" for k, _ in entries):
            counts = ", ".join(f"{k} {_scalar(v)}" for k, v in entries)
            return [Text(pad + marker + "no changes" + (f" ({counts})" if counts else ""), style="dim")]
        lines: list[Text] = []
        for key, sub in entries:
            key_tone = _tone_of(str(key)) or tone
            k_marker, k_style = TONES.get(key_tone or "", ("  ", ""))
            head = Text(pad + k_marker, style=k_style)
            head.append(f"{key}:", style="bold")
            if isinstance(sub, dict) and (pair := _pair(sub)) is not None:
                lines.append(head + _change_line(" ", sub, *pair))
            elif isinstance(sub, dict) and "model" in sub and "version" in sub:
                lines.append(head + Text(" ") + _version_line(sub))
            elif isinstance(sub, dict | list):
                lines.append(head)
                lines.extend(render_value(sub, indent + 1, key_tone))
            else:
                quiet = sub in (0, False) or key_tone == "same"
                head.append(" " + _scalar(sub), style="dim" if quiet else k_style)
                lines.append(head)
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and "model" in item and "version" in item:
                lines.append(Text(pad + marker) + _version_line(item))
            elif isinstance(item, dict) and (pair := _pair(item)) is not None:
                lines.append(_change_line(pad + marker, item, *pair))
            elif isinstance(item, dict | list) and item:
                sub = render_value(item, indent + 1, tone)
                # the item's first line carries the bullet, in place of its indent
                sub[0] = Text(pad + marker + "• ", style=style) + sub[0][len(pad) + 4 :]
                lines.extend(sub)
            else:
                lines.append(Text(pad + marker + _scalar(item), style=style))
        return lines or [Text(pad + marker + "no changes", style="dim")]
    return [Text(pad + marker + _scalar(value), style=style)]


def section_text(value: Any) -> Text:
    return Text("\n").join(render_value(value))


class DiffView(VerticalScroll):
    """The verdict and then one titled block per section."""

    DEFAULT_CSS = """
    DiffView { height: 1fr; padding: 0 1; }
    DiffView > .diff-verdict { text-style: bold; padding: 0 1; margin-bottom: 1; border: round $accent; }
    DiffView > .diff-section { height: auto; border-top: solid $panel-lighten-2; padding: 0 1; }
    DiffView > .diff-empty { color: $text-muted; padding: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("computing the diff…", classes="diff-empty")

    async def show_result(self, result: dict[str, Any]) -> None:
        await self.remove_children()
        blocks: list[Static] = []
        verdict = result.get("verdict")
        if verdict:
            blocks.append(Static(Text(str(verdict)), classes="diff-verdict", id="diff-verdict"))
        for key, value in result.items():
            if key == "verdict":
                continue
            block = Static(section_text(value), classes="diff-section", id=f"diff-{_css_id(key)}")
            block.border_title = str(key)
            blocks.append(block)
        await self.mount_all(blocks)

    async def show_message(self, message: str) -> None:
        await self.remove_children()
        await self.mount(Static(message, classes="diff-empty", id="diff-message"))


def _css_id(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in key)
