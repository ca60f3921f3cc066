"""Archive a version, the transition's guard shown first."""

from __future__ import annotations

from typing import Any

from regtui.screens.lifecycle import LifecycleDialog


class ArchiveDialog(LifecycleDialog):
    """``versions.check`` for ``archived``, then ``versions.archive``."""

    verb = "archive"

    async def fetch_checks(self) -> list[dict[str, Any]]:
        got = await self.regtui.call("versions.check", {"name": self.model_name, "version": self.version, "stage": "archived"})
        return got["checks"]

    async def perform(self, reason: str, force: bool) -> dict[str, Any]:
        return await self.regtui.call("versions.archive", {"name": self.model_name, "version": self.version, "reason": reason})

    def outcome_text(self, result: dict[str, Any]) -> str:
        return f"{self.model_name}:{result.get('version', self.version)} archived"
