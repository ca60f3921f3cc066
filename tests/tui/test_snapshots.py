"""Snapshots of the main screens at fixed sizes, against the seeded daemon.

Deterministic by construction: fixed files and metrics (so fixed versions and digests), a fixed
time format, no cursor blink, nothing live happening. ``created by`` shows the user running the
tests (the daemon takes it from the socket's peer credentials), so the snapshots were recorded as
``SNAPSHOT_USER`` and are skipped for anyone else. Update with ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from regtui.screens.chart import ChartScreen
from regtui.screens.detail import VersionDetailScreen
from regtui.screens.promote import PromoteDialog
from regtui.screens.versions import VersionsScreen
from tests.tui.conftest import USER, make_app, settle

SNAPSHOT_USER = "root"

pytestmark = pytest.mark.skipif(USER != SNAPSHOT_USER, reason=f"snapshots show created-by {SNAPSHOT_USER!r}, not {USER!r}")


def then(*steps: Callable[[Pilot], Awaitable[None] | None]) -> Callable[[Pilot], Awaitable[None]]:
    """A run_before: settle, run each step and settle again, blink off."""

    async def run(pilot: Pilot) -> None:
        await settle(pilot)
        for step in steps:
            result = step(pilot)
            if result is not None:
                await result
            await settle(pilot)
        for box in pilot.app.screen.query(Input):
            box.cursor_blink = False
        await pilot.pause()

    return run


def push(screen_factory: Callable[[], object]) -> Callable[[Pilot], None]:
    return lambda pilot: pilot.app.push_screen(screen_factory())  # type: ignore[arg-type]


def test_models_screen(snap_compare, seeded):
    assert snap_compare(make_app(seeded, live=False), terminal_size=(80, 24), run_before=then())


def test_versions_screen(snap_compare, seeded):
    assert snap_compare(make_app(seeded, live=False), terminal_size=(80, 24), run_before=then(push(lambda: VersionsScreen("fraud"))))


def test_versions_screen_wide(snap_compare, seeded):
    assert snap_compare(make_app(seeded, live=False), terminal_size=(120, 30), run_before=then(push(lambda: VersionsScreen("fraud"))))


def test_version_detail_metrics_tab(snap_compare, seeded):
    async def metrics_tab(pilot: Pilot) -> None:
        await pilot.press("2")

    run = then(push(lambda: VersionDetailScreen("fraud", "1.5.0")), metrics_tab)
    assert snap_compare(make_app(seeded, live=False), terminal_size=(100, 30), run_before=run)


def test_promote_dialog_with_a_failing_guard(snap_compare, seeded):
    run = then(push(lambda: VersionsScreen("fraud")), push(lambda: PromoteDialog("fraud", "1.3.0")))
    assert snap_compare(make_app(seeded, live=False), terminal_size=(80, 24), run_before=run)


def test_help_screen(snap_compare, seeded):
    async def help_keys(pilot: Pilot) -> None:
        await pilot.press("question_mark")

    run = then(push(lambda: VersionsScreen("fraud")), help_keys)
    assert snap_compare(make_app(seeded, live=False), terminal_size=(80, 24), run_before=run)


def test_metric_chart(snap_compare, seeded):
    assert snap_compare(make_app(seeded, live=False), terminal_size=(100, 30), run_before=then(push(lambda: ChartScreen("fraud"))))
