"""The models screen against a real seeded daemon: columns, filter as you type, sort, open, copy."""

from __future__ import annotations

from textual.widgets import DataTable

from regtui.screens.models import ModelsScreen
from regtui.screens.versions import VersionsScreen
from tests.tui.conftest import make_app, screen_text, settle


def rows(app) -> list[list[str]]:
    table = app.screen.query_one("#models-table", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_models_show_production_latest_counts_aliases_and_a_key_metric(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, ModelsScreen)
        by_name = {r[0]: r for r in rows(app)}
        assert list(by_name) == ["churn", "fraud"]
        _, production, latest, versions, metric, aliases, changed = by_name["fraud"]
        assert (production, latest, versions) == ("1.5.0", "1.11.0", "12")
        assert metric == "auc 0.91" and aliases == "@champion=1.5.0" and changed == "2026-01-02 03:04"
        assert by_name["churn"][1] == "—" and by_name["churn"][4] == "f1 0.7"
        assert "2 models" in screen_text(app)


async def test_filter_as_you_type_substring_and_glob(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", "c", "h")
        assert [r[0] for r in rows(app)] == ["churn"]
        assert "1 of 2 models" in screen_text(app)
        await pilot.press("backspace", "backspace", "f", "*", "d")
        assert [r[0] for r in rows(app)] == ["fraud"]
        await pilot.press("escape")  # clears the filter and goes back to the table
        assert [r[0] for r in rows(app)] == ["churn", "fraud"]
        assert app.focused is app.screen.query_one(DataTable)


async def test_sort_walks_the_columns_and_header_click_sorts(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("s")  # name, descending
        assert [r[0] for r in rows(app)] == ["fraud", "churn"]
        await pilot.press("s")  # production, ascending: no production first
        assert [r[0] for r in rows(app)] == ["churn", "fraud"]
        screen = app.screen
        assert isinstance(screen, ModelsScreen)
        screen._sort_by("versions")
        screen._sort_by("versions")  # again: descending
        assert [r[0] for r in rows(app)] == ["fraud", "churn"]
        await pilot.click("#models-table", offset=(3, 0))  # the "model" header
        assert [r[0] for r in rows(app)] == ["churn", "fraud"]


async def test_enter_opens_the_versions_and_y_copies_a_command(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down")  # fraud
        await pilot.press("Y")
        assert app.clipboard == "regd show fraud:1.5.0"
        await pilot.press("y")
        await settle(pilot)
        assert app.clipboard.startswith(str(seeded.data_dir)) or app.clipboard.startswith("/")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionsScreen) and app.screen.model_name == "fraud"


async def test_a_daemon_error_is_a_readable_notification_not_a_traceback(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(VersionsScreen("no-such-model"))
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("no-such-model" in m for m in messages), messages
        assert not any("Traceback" in m for m in messages)
