"""What every regtui screen shares: the failure handler and the actions on "the selected version"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from textual import work
from textual.binding import Binding
from textual.screen import ModalScreen, Screen

from regtui.fmt import ref
from regtui.workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from regtui.app import RegTUI

R = TypeVar("R")

Selection = tuple[str, str | None]
"""(model, version): what the cursor is on; version is None where only a model is selected."""


class RegScreen(ReportsWorkerFailures, Screen[None]):
    """A full screen: subclasses say what is selected; the lifecycle, copy, diff and chart actions follow."""

    # first in every footer, however narrow the terminal: the way to find every other key
    BINDINGS = [Binding("question_mark", "app.help", "Keys")]

    @property
    def regtui(self) -> RegTUI:
        return self.app  # type: ignore[return-value]

    def on_mount(self) -> None:
        self.regtui.changed.subscribe(self, self.on_registry_changed)

    def selected(self) -> Selection | None:
        """The model and version the cursor is on (override)."""
        return None

    def reload(self) -> None:
        """Fetch again what the screen shows (override)."""

    def on_registry_changed(self, events: list[Any]) -> None:
        """The live feed saw changes (``[]`` after a reconnect: anything may have changed)."""

    def action_refresh(self) -> None:
        self.reload()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    # ------------------------------------------------------------------ lifecycle dialogs

    def _version(self) -> tuple[str, str] | None:
        sel = self.selected()
        if sel is None or sel[1] is None:
            self.notify("select a version first", severity="warning")
            return None
        return sel[0], sel[1]

    def _after_change(self, result: Any) -> None:
        if result is not None:
            self.reload()

    def action_promote(self) -> None:
        from regtui.screens.promote import PromoteDialog

        if (v := self._version()) is not None:
            self.app.push_screen(PromoteDialog(*v), self._after_change)

    def action_approve(self) -> None:
        from regtui.screens.approve import ApproveDialog

        if (v := self._version()) is not None:
            self.app.push_screen(ApproveDialog(*v), self._after_change)

    def action_archive(self) -> None:
        from regtui.screens.archive import ArchiveDialog

        if (v := self._version()) is not None:
            self.app.push_screen(ArchiveDialog(*v), self._after_change)

    def action_rollback(self) -> None:
        from regtui.screens.rollback import RollbackDialog

        sel = self.selected()
        if sel is None:
            self.notify("select a model first", severity="warning")
            return
        self.app.push_screen(RollbackDialog(sel[0]), self._after_change)

    # ------------------------------------------------------------------ chart, diff, marks

    def action_chart(self) -> None:
        from regtui.screens.chart import ChartScreen

        sel = self.selected()
        if sel is not None:
            self.app.push_screen(ChartScreen(sel[0]))

    def action_mark(self) -> None:
        if (v := self._version()) is not None:
            marks = self.regtui.toggle_mark(*v)
            self.notify("marked for diff: " + (", ".join(ref(*m) for m in marks) or "none"), timeout=3)
            self.marks_changed()

    def marks_changed(self) -> None:
        """Redraw marks (override)."""

    def action_diff(self) -> None:
        self.open_diff(self.selected())

    def open_diff(self, sel: Selection | None, production: str | None = None) -> None:
        """Diff the two marked versions, or the marked one and the selection, or production and the selection."""
        from regtui.screens.diff import DiffScreen

        marks = list(self.regtui.marks)
        current = (sel[0], sel[1]) if sel is not None and sel[1] else None
        if len(marks) == 2:
            a, b = marks
        elif len(marks) == 1 and current is not None and current != marks[0]:
            a, b = marks[0], current
        elif current is not None and production and production != current[1]:
            a, b = (current[0], production), current
        else:
            self.notify("mark two versions with space (or select one to compare with production)", severity="warning")
            return
        self.app.push_screen(DiffScreen(a, b))

    # ------------------------------------------------------------------ copy

    def action_copy_path(self) -> None:
        if (v := self._version()) is not None:
            self.copy_path(*v)

    @work(exclusive=True, group="copy", exit_on_error=False)
    async def copy_path(self, name: str, version: str) -> None:
        got = await self.regtui.call("versions.get", {"name": name, "version": version})
        path = got["artifact"]["stored_path"]
        self.app.copy_to_clipboard(path)
        self.notify(f"copied {path}", title="stored path", timeout=4)

    def action_copy_command(self) -> None:
        if (v := self._version()) is not None:
            command = f"regd show {ref(*v)}"
            self.app.copy_to_clipboard(command)
            self.notify(f"copied `{command}`", title="command", timeout=4)


class RegModal(ReportsWorkerFailures, ModalScreen[R]):
    """A dialog: failures are shown like everywhere else; the result comes back through ``dismiss``."""

    @property
    def regtui(self) -> RegTUI:
        return self.app  # type: ignore[return-value]
