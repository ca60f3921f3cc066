"""The first screen: every model with its production and latest versions, filter as you type, sort by any column."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Input, Static

from regtui.fmt import key_metric, number, parse_time
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.ingest_bar import IngestBar
from regtui.widgets.stage_badge import aliases_text

PAGE = 1000
MAX_MODELS = 20_000
"""Load at most this many models (the filter and the sort work on what is loaded)."""


EMPTY = (
    "No models yet. Drop a model file into a watched folder (regd watch add DIR),\n"
    "or register one: regd register model.safetensors --name fraud"
)


def semver_key(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in (version or "").split("."))
    except ValueError:
        return ()


@dataclass(frozen=True)
class ModelColumn:
    key: str
    label: str


COLUMNS = [
    ModelColumn("name", "model"),
    ModelColumn("production", "production"),
    ModelColumn("latest", "latest"),
    ModelColumn("versions", "versions"),
    ModelColumn("metric", "key metric"),
    ModelColumn("aliases", "aliases"),
    ModelColumn("updated", "last change"),
]


def sort_value(model: dict[str, Any], column: str) -> Any:
    """What a column sorts by (versions as semver, times as times, metrics as numbers)."""
    if column in ("production", "latest"):
        return semver_key(model.get(column))
    if column == "versions":
        return model.get("versions", 0)
    if column == "metric":
        name = key_metric(model.get("latest_metrics") or {})
        return (name or "", model["latest_metrics"][name] if name else float("-inf"))
    if column == "aliases":
        return " ".join(sorted(model.get("aliases") or {}))
    if column == "updated":
        return parse_time(model.get("updated_at")) or datetime.min.replace(tzinfo=UTC)
    return str(model.get("name", "")).lower()


def matches(model: dict[str, Any], text: str) -> bool:
    """Filter: a glob when it has ``*?[``, else a case-insensitive substring of the name."""
    name = str(model.get("name", ""))
    if any(ch in text for ch in "*?["):
        return fnmatch.fnmatchcase(name.lower(), text.lower())
    return text.lower() in name.lower()


class ModelsScreen(RegScreen):
    """Models, production and latest versions, counts, aliases, last change and a key metric."""

    BINDINGS = [
        Binding("enter", "open", "Versions"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("c", "chart", "Chart"),
        Binding("d", "diff", "Diff"),
        Binding("b", "rollback", "Rollback"),
        Binding("y", "copy_path", "Copy path", show=False),
        Binding("Y", "copy_command", "Copy command", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="models-screen")
        self.models: list[dict[str, Any]] = []
        self.sort_column = "name"
        self.sort_reverse = False
        self.filter_text = ""
        self.loaded = False
        self.sub_title = "models"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder="/ filter models: substring or glob (fraud*)", compact=True, id="models-filter")
        yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
        yield Static(EMPTY, id="models-empty")
        yield IngestBar()
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column.label, key=column.key)
        table.focus()
        self.reload()

    def reload(self) -> None:
        self.load_models()

    def on_registry_changed(self, events: list[Any]) -> None:
        if not events or any(e.topic.startswith(("version", "alias", "model")) for e in events):
            self.reload()

    @work(exclusive=True, group="models", exit_on_error=False)
    async def load_models(self) -> None:
        items: list[dict[str, Any]] = []
        cursor = None
        while len(items) < MAX_MODELS:
            page = await self.regtui.call("models.list", {"limit": PAGE, "cursor": cursor})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        self.models = items
        self.loaded = True
        self.show_models()

    def show_models(self) -> None:
        table = self.query_one(DataTable)
        keep = self.selected()
        table.clear()
        rows = [m for m in self.models if matches(m, self.filter_text)] if self.filter_text else list(self.models)
        rows.sort(key=lambda m: sort_value(m, self.sort_column), reverse=self.sort_reverse)
        app = self.regtui
        for m in rows:
            metric = key_metric(m.get("latest_metrics") or {})
            metric_cell = Text.assemble((metric + " ", "dim"), number(m["latest_metrics"][metric])) if metric else Text("")
            prod = m.get("production")
            name = Text(m["name"], style="dim strike" if m.get("deprecated") else "bold")
            table.add_row(
                name,
                Text(prod, style="bold green") if prod else Text("—", style="dim"),
                m.get("latest") or "",
                Text(f"{m.get('versions', 0):,}", justify="right"),
                metric_cell,
                aliases_text([f"{a}={v}" for a, v in sorted((m.get("aliases") or {}).items())]),
                app.format_time(m.get("updated_at")),
                key=m["name"],
            )
        shown = len(rows)
        total = len(self.models)
        self.query_one("#models-empty").display = total == 0
        noun = "model" if total == 1 else "models"
        self.sub_title = f"{total:,} {noun}" if shown == total else f"{shown:,} of {total:,} {noun}"
        if keep is not None and any(m["name"] == keep[0] for m in rows):
            table.move_cursor(row=table.get_row_index(keep[0]), animate=False)

    # ------------------------------------------------------------------ selection

    def _model(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((m for m in self.models if m["name"] == key), None)

    def selected(self) -> Selection | None:
        m = self._model()
        if m is None:
            return None
        return m["name"], m.get("production") or m.get("latest")

    @on(DataTable.RowSelected, "#models-table")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        from regtui.screens.versions import VersionsScreen

        m = self._model()
        if m is not None:
            self.app.push_screen(VersionsScreen(m["name"]))

    def action_diff(self) -> None:
        m = self._model()
        if m is not None:
            self.open_diff((m["name"], m.get("latest")), production=m.get("production"))

    # ------------------------------------------------------------------ filter and sort

    def action_filter(self) -> None:
        self.query_one("#models-filter", Input).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#models-filter", Input)
        if box.value:
            box.value = ""
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#models-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        if self.loaded:
            self.show_models()

    @on(Input.Submitted, "#models-filter")
    def _filter_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def action_sort(self) -> None:
        table = self.query_one(DataTable)
        self._sort_by(COLUMNS[table.cursor_column].key if table.cursor_type == "cell" else self._next_sort_column())

    def _next_sort_column(self) -> str:
        # rows have no column cursor: `s` walks the columns, each ascending then descending
        keys = [c.key for c in COLUMNS]
        if not self.sort_reverse:
            return self.sort_column
        return keys[(keys.index(self.sort_column) + 1) % len(keys)]

    def _sort_by(self, column: str) -> None:
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False
        label = next(c.label for c in COLUMNS if c.key == column)
        self.notify(f"sorted by {label} {'descending' if self.sort_reverse else 'ascending'}", timeout=2)
        self.show_models()

    @on(DataTable.HeaderSelected, "#models-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self._sort_by(str(event.column_key.value))
