"""Every guard check of a stage change, each with pass or fail and its detail."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.widgets import Static


class GuardList(Static):
    """The result of ``versions.check`` (or the checks a refusal carried)."""

    DEFAULT_CSS = """
    GuardList { height: auto; max-height: 12; padding: 0 1; border: round $panel; }
    """

    def on_mount(self) -> None:
        self.border_title = "guards"

    def show_pending(self, what: str = "running the guards…") -> None:
        self.update(Text(what, style="italic dim"))

    def show_note(self, note: str) -> None:
        self.update(Text(note, style="dim"))

    def show_checks(self, checks: list[dict[str, Any]]) -> None:
        if not checks:
            self.update(Text("no guards apply", style="dim"))
            return
        table = Table.grid(padding=(0, 1))
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column()
        for check in checks:
            ok = bool(check.get("passed"))
            table.add_row(
                Text("✔ pass" if ok else "✘ FAIL", style="green" if ok else "bold red"),
                str(check.get("rule", "")),
                Text(str(check.get("detail", "")), style="" if ok else "red"),
            )
        passed = sum(1 for c in checks if c.get("passed"))
        self.border_subtitle = f"{passed}/{len(checks)} pass"
        self.update(table)
