"""regtui: browse, search, diff, promote and roll back the versions regd keeps, from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive
from textual.signal import Signal

from regd.client import AsyncClient
from regd.errors import RegdError
from regtui import live, session
from regtui.commands import ScreenCommands
from regtui.fmt import TimeFormat, default_time_format, parse_time
from regtui.live import describe_event
from regtui.widgets.ingest_bar import ingest_active
from regtui.workers import ReportsWorkerFailures

if TYPE_CHECKING:
    from regd.domain import Event

FEED_DELAY_S = 0.5
NOTIFY_EACH = 3
"""A burst of more events than this in one flush becomes one summary notification."""


class RegTUI(ReportsWorkerFailures, App[None]):
    """The app: one client, one live feed, the screens in ``regtui.screens``."""

    CSS_PATH = "regtui.tcss"
    TITLE = "regtui"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys"),
        Binding("f", "activity", "Activity"),
        Binding("t", "change_theme", "Theme", show=False),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
    ]
    COMMANDS = App.COMMANDS | {ScreenCommands}

    status: reactive[dict[str, Any] | None] = reactive(None, always_update=True)
    """The last ``daemon.status``: socket, data dir, counts, ingest queue, our role."""

    def __init__(self, client: AsyncClient, *, config: str | None = None, socket: str | None = None,
                 autostart: bool = True, live: bool = True, theme: str | None = None,
                 time_format: TimeFormat | None = None, poll_s: float = 2.0) -> None:  # fmt: skip
        super().__init__()
        self.client = client
        self.config_path, self.socket_path = config, socket
        self.autostart, self.live, self.poll_s = autostart, live, poll_s
        self.time_format = time_format
        self.changed: Signal[list[Event]] = Signal(self, "changed")
        self.activity: deque[Event] = deque(maxlen=1000)
        self.marks: list[tuple[str, str]] = []
        self.connected = asyncio.Event()
        self._batch: list[Event] = []
        self._events_since_poll = 0
        self._status_ticks = 0
        self._last_flush = 0.0
        self._audit_seen = 0
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        from regtui.screens.models import ModelsScreen

        self.push_screen(ModelsScreen())
        self.connect_daemon()
        # Everything alive now (modules, classes, the widget tree) lives as long as the app. Without
        # this, each full collection walks it all again: measured 300 ms stalls while scrolling
        # (bench/tui.py). Frozen objects are never collected, so freeze once, when little is garbage.
        self.call_after_refresh(gc.freeze)

    async def on_unmount(self) -> None:
        await self.client.close()

    # ------------------------------------------------------------------ the daemon

    @work(exclusive=True, group="connect", exit_on_error=False)
    async def connect_daemon(self) -> None:
        try:
            got = await session.connect(self.client, autostart=self.autostart, config=self.config_path,
                                        socket=self.socket_path)  # fmt: skip
        except RegdError:
            self._start_live(lost=True)  # keep trying: the screens fill in when a daemon answers
            raise
        self.status = got.status
        self._audit_seen = await live.last_audit_id(self.client)
        self.connected.set()
        if got.started:
            s = got.status
            self.notify(f"socket {s['socket']}\ndata   {s['data_dir']}", title="started regd", timeout=15)
        self._start_live(lost=False)

    def _start_live(self, lost: bool) -> None:
        if self.live:
            self.run_worker(self._follow(lost), group="live", exclusive=True, exit_on_error=False)
            self.set_interval(self.poll_s / 4, self._status_tick)

    async def _follow(self, lost: bool) -> None:
        # Events arrive as pydantic models: importing them costs half a second of CPU on a busy
        # machine, so let the first screen paint, import off the loop, and freeze what it made
        # (see on_mount). What happens meanwhile reaches the screens through the status poll.
        await asyncio.sleep(FEED_DELAY_S)
        await asyncio.to_thread(importlib.import_module, "regd.domain")
        gc.freeze()
        await live.follow(self.client, self._live_event, self._live_lost, self._live_back, lost=lost,
                          on_subscribed=self.catch_up)  # fmt: skip

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call the daemon once it answers (waits while it is being started or reconnected)."""
        await self.connected.wait()
        return await self.client.call(method, params)

    @property
    def role(self) -> str:
        return str((self.status or {}).get("role", "viewer"))

    def format_time(self, value: str | datetime | None) -> str:
        moment = parse_time(value)
        if moment is None:
            return ""
        return self.time_format(moment) if self.time_format else default_time_format(moment)

    def toggle_mark(self, name: str, version: str) -> list[tuple[str, str]]:
        """Mark a version for diffing (at most two; the oldest mark goes)."""
        key = (name, version)
        if key in self.marks:
            self.marks.remove(key)
        else:
            self.marks = [*self.marks, key][-2:]
        return list(self.marks)

    # ------------------------------------------------------------------ live feed

    def _live_event(self, event: Event | live.CaughtUp) -> None:
        audit_id = event.data.get("audit_id")
        if isinstance(audit_id, int):
            if audit_id <= self._audit_seen:
                return  # the status poll caught up with it already
            self._audit_seen = audit_id
        if not self._batch:
            # a lone event shows at once; under a stream of them (a folder of checkpoints landing)
            # the screens reload at most once a second
            busy = time.monotonic() - self._last_flush < 1.0
            self.set_timer(1.0 if busy else 0.2, self._live_flush)
        self._batch.append(event)
        self._events_since_poll += 1

    def _live_flush(self) -> None:
        self._last_flush = time.monotonic()
        batch, self._batch = self._batch, []
        self.activity.extend(batch)
        shown = [e for e in batch if e.topic in ("version.registered", "version.stage")]
        if len(shown) <= NOTIFY_EACH:
            for event in shown:
                self.notify(describe_event(event), title="live", timeout=5)
        else:
            models = sorted({e.model or "?" for e in shown})
            self.notify(f"{len(shown)} changes in {', '.join(models[:4])}{' …' if len(models) > 4 else ''}", title="live")
        self.changed.publish(batch)

    def _live_lost(self, message: str) -> None:
        self.connected.clear()
        self.notify(f"lost the daemon, reconnecting…\n{message}", title="regd", severity="warning", timeout=6)

    def _live_back(self, status: dict[str, Any]) -> None:
        self.status = status
        self.connected.set()
        self.notify(f"connected to regd on {status.get('socket', '?')}", title="regd", timeout=4)
        self.changed.publish([])

    def _status_tick(self) -> None:
        # poll the ingest queue every tick while it is busy, every fourth tick otherwise
        self._status_ticks += 1
        if self.connected.is_set() and (ingest_active(self.status) or self._status_ticks % 4 == 0):
            self.poll_status()

    @work(exclusive=True, group="catch-up", exit_on_error=False)
    async def catch_up(self) -> None:
        """Once the feed is subscribed: the changes made between the first load and the subscription
        (the feed starts after the first paint), shown now rather than at the next status poll."""
        await self._show_missed()

    @work(exclusive=True, group="status", exit_on_error=False)
    async def poll_status(self) -> None:
        status = await self.client.call("daemon.status")
        quiet, self._events_since_poll = self._events_since_poll == 0, 0
        self.status = status
        if quiet:
            await self._show_missed()

    async def _show_missed(self) -> None:
        """Changes the feed did not bring (made before it subscribed, or dropped): the audit log has them."""
        if await live.last_audit_id(self.client) > self._audit_seen:
            missed = await live.catch_up(self.client, self._audit_seen)
            for event in missed:
                self._live_event(event)
            if not missed:
                self.changed.publish([])

    # ------------------------------------------------------------------ app-wide actions

    def action_help(self) -> None:
        from regtui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_activity(self) -> None:
        from regtui.screens.activity import ActivityScreen

        if not isinstance(self.screen, ActivityScreen):
            self.push_screen(ActivityScreen())


