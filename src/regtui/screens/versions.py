"""The versions of one model, loaded a page at a time; a search box taking the filter language."""

from __future__ import annotations

import re
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Input, Label, Static

from regd.errors import InvalidParams
from regtui.fmt import caret_line, filter_error, metric_columns
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.ingest_bar import IngestBar
from regtui.widgets.paged_table import PagedTable
from regtui.widgets.version_table import VersionRow, VersionTable

PAGE = 300
METRIC_COLUMNS = 3
_ORDER_BY = re.compile(r"\s+order\s+by\s+(?P<order>.+)$", re.IGNORECASE)


def split_order(text: str) -> tuple[str, str | None]:
    """``metrics.auc > 0.9 order by metrics.auc desc`` -> the filter and the ``order_by``."""
    m = _ORDER_BY.search(text)
    if m is None:
        if text.lower().startswith("order by "):
            return "", text[9:].strip() or None
        return text, None
    return text[: m.start()].strip(), m.group("order").strip()


class VersionsScreen(RegScreen):
    """Every version of a model, newest first; enter for details, space to mark two for a diff."""

    BINDINGS = [
        Binding("enter", "open", "Details"),
        Binding("space", "mark", "Mark"),
        Binding("d", "diff", "Diff"),
        Binding("slash", "search", "Search"),
        Binding("p", "promote", "Promote"),
        Binding("a", "approve", "Approve"),
        Binding("x", "archive", "Archive"),
        Binding("b", "rollback", "Rollback"),
        Binding("c", "chart", "Chart"),
        Binding("o", "order", "Newest/oldest", show=False),
        Binding("y", "copy_path", "Copy path", show=False),
        Binding("Y", "copy_command", "Copy command", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model_name = name
        self.model: dict[str, Any] = {}
        self.order = "newest"
        self.filter_text = ""
        self.order_by: str | None = None
        self.stale = False
        self.sub_title = name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(
            placeholder="/ search: metrics.auc > 0.9 and tags.team = 'risk' order by metrics.auc desc",
            compact=True, id="versions-search",
        )  # fmt: skip
        yield Static("", id="search-error")
        yield VersionTable(id="versions-table", page_size=PAGE)
        yield Label("", id="versions-status")
        yield IngestBar()
        yield Footer()

    @property
    def table(self) -> VersionTable:
        return self.query_one(VersionTable)

    def on_mount(self) -> None:
        super().on_mount()
        self.table.focus()
        self.reload()

    def reload(self, keep: str | None = None) -> None:
        self.stale = False
        self.load_model(keep)

    @work(exclusive=True, group="model", exit_on_error=False)
    async def load_model(self, keep: str | None = None) -> None:
        self.model = await self.regtui.call("models.get", {"name": self.model_name})
        names = metric_columns(self.model.get("latest_metrics") or {}, METRIC_COLUMNS)
        if names != self.table.metric_names:
            self.table.set_metrics(names)
        cur = self.table.current
        self.table.load(self._fetch, keep=keep or (cur.version if cur else None))
        self.table.marked = [v for (m, v) in self.regtui.marks if m == self.model_name]
        self._show_status()

    async def _fetch(self, cursor: str | None) -> tuple[list[tuple[Any, ...]], str | None]:
        """One page of the list, or of the search when there is a filter."""
        app = self.regtui
        if self.filter_text or self.order_by:
            prefix = f"name = '{self.model_name}'" + (" and (" if self.filter_text else "")
            params = {
                "filter": prefix + self.filter_text + (")" if self.filter_text else ""),
                "order_by": self.order_by, "limit": PAGE, "cursor": cursor,
            }  # fmt: skip
            try:
                page = await app.call("versions.search", params)
            except InvalidParams as exc:
                self._show_search_error(exc, len(prefix))
                return [], None
        else:
            params = {"name": self.model_name, "order": self.order, "limit": PAGE, "cursor": cursor}
            page = await app.call("versions.list", params)
        names = self.table.metric_names
        rows = [VersionRow.pack(item, names, app.format_time) for item in page["items"]]
        return rows, page.get("next_cursor")

    # ------------------------------------------------------------------ status line

    @on(PagedTable.PageLoaded)
    def _page_loaded(self) -> None:
        self._show_status()

    def _show_status(self) -> None:
        loaded = len(self.table.items)
        total = self.model.get("versions")
        parts = []
        if self.filter_text or self.order_by:
            parts.append(f"{loaded:,}{'+' if self.table.more else ''} matching")
            if self.order_by:
                parts.append(f"order by {self.order_by}")
        else:
            parts.append(f"{loaded:,} of {total:,} loaded" if isinstance(total, int) else f"{loaded:,} loaded")
            parts.append(f"{self.order} first")
        if loaded:
            parts.insert(0, f"row {self.table.cursor_row + 1:,}")
        prod = self.model.get("production")
        parts.append(f"production {prod}" if prod else "no production version")
        if self.stale:
            parts.append("new versions: r to reload")
        self.query_one("#versions-status", Label).update(" · ".join(parts), layout=False)  # a fixed-size line

    # ------------------------------------------------------------------ search

    def action_search(self) -> None:
        self.query_one("#versions-search", Input).focus()

    @on(Input.Submitted, "#versions-search")
    def _search(self, event: Input.Submitted) -> None:
        self.filter_text, self.order_by = split_order(event.value.strip())
        self._clear_search_error()
        self.table.focus()
        self.table.load(self._fetch)
        self._show_status()

    def _show_search_error(self, exc: InvalidParams, prefix_len: int) -> None:
        data = exc.data if isinstance(exc.data, dict) else {}
        if "order_by" in data:
            message, column = exc.message, None
        else:
            message, column = filter_error(exc, prefix_len, self.filter_text)
        box = self.query_one("#search-error", Static)
        box.update(caret_line(self.filter_text, column, message))
        box.add_class("-shown")

    def _clear_search_error(self) -> None:
        box = self.query_one("#search-error", Static)
        box.update("")
        box.remove_class("-shown")

    # ------------------------------------------------------------------ selection and actions

    def selected(self) -> Selection | None:
        row = self.table.current
        return (self.model_name, row.version) if row else (self.model_name, None)

    @on(VersionTable.VersionHighlighted)
    def _moved(self) -> None:
        self._show_status()

    @on(VersionTable.VersionSelected)
    def _chosen(self, event: VersionTable.VersionSelected) -> None:
        self._open(event.row.version)

    def action_open(self) -> None:
        row = self.table.current
        if row is not None:
            self._open(row.version)

    def _open(self, version: str) -> None:
        from regtui.screens.detail import VersionDetailScreen

        self.app.push_screen(VersionDetailScreen(self.model_name, version))

    def action_order(self) -> None:
        self.order = "oldest" if self.order == "newest" else "newest"
        self.table.load(self._fetch)
        self._show_status()

    def action_diff(self) -> None:
        self.open_diff(self.selected(), production=self.model.get("production"))

    def marks_changed(self) -> None:
        self.table.marked = [v for (m, v) in self.regtui.marks if m == self.model_name]
        self.table.refresh()

    def on_screen_resume(self) -> None:
        self.marks_changed()

    def action_back(self) -> None:
        search = self.query_one("#versions-search", Input)
        if search.has_focus:
            self.table.focus()
            return
        super().action_back()

    # ------------------------------------------------------------------ live

    def on_registry_changed(self, events: list[Any]) -> None:
        mine = [e for e in events if e.model == self.model_name]
        if events and not mine:
            return
        if mine and all(e.topic == "version.stage" for e in mine):
            # a stage change: patch the loaded rows in place, wherever the cursor is
            for e in mine:
                if e.version and e.data.get("to"):
                    self.table.patch_stage(e.version, str(e.data["to"]))
            self.load_model_info()
        elif self.table.cursor_row < PAGE // 2:
            self.reload()
        else:
            # deep in the list: reloading would throw the reader back to the top
            self.stale = True
            self.load_model_info()

    @work(exclusive=True, group="model-info", exit_on_error=False)
    async def load_model_info(self) -> None:
        self.model = await self.regtui.call("models.get", {"name": self.model_name})
        self._show_status()
