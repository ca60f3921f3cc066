"""Roll a model back to an earlier production version (guards are not re-run; DESIGN "Rollback")."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.widgets import Select

from regtui.screens.lifecycle import LifecycleDialog
from regtui.widgets.guard_list import GuardList


class RollbackDialog(LifecycleDialog):
    """``models.rollback``: to the previous production version, or one picked from the stage history."""

    verb = "rollback"

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.current: str | None = None
        self.candidates: list[str] = []

    def title_text(self) -> str:
        return f"Roll back {self.model_name}"

    def compose_target(self) -> ComposeResult:
        yield Select[str]([], prompt="the previous production version", allow_blank=True, id="rollback-to")

    @on(Select.Changed, "#rollback-to")
    def _target_changed(self) -> None:
        self._show_plan()

    @property
    def target(self) -> str | None:
        value = self.query_one("#rollback-to", Select).value
        return value if isinstance(value, str) else None

    async def fetch_checks(self) -> None:
        model = await self.regtui.call("models.get", {"name": self.model_name})
        timeline = await self.regtui.call("models.history", {"name": self.model_name})
        self.current = model.get("production")
        seen: list[str] = []
        for h in timeline["items"]:  # newest first: the first one is the previous production version
            v = h.get("version")
            if h.get("kind") == "stage" and h.get("to") == "production" and v and v != self.current and v not in seen:
                seen.append(v)
        self.candidates = seen
        self.query_one("#rollback-to", Select).set_options([(v, v) for v in seen])
        self.blocked = None
        if not self.current:
            self.blocked = f"{self.model_name} has no production version: nothing to roll back"
        elif not seen:
            self.blocked = f"no earlier production version of {self.model_name} to go back to"
        self._show_plan()

    def _show_plan(self) -> None:
        guards = self.query_one(GuardList)
        if self.blocked:
            guards.show_note(self.blocked)
            return
        back_to = self.target or (self.candidates[0] if self.candidates else "?")
        guards.show_note(
            f"restores {back_to} to production and archives {self.current} (marked rolled back).\n"
            "Guards are not re-run on rollback: only versions that have been in production can be restored."
        )
        guards.border_title = "plan"

    async def perform(self, reason: str, force: bool) -> dict[str, Any]:
        return await self.regtui.call("models.rollback", {"name": self.model_name, "to": self.target, "reason": reason})

    def outcome_text(self, result: dict[str, Any]) -> str:
        restored = (result.get("restored") or {}).get("version")
        archived = (result.get("archived") or {}).get("version")
        return f"{self.model_name}:{restored} is in production again" + (f"; {archived} archived" if archived else "")
