"""Promote, approve, archive and rollback dialogs: every guard first, a reason, the outcome, force for admins."""

from __future__ import annotations

from textual.widgets import Button, Checkbox, Input, Select, Static

from regd.client import Client
from regtui.screens.approve import ApproveDialog
from regtui.screens.archive import ArchiveDialog
from regtui.screens.promote import PromoteDialog
from regtui.screens.rollback import RollbackDialog
from regtui.screens.versions import VersionsScreen
from tests.tui.conftest import make_app, screen_text, settle


async def on_versions(pilot, cursor_to: str) -> VersionsScreen:
    await settle(pilot)
    pilot.app.push_screen(VersionsScreen("fraud"))
    await settle(pilot)
    screen = pilot.app.screen
    screen.table.cursor_row = [r.version for r in screen.table.rows].index(cursor_to)
    await pilot.pause()
    return screen


def outcome(app) -> str:
    return str(app.screen.query_one("#outcome", Static).content)


def dialog_state(app):
    d = app.screen
    return (
        d.query_one("#confirm", Button).disabled,
        d.query_one("#force", Checkbox).display,
        screen_text(app),
    )


async def test_promote_shows_every_guard_and_refuses_to_confirm_a_failing_one(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_versions(pilot, "1.3.0")  # auc 0.83 < 0.85
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PromoteDialog)
        disabled, force_shown, text = dialog_state(app)
        assert "✘ FAIL" in text and "auc" in text and "0.85" in text and "✔ pass" in text
        assert disabled and force_shown  # the owner of the daemon is its admin
        assert "tick force to override" in text
        assert Client(fresh.socket).version("fraud", "1.3.0").stage == "none"
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, PromoteDialog)
        assert [e for e in app.client.calls if e[0] == "versions.promote"] == []


async def test_force_needs_admin(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_versions(pilot, "1.3.0")
        # the daemon makes its owner admin, and tests run as the owner: this is how a viewer would see it
        app.status = {**app.status, "role": "approver"}
        await pilot.press("p")
        await settle(pilot)
        disabled, force_shown, text = dialog_state(app)
        assert disabled and not force_shown and "force needs the admin role" in text


async def test_forced_promotion_with_a_reason_shows_the_outcome_and_updates_the_table(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await on_versions(pilot, "1.3.0")
        await pilot.press("p")
        await settle(pilot)
        dialog = app.screen
        dialog.query_one("#force", Checkbox).value = True
        await pilot.pause()
        assert not dialog.query_one("#confirm", Button).disabled
        await pilot.press("enter")  # in the reason box: confirm without a reason
        assert outcome(app) == "a reason is required"
        dialog.query_one("#reason", Input).value = "hotfix for the auc dip"
        await pilot.press("enter")
        await settle(pilot)
        assert outcome(app) == "✔ fraud:1.3.0 none → production; 1.5.0 left production (archived) (forced, audited)"
        assert str(dialog.query_one("#cancel", Button).label) == "Close"
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen
        rows = {r.version: r.stage for r in screen.table.rows}
        assert rows["1.3.0"] == "production" and rows["1.5.0"] == "archived"
        assert Client(fresh.socket).version("fraud", "production").version == "1.3.0"


async def test_promote_to_staging_passes_and_the_radio_reruns_the_guards(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_versions(pilot, "1.3.0")
        await pilot.press("p")
        await settle(pilot)
        dialog = app.screen
        await pilot.click("#stage-staging")
        await settle(pilot)
        assert dialog.stage == "staging"
        disabled, force_shown, text = dialog_state(app)
        assert not disabled and not force_shown and "✘" not in text
        dialog.query_one("#reason", Input).value = "try it"
        await pilot.click("#confirm")
        await settle(pilot)
        assert outcome(app) == "✔ fraud:1.3.0 none → staging"
        assert ("versions.check", {"name": "fraud", "version": "1.3.0", "stage": "staging"}) in app.client.calls


async def test_approve_shows_the_production_guards_and_the_daemons_answer(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_versions(pilot, "1.3.0")
        await pilot.press("a")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ApproveDialog)
        assert "guards for production" in screen_text(app)
        assert not dialog.query_one("#confirm", Button).disabled  # an approval may be what a guard waits for
        dialog.query_one("#reason", Input).value = "looks good"
        await pilot.press("enter")
        await settle(pilot)
        # the test user registered every version, and approvals must come from someone else: the refusal
        # is shown as the daemon worded it, and the dialog stays open to try again or cancel
        assert outcome(app).startswith("✘ ") and "cannot approve it" in outcome(app)
        assert not dialog.query_one("#confirm", Button).disabled
        assert ("versions.approve", {"name": "fraud", "version": "1.3.0", "note": "looks good"}) in app.client.calls


async def test_archive_asks_a_reason_and_archives(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await on_versions(pilot, "1.9.0")
        await pilot.press("x")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, ArchiveDialog)
        assert "✔ pass" in screen_text(app)
        dialog.query_one("#reason", Input).value = "superseded"
        await pilot.press("enter")
        await settle(pilot)
        assert outcome(app) == "✔ fraud:1.9.0 archived"
        await pilot.press("escape")
        await settle(pilot)
        assert {r.version: r.stage for r in screen.table.rows}["1.9.0"] == "archived"


async def test_rollback_offers_earlier_production_versions_and_restores_one(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await on_versions(pilot, "1.5.0")
        await pilot.press("b")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RollbackDialog)
        assert dialog.candidates == ["1.2.0"]
        text = screen_text(app)
        assert "restores 1.2.0 to production and archives 1.5.0" in text and "not re-run" in text
        dialog.query_one("#rollback-to", Select).value = "1.2.0"
        dialog.query_one("#reason", Input).value = "auc regression in prod"
        await pilot.click("#confirm")
        await settle(pilot)
        assert outcome(app) == "✔ fraud:1.2.0 is in production again; 1.5.0 archived"
        assert Client(fresh.socket).version("fraud", "production").version == "1.2.0"


async def test_rollback_without_production_says_so(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(RollbackDialog("churn"))
        await settle(pilot)
        assert app.screen.query_one("#confirm", Button).disabled
        assert "churn has no production version" in screen_text(app)


async def test_a_version_that_does_not_exist_is_said_in_the_dialog(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(PromoteDialog("fraud", "9.9.9"))
        await settle(pilot)
        dialog = app.screen
        assert dialog.query_one("#confirm", Button).disabled
        assert "9.9.9" in outcome(app) and "Traceback" not in screen_text(app)
