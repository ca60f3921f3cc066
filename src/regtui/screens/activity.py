"""The activity feed: the recent audit log, with live events added as they happen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header

from regtui.fmt import parse_time, ref
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.ingest_bar import IngestBar

if TYPE_CHECKING:
    from regd.domain import Event

RECENT = 200
STYLES = {"registered": "green", "stage": "cyan", "archived": "yellow", "rolled_back": "bold yellow",
          "force": "bold red", "guard": "red", "approved": "magenta", "alias": "magenta"}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    at: datetime
    action: str
    model: str | None
    version: str | None
    actor: str
    detail: str
    audit_id: int | None


def from_audit(row: dict[str, Any]) -> Entry:
    change = f"{row.get('from') or ''} → {row.get('to') or ''}" if row.get("from") or row.get("to") else ""
    detail = "; ".join(filter(None, [change, row.get("reason") or ""]))
    return Entry(parse_time(row.get("at")) or datetime.now(UTC), row.get("action", ""), row.get("model"),
                 row.get("version"), row.get("actor", ""), detail, row.get("id"))  # fmt: skip


def from_event(event: Event) -> Entry:
    data = event.data
    change = f"{data.get('from', '')} → {data.get('to', '')}" if "from" in data or "to" in data else ""
    detail = "; ".join(filter(None, [change, str(data.get("reason") or "")]))
    return Entry(event.at, str(data.get("action") or event.topic), event.model, event.version, event.actor or "",
                 detail, data.get("audit_id"))  # fmt: skip


class ActivityScreen(RegScreen):
    """Registrations, stage changes, approvals, aliases and refusals, newest on top."""

    BINDINGS = [
        Binding("enter", "open", "Open version"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[Any, Entry] = {}
        self.sub_title = "activity"

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="activity-table", cursor_type="row")
        yield IngestBar()
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for label in ("when", "what", "version", "by", "detail"):
            table.add_column(label, key=label)
        for event in self.regtui.activity:
            self._add(from_event(event))
        table.focus()
        self.reload()

    def reload(self) -> None:
        self.load_recent()

    @work(exclusive=True, group="activity", exit_on_error=False)
    async def load_recent(self) -> None:
        page = await self.regtui.call("audit.list", {"limit": RECENT})
        for row in page["items"]:
            self._add(from_audit(row))
        self.show()

    def on_registry_changed(self, events: list[Event]) -> None:
        if not events:
            self.reload()
            return
        for event in events:
            self._add(from_event(event))
        self.show()

    def _add(self, entry: Entry) -> None:
        key = entry.audit_id if entry.audit_id is not None else (entry.at, entry.action, entry.model, entry.version)
        self.entries[key] = entry

    def show(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        for key, e in sorted(self.entries.items(), key=lambda kv: kv[1].at, reverse=True)[: RECENT * 5]:
            style = next((s for word, s in STYLES.items() if word in e.action), "")
            table.add_row(self.regtui.format_time(e.at), Text(e.action, style=style),
                          ref(e.model or "", e.version) if e.model else "", e.actor, e.detail, key=str(key))  # fmt: skip
        self.sub_title = f"activity · {len(self.entries)} events"

    def _entry(self) -> Entry | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((e for k, e in self.entries.items() if str(k) == key), None)

    def selected(self) -> Selection | None:
        e = self._entry()
        return (e.model, e.version) if e and e.model else None

    @on(DataTable.RowSelected, "#activity-table")
    def _chosen(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        from regtui.screens.detail import VersionDetailScreen

        e = self._entry()
        if e and e.model and e.version:
            self.app.push_screen(VersionDetailScreen(e.model, e.version))
