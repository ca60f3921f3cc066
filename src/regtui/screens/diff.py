"""The semantic diff of two versions (``versions.diff``), coloured, verdict on top."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Label

from regtui.fmt import NOT_AVAILABLE, describe, is_missing_method, ref
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.diff_view import DiffView

Ref = tuple[str, str]


class DiffScreen(RegScreen):
    """What changed from ``a`` to ``b``: metrics, params, tags, signature, tensors, files, env, lineage."""

    BINDINGS = [
        Binding("s", "swap", "Swap a/b"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, a: Ref, b: Ref) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.result: dict[str, Any] | None = None
        self.sub_title = f"diff {ref(*a)} {ref(*b)}"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("", id="diff-title")
        yield DiffView(id="diff-view")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.reload()

    def selected(self) -> Selection | None:
        return self.b

    def reload(self) -> None:
        title = Text.assemble(("a ", "dim"), (ref(*self.a), "bold red"), ("  ⇄  ", "dim"), ("b ", "dim"), (ref(*self.b), "bold green"))
        self.query_one("#diff-title", Label).update(title)
        self.sub_title = f"diff {ref(*self.a)} {ref(*self.b)}"
        self.load_diff()

    @work(exclusive=True, group="diff", exit_on_error=False)
    async def load_diff(self) -> None:
        view = self.query_one(DiffView)
        params = {"a": {"name": self.a[0], "version": self.a[1]}, "b": {"name": self.b[0], "version": self.b[1]}}
        try:
            result = await self.regtui.call("versions.diff", params)
        except Exception as exc:  # noqa: BLE001 - shown in place: the screen has nothing else to say
            await view.show_message(f"versions.diff: {NOT_AVAILABLE}" if is_missing_method(exc) else describe(exc))
            return
        self.result = result if isinstance(result, dict) else {"result": result}
        await view.show_result(self.result)

    def action_swap(self) -> None:
        self.a, self.b = self.b, self.a
        self.reload()
