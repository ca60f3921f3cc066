"""Promote a version to staging or production, its guards shown first."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.widgets import RadioButton, RadioSet

from regtui.screens.lifecycle import LifecycleDialog

STAGES = ("staging", "production")


class PromoteDialog(LifecycleDialog):
    """``versions.check`` for the chosen stage, then ``versions.promote`` (force for admins)."""

    verb = "promote"
    offers_force = True

    def __init__(self, name: str, version: str, stage: str = "production") -> None:
        super().__init__(name, version)
        self.stage = stage

    def title_text(self) -> str:
        return f"Promote {self.model_name}:{self.version}"

    def compose_target(self) -> ComposeResult:
        with RadioSet(id="stage", compact=True):
            for stage in STAGES:
                yield RadioButton(stage, value=stage == self.stage, compact=True, id=f"stage-{stage}")

    @on(RadioSet.Changed, "#stage")
    def _stage_changed(self, event: RadioSet.Changed) -> None:
        self.stage = STAGES[event.index]
        self.run_checks()

    async def fetch_checks(self) -> list[dict[str, Any]]:
        got = await self.regtui.call("versions.check", {"name": self.model_name, "version": self.version, "stage": self.stage})
        return got["checks"]

    async def perform(self, reason: str, force: bool) -> dict[str, Any]:
        params = {"name": self.model_name, "version": self.version, "stage": self.stage, "reason": reason, "force": force}
        return await self.regtui.call("versions.promote", params)

    def outcome_text(self, result: dict[str, Any]) -> str:
        text = f"{self.model_name}:{result['version']['version']} {result.get('from')} → {result.get('to')}"
        if result.get("demoted"):
            text += f"; {result['demoted']} left production (archived)"
        if result.get("forced"):
            text += " (forced, audited)"
        return text
