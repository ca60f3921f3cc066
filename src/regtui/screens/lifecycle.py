"""What the promote, approve, archive and rollback dialogs share: guards first, then a reason, then the outcome.

The guards come from ``versions.check`` (nothing changes) and are all shown, pass or fail, before
the confirm button does anything; force is offered only to the daemon's admins, and only when a
guard fails. The dialog stays open to show the outcome; ``dismiss`` returns the daemon's result
(None if nothing changed).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Static

from regd.errors import GuardFailed, RegdError
from regtui.fmt import describe, guard_checks, ref
from regtui.screens.base import RegModal
from regtui.widgets.guard_list import GuardList


class LifecycleDialog(RegModal[dict[str, Any] | None]):
    """A stage change of one version (subclasses say which, and how to check and perform it)."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "confirm", "Confirm"),
    ]

    verb = "change"
    reason_placeholder = "reason (required, kept in the audit log)"
    reason_required = True
    offers_force = False
    blocks_on_failure = True
    """A failed guard disables confirm (unless forced): the daemon would refuse anyway."""

    def __init__(self, name: str, version: str | None = None) -> None:
        super().__init__()
        self.model_name = name
        self.version = version
        self.result: dict[str, Any] | None = None
        self.checks: list[dict[str, Any]] = []
        self.checked = False
        self.blocked: str | None = None

    # ------------------------------------------------------------------ to override

    def title_text(self) -> str:
        return f"{self.verb.capitalize()} {ref(self.model_name, self.version)}"

    def compose_target(self) -> ComposeResult:
        yield from ()

    async def fetch_checks(self) -> list[dict[str, Any]] | None:
        """The guard results to show, or None when this change has no guards (show a note instead)."""
        return None

    async def perform(self, reason: str, force: bool) -> dict[str, Any]:
        """Make the change; return the daemon's result (every dialog defines this)."""
        raise TypeError(f"{type(self).__name__} does not say how to {self.verb}")

    def outcome_text(self, result: dict[str, Any]) -> str:
        return "done"

    # ------------------------------------------------------------------ the dialog

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text(self.title_text(), style="bold"), id="dialog-title")
            yield from self.compose_target()
            yield GuardList(id="guards")
            yield Input(placeholder=self.reason_placeholder, compact=True, id="reason")
            yield Checkbox("force: override the failed guards (admin; audited)", compact=True, id="force")
            yield Static("", id="outcome")
            with Horizontal(id="dialog-buttons"):
                yield Button(self.verb.capitalize(), variant="primary", compact=True, id="confirm", disabled=True)
                yield Button("Cancel", compact=True, id="cancel")

    def on_mount(self) -> None:
        self.query_one("#force", Checkbox).display = False
        self.query_one("#dialog").border_title = self.verb
        self.query_one("#reason", Input).focus()
        self.run_checks()

    @work(exclusive=True, group="check", exit_on_error=False)
    async def run_checks(self) -> None:
        guards = self.query_one(GuardList)
        guards.show_pending()
        self.checked, self.blocked = False, None
        self._update_controls()
        try:
            checks = await self.fetch_checks()
        except RegdError as exc:  # the version is gone, the daemon is away ...: say so here, confirm stays off
            self.blocked = describe(exc)
            guards.show_note(self.blocked)
            self.checked = True
            self._update_controls()
            return
        if checks is not None:
            self.checks = checks
            guards.show_checks(checks)
        self.checked = True
        self._update_controls()

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c.get("passed")]

    @property
    def can_force(self) -> bool:
        return self.offers_force and self.regtui.role == "admin" and not self.forbidden

    @property
    def forbidden(self) -> list[dict[str, Any]]:
        """Failed checks that are the stage machine's, not a policy's: force does not override those."""
        return [c for c in self.failed if c.get("rule") == "transition"]

    def _update_controls(self) -> None:
        force = self.query_one("#force", Checkbox)
        force.display = bool(self.failed) and self.can_force and self.result is None
        confirm = self.query_one("#confirm", Button)
        refused = self.blocks_on_failure and bool(self.failed) and not (force.display and force.value)
        confirm.disabled = self.result is not None or not self.checked or refused or self.blocked is not None
        if self.result is None and self.checked:
            if self.blocked:
                self._outcome(self.blocked, "yellow")
            elif refused and self.forbidden:
                self._outcome("the stage machine forbids this change (force cannot override it)", "yellow")
            elif refused:
                why = "tick force to override" if self.can_force else "force needs the admin role"
                self._outcome(f"{len(self.failed)} guard(s) fail: the daemon would refuse ({why})", "yellow")
            else:
                self._outcome("")

    def _outcome(self, message: str, style: str = "") -> None:
        self.query_one("#outcome", Static).update(Text(message, style=style))

    @on(Checkbox.Changed, "#force")
    def _force_toggled(self) -> None:
        self._update_controls()

    @on(Input.Submitted, "#reason")
    def _reason_submitted(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#confirm")
    def _confirm_pressed(self) -> None:
        self.action_confirm()

    @on(Button.Pressed, "#cancel")
    def _cancel_pressed(self) -> None:
        self.action_close()

    def action_confirm(self) -> None:
        if self.query_one("#confirm", Button).disabled:
            return
        reason = self.query_one("#reason", Input).value.strip()
        if self.reason_required and not reason:
            self._outcome("a reason is required", "bold red")
            self.query_one("#reason", Input).focus()
            return
        force = self.query_one("#force", Checkbox)
        self.apply(reason, bool(force.display and force.value))

    @work(exclusive=True, group="apply", exit_on_error=False)
    async def apply(self, reason: str, force: bool) -> None:
        confirm = self.query_one("#confirm", Button)
        confirm.disabled = True
        self._outcome("working…", "italic")
        try:
            result = await self.perform(reason, force)
        except RegdError as exc:
            if isinstance(exc, GuardFailed) and guard_checks(exc):
                self.checks = guard_checks(exc)
                self.query_one(GuardList).show_checks(self.checks)
            self._outcome("✘ " + describe(exc), "bold red")
            confirm.disabled = False
            return
        self.result = result
        self._outcome("✔ " + self.outcome_text(result), "bold green")
        confirm.display = False
        self.query_one("#force", Checkbox).display = False
        cancel = self.query_one("#cancel", Button)
        cancel.label = "Close"
        cancel.focus()

    def action_close(self) -> None:
        self.dismiss(self.result)
