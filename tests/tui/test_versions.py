"""The versions screen: pages loaded as the cursor moves, search with the filter language, marks, order."""

from __future__ import annotations

import pytest
from textual.widgets import Input

import regtui.screens.versions as versions_screen
from regtui.screens.detail import VersionDetailScreen
from regtui.screens.diff import DiffScreen
from regtui.screens.versions import VersionsScreen, split_order
from regtui.widgets.version_table import VersionTable
from tests.tui.conftest import USER, make_app, screen_text, settle


async def open_versions(pilot, name: str = "fraud") -> VersionsScreen:
    await settle(pilot)
    pilot.app.push_screen(VersionsScreen(name))
    await settle(pilot)
    return pilot.app.screen


def shown(screen: VersionsScreen) -> list[str]:
    return [row.version for row in screen.table.rows]


async def test_rows_carry_stage_badges_aliases_metrics_and_warnings(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_versions(pilot)
        assert shown(screen)[:3] == ["1.11.0", "1.10.0", "1.9.0"]
        by_version = {r.version: r for r in screen.table.rows}
        assert by_version["1.5.0"].stage == "production" and by_version["1.5.0"].aliases == ("champion",)
        assert by_version["1.9.0"].stage == "staging" and by_version["1.2.0"].stage == "archived"
        assert by_version["1.0.0"].warnings == ("no_env_lock",) and by_version["1.0.0"].created_by == USER
        text = screen_text(app)
        assert "PROD" in text and "STAGING" in text and "@champion" in text and "no-lock" in text
        assert "12 of 12 loaded · newest first · production 1.5.0" in text
        assert screen.table.metric_names == ["auc", "loss"]


async def test_pages_are_fetched_with_cursors_as_the_cursor_moves(seeded, monkeypatch):
    monkeypatch.setattr(versions_screen, "PAGE", 4)
    app = make_app(seeded)
    async with app.run_test(size=(120, 12)) as pilot:
        screen = await open_versions(pilot)
        table = screen.query_one(VersionTable)
        table.page_size = 4
        await pilot.press("end")  # the last loaded row: reaching it asks for the next page
        await settle(pilot)
        await pilot.press("end")
        await settle(pilot)
        await pilot.press("end")
        await settle(pilot)
        pages = [p for m, p in app.client.calls if m == "versions.list"]
        assert all(p["limit"] == 4 for p in pages)
        assert [bool(p.get("cursor")) for p in pages][:3] == [False, True, True]
        assert len(shown(screen)) == 12 and not table.more
        assert shown(screen)[-1] == "1.0.0" and table.current.version == "1.0.0"


async def test_search_takes_the_filter_language_and_order_by(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_versions(pilot)
        await pilot.press("slash")
        search = screen.query_one("#versions-search", Input)
        assert app.focused is search
        search.value = "metrics.auc >= 0.9 order by metrics.auc asc"
        await pilot.press("enter")
        await settle(pilot)
        assert shown(screen) == ["1.10.0", "1.11.0"]
        assert "order by metrics.auc asc" in screen_text(app)
        sent = [p for m, p in app.client.calls if m == "versions.search"][-1]
        assert sent["filter"] == "name = 'fraud' and (metrics.auc >= 0.9)" and sent["order_by"] == "metrics.auc asc"


async def test_a_bad_filter_shows_the_error_under_the_position_in_the_users_text(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_versions(pilot)
        await pilot.press("slash")
        screen.query_one("#versions-search", Input).value = "metrics.auc >> 3"
        await pilot.press("enter")
        await settle(pilot)
        text = screen_text(app)
        assert "metrics.auc >> 3" in text
        assert " " * 13 + "^" in text  # under the second '>', the 14th character of what was typed
        assert "at column 14" in text and "expected a value" in text
        assert shown(screen) == []


def test_split_order():
    assert split_order("metrics.auc > 1 order by metrics.auc desc") == ("metrics.auc > 1", "metrics.auc desc")
    assert split_order("order by version") == ("", "version")
    assert split_order("tags.team = 'risk'") == ("tags.team = 'risk'", None)


async def test_o_flips_the_order_and_enter_opens_the_detail(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = await open_versions(pilot)
        await pilot.press("o")
        await settle(pilot)
        assert shown(screen)[0] == "1.0.0"
        assert "oldest first" in screen_text(app)
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, VersionDetailScreen) and app.screen.version_ref == "1.1.0"


@pytest.mark.parametrize("keys", [("space", "down", "space", "d"), ("space", "down", "d")])
async def test_marked_versions_open_the_diff(seeded, keys):
    app = make_app(seeded)
    async with app.run_test(size=(120, 30)) as pilot:
        await open_versions(pilot)
        await pilot.press(*keys)
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        assert (app.screen.a, app.screen.b) == (("fraud", "1.11.0"), ("fraud", "1.10.0"))
        assert "◆" not in screen_text(app)  # the diff screen, not the table
        await pilot.press("escape")
        assert "◆" in screen_text(app)