def main(argv: list[str] | None = None) -> int:
    """The ``regtui`` command."""
    from regtui.screens.help import keys_help

    parser = argparse.ArgumentParser(
        prog="regtui",
        description="The terminal UI of regd: models, versions, diffs, promotions, rollbacks, live.\n"
        "Starts the daemon (`regd start`) when none answers.",
        epilog=keys_help() + "\n\nctrl+p opens the command palette with every action; ? shows the keys in the app.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--socket", metavar="PATH", help="the daemon's socket (default: $REGD_SOCKET, then the config)")
    parser.add_argument("--config", metavar="PATH", help="config file (default: $REGD_CONFIG, then ~/.config/regd/regd.toml)")
    parser.add_argument("--theme", metavar="NAME", help="a Textual theme (textual-dark, nord, gruvbox, ...; t picks one in the app)")
    parser.add_argument("--no-start", action="store_true", help="do not start the daemon when none answers")
    args = parser.parse_args(argv)
    client = AsyncClient(args.socket, config=args.config)
    app = RegTUI(client, config=args.config, socket=args.socket, autostart=not args.no_start)
    if args.theme:
        if args.theme not in app.available_themes:
            parser.error(f"--theme {args.theme}: choose from {', '.join(sorted(app.available_themes))}")
        app.theme = args.theme
    app.run()
    return app.return_code or 0


__all__ = ["RegTUI", "main"]
