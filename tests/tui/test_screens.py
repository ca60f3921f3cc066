"""Help, command palette, chart, diff, activity, ingest bar, themes and the command line."""

from __future__ import annotations

import pytest
from textual.command import CommandPalette

from regd.client import Client
from regtui.app import main
from regtui.screens.chart import ChartScreen
from regtui.screens.diff import DiffScreen
from regtui.screens.help import HelpScreen
from regtui.screens.versions import VersionsScreen
from regtui.widgets.diff_view import DiffView
from regtui.widgets.ingest_bar import IngestBar
from regtui.widgets.metric_chart import MetricChart
from tests.tui.conftest import make_app, screen_text, settle, wait_until


async def test_question_mark_shows_every_key_this_screen_first(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        app.push_screen(VersionsScreen("fraud"))
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert text.index("versions (this screen)") < text.index("everywhere")
        for key, what in [("space", "Mark"), ("p", "Promote"), ("/", "Search"), ("o", "Newest/oldest")]:
            assert f"{key}" in text and what in text
        await pilot.press("escape")
        assert isinstance(app.screen, VersionsScreen)


async def test_the_command_palette_lists_the_screens_actions(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(VersionsScreen("fraud"))
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"promote")
        await wait_until(pilot, lambda: "Promote" in screen_text(app), what="the Promote command")
        await pilot.press("enter")
        await settle(pilot)
        from regtui.screens.promote import PromoteDialog

        assert isinstance(app.screen, PromoteDialog) and app.screen.version == "1.11.0"


async def test_the_chart_plots_a_metric_across_versions_with_production_marked(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(ChartScreen("fraud"))
        await settle(pilot)
        screen = app.screen
        assert screen.metrics == ["auc", "loss"] and screen.production == "1.5.0"
        text = screen_text(app)
        assert "auc: 12 of 12 versions · production 1.5.0 in red" in text
        assert "fraud · auc" in text and "production 1.5.0" in text  # title and legend
        await pilot.press("m")
        assert "loss: 12 of 12 versions" in screen_text(app)
        assert screen.query_one(MetricChart).plt is not None


async def test_the_diff_screen_shows_the_verdict_or_says_the_daemon_lacks_it(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        app.push_screen(DiffScreen(("fraud", "1.2.0"), ("fraud", "1.5.0")))
        await settle(pilot)
        view = app.screen.query_one(DiffView)
        text = screen_text(app)
        assert "fraud:1.2.0" in text and "fraud:1.5.0" in text
        if view.query("#diff-message"):
            assert "versions.diff: not available in this daemon" in text
        else:
            verdict = Client(seeded.socket).call(
                "versions.diff", {"a": {"name": "fraud", "version": "1.2.0"}, "b": {"name": "fraud", "version": "1.5.0"}}
            )["verdict"]
            assert view.query_one("#diff-verdict") and verdict[:40] in text
            assert "metrics" in text
        await pilot.press("s")
        await settle(pilot)
        assert app.screen.a == ("fraud", "1.5.0")


async def test_the_ingest_bar_shows_only_while_the_daemon_ingests(seeded):
    app = make_app(seeded, live=False)  # no status poll: this test says what the status is
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        bar = app.screen.query_one(IngestBar)
        assert not bar.display or not bar.has_class("-active")
        # what daemon.status says while it hashes a big file (the real status, with a busy queue)
        busy = {**app.status, "ingest": {**app.status["ingest"], "pending": 2, "active": ["/runs/big/model.safetensors"],
                                         "bytes_total": 4_000_000_000, "bytes_done": 1_000_000_000,
                                         "rate_bytes_per_s": 500_000_000.0}}  # fmt: skip
        app.status = busy
        await pilot.pause()
        assert bar.has_class("-active")
        text = screen_text(app)
        assert "ingest 2 pending · 1.0 GB/4.0 GB · 500.0 MB/s" in text and "model.safetensors" in text
        assert "25%" in text
        app.status = {**busy, "ingest": {**busy["ingest"], "pending": 0, "active": [], "bytes_done": 4_000_000_000}}
        await pilot.pause()
        assert not bar.has_class("-active")


async def test_a_theme_can_be_chosen(seeded):
    app = make_app(seeded, theme="nord")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.theme == "nord"


def test_help_teaches_the_keys(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for expected in ["--socket", "--config", "--theme", "keys:", "versions", "space", "Mark", "Promote", "ctrl+p"]:
        assert expected in out


def test_an_unknown_theme_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--theme", "no-such-theme", "--no-start", "--socket", "/nonexistent/regd.sock"])
    assert exc.value.code == 2
    assert "choose from" in capsys.readouterr().err
