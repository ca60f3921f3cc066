"""Approve a version: the production guards are shown, since approvals count toward them."""

from __future__ import annotations

from typing import Any

from regtui.screens.lifecycle import LifecycleDialog


class ApproveDialog(LifecycleDialog):
    """``versions.approve`` with an optional note."""

    verb = "approve"
    reason_placeholder = "note (optional)"
    reason_required = False
    blocks_on_failure = False  # an approval is often exactly what the failing guard is waiting for

    async def fetch_checks(self) -> list[dict[str, Any]]:
        got = await self.regtui.call("versions.check", {"name": self.model_name, "version": self.version, "stage": "production"})
        self.query_one("#guards").border_title = "guards for production"
        return got["checks"]

    async def perform(self, reason: str, force: bool) -> dict[str, Any]:
        return await self.regtui.call("versions.approve", {"name": self.model_name, "version": self.version, "note": reason or None})

    def outcome_text(self, result: dict[str, Any]) -> str:
        who = ", ".join(a.get("approver", "?") for a in result.get("approvals", []))
        return f"approved; {len(result.get('approvals', []))} approval(s): {who}"
