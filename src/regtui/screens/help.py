"""``?``: every key of every screen, the current screen's first."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from regtui.screens.base import RegModal


def _screens() -> list[tuple[str, type]]:
    from regtui.app import RegTUI
    from regtui.screens.activity import ActivityScreen
    from regtui.screens.chart import ChartScreen
    from regtui.screens.detail import VersionDetailScreen
    from regtui.screens.diff import DiffScreen
    from regtui.screens.lifecycle import LifecycleDialog
    from regtui.screens.models import ModelsScreen
    from regtui.screens.versions import VersionsScreen
    from regtui.widgets.paged_table import PagedTable

    return [
        ("everywhere", RegTUI), ("models", ModelsScreen), ("versions", VersionsScreen),
        ("version detail", VersionDetailScreen), ("diff", DiffScreen), ("chart", ChartScreen),
        ("activity", ActivityScreen), ("dialogs", LifecycleDialog), ("tables", PagedTable),
    ]  # fmt: skip


def _key(binding: Binding) -> str:
    return ", ".join(k.replace("question_mark", "?").replace("slash", "/") for k in binding.key.split(","))


def binding_rows(current: Screen | None) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(key, description)]) per screen, the current one first."""
    groups = []
    for title, cls in _screens():
        rows = [(_key(b), b.description) for b in cls.BINDINGS if isinstance(b, Binding) and b.description]
        if current is not None and isinstance(current, cls):
            groups.insert(0, (f"{title} (this screen)", rows))
        else:
            groups.append((title, rows))
    return groups


def keys_help() -> str:
    """Every screen's keys, for ``regtui --help``."""
    lines = ["keys:"]
    for title, rows in binding_rows(None):
        lines.append(f"  {title}")
        lines.extend(f"    {key:<12} {desc}" for key, desc in rows)
    return "\n".join(lines)


class HelpScreen(RegModal[None]):
    """The keys, grouped by screen; escape closes."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, under: Screen | None = None) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        tables = []
        for title, rows in binding_rows(self.under):
            table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None)
            table.add_column(style="bold cyan", no_wrap=True, min_width=12)
            table.add_column()
            for key, desc in rows:
                table.add_row(key, desc)
            tables += [table, Text("")]
        tables.append(Text("ctrl+p: the command palette, with every action of the current screen", style="dim"))
        with VerticalScroll(id="help-box"):
            yield Static(Group(*tables))

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "keys"

    def action_close(self) -> None:
        self.dismiss(None)
