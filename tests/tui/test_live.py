"""Live: registrations and stage changes appear without a key press; the feed survives a daemon restart;
the app starts the daemon when none answers."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from regd.client import Client
from regd.errors import RegdError
from regtui.screens.activity import ActivityScreen
from regtui.screens.versions import VersionsScreen
from tests.tui.conftest import (
    make_app,
    notifications,
    run_in_thread,
    screen_text,
    settle,
    wait_until,
    write_weights,
)


async def test_a_change_made_before_the_feed_subscribed_shows_once_it_has(fresh, tmp_path):
    # no status poll (the other way such a change would show): only the catch-up on subscribing can
    app = make_app(fresh, poll_s=3600)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)  # connected and painted; the feed subscribes after the first paint
        path = write_weights(tmp_path / "early.safetensors", 8)
        await run_in_thread(Client(fresh.socket).register, path, name="early", metrics={"acc": 0.5})
        await wait_until(pilot, lambda: "early" in screen_text(app), what="early in the models table")
        assert any("new version early:1.0.0" in n for n in notifications(app))


def model_names(app) -> list[str]:
    return [m["name"] for m in app.screen.models] if hasattr(app.screen, "models") else []


async def test_a_new_registration_appears_with_a_notification(fresh, tmp_path):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        path = write_weights(tmp_path / "vision.safetensors", 7)
        await run_in_thread(Client(fresh.socket).register, path, name="vision", metrics={"acc": 0.5})
        await wait_until(pilot, lambda: "vision" in screen_text(app), what="vision in the models table")
        assert any("new version vision:1.0.0" in n for n in notifications(app))
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, ActivityScreen)
        assert "vision:1.0.0" in screen_text(app) and "version.registered" in screen_text(app)


async def test_a_stage_change_updates_the_open_versions_list(fresh):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.push_screen(VersionsScreen("fraud"))
        await settle(pilot)
        screen = app.screen

        def stage(version: str) -> str:
            return {r.version: r.stage for r in screen.table.rows}.get(version, "")

        await run_in_thread(Client(fresh.socket).promote, "fraud", "1.10.0", "production", "from a script")
        await wait_until(pilot, lambda: stage("1.10.0") == "production" and stage("1.5.0") == "archived", what="badges")
        await wait_until(pilot, lambda: "production 1.10.0" in screen_text(app), what="the status line")
        assert any("fraud:1.10.0 none → production" in n for n in notifications(app))


async def test_the_feed_reconnects_after_a_daemon_restart(fresh, tmp_path):
    app = make_app(fresh)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        # the feed subscribes a moment after the first screen: restart only once it follows, or
        # there is no connection to lose (it would simply subscribe to the new daemon)
        watcher = Client(fresh.socket)
        await wait_until(pilot, lambda: watcher.status()["subscribers"] >= 1, what="the live feed subscribed")
        watcher.close()
        await run_in_thread(fresh.restart)
        await wait_until(pilot, lambda: any("connected to regd" in n for n in notifications(app)), what="reconnection")
        assert any("lost the daemon" in n for n in notifications(app))
        path = write_weights(tmp_path / "after.safetensors", 9)
        await run_in_thread(Client(fresh.socket).register, path, name="after-restart")
        await wait_until(pilot, lambda: "after-restart" in screen_text(app), what="a registration after the restart")


async def test_without_autostart_it_says_no_daemon_answers_and_connects_when_one_does(daemon_factory):
    handle = daemon_factory(start=False)
    app = make_app(handle)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: any("no regd daemon answers" in n for n in notifications(app)), what="the error")
        assert not any("Traceback" in n for n in notifications(app))
        await run_in_thread(handle.start)
        await wait_until(pilot, lambda: "0 models" in screen_text(app), what="the models screen filled in")
        assert any("connected to regd" in n for n in notifications(app))


async def test_the_app_starts_the_daemon_when_none_answers_and_says_where(daemon_factory):
    handle = daemon_factory(start=False)
    app = make_app(handle, autostart=True, config=str(handle.config_path))
    pid = None
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await wait_until(pilot, lambda: app.status, what="daemon.status")
            pid = app.status["pid"]
            started = [n for n in notifications(app) if n.startswith("started regd")]
            assert started and str(handle.socket) in started[0] and str(handle.data_dir) in started[0]
            assert "0 models" in screen_text(app)
    finally:
        if pid is None:
            try:
                pid = Client(handle.socket, timeout=5).status()["pid"]
            except RegdError:  # it never started
                pid = None
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                await asyncio.sleep(0.05)
