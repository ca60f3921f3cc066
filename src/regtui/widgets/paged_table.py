"""A table over a long list that loads one page at a time, as the cursor nears what is loaded.

Only the visible lines are ever rendered (the Line API), so 100,000 rows cost what 40 do; rows
arrive through a ``fetch(cursor) -> (items, next_cursor)`` coroutine, exactly the shape of the
API's ``{items, next_cursor}`` pages, and nothing past the cursor's neighbourhood is asked for.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from regtui.fmt import describe
from regtui.widgets.row_strip import Cell, Column, row_strip
from regtui.workers import ReportsWorkerFailures

__all__ = ["Cell", "Column", "PagedTable"]
STRIP_CACHE = 256
"""Rendered rows kept (a page-down repaints 40; a frame then costs dictionary look-ups)."""
Fetch = Callable[[str | None], Awaitable[tuple[Sequence[Any], str | None]]]


class PagedTable(ReportsWorkerFailures, ScrollView, can_focus=True):
    """Rows from pages fetched on demand; a cursor row; marks; a fixed header line."""

    DEFAULT_CSS = """
    PagedTable {
        height: 1fr;
        background: $surface;
        scrollbar-gutter: stable;
    }
    PagedTable > .paged-table--header { background: $panel; color: $text; text-style: bold; }
    PagedTable > .paged-table--cursor { background: $block-cursor-blurred-background; }
    PagedTable:focus > .paged-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: bold;
    }
    PagedTable > .paged-table--mark { color: $accent; text-style: bold; }
    PagedTable > .paged-table--note { color: $text-muted; text-style: italic; }
    PagedTable > .paged-table--error { color: $error; }
    """

    COMPONENT_CLASSES = {
        "paged-table--header",
        "paged-table--cursor",
        "paged-table--mark",
        "paged-table--note",
        "paged-table--error",
    }

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First row", show=False),
        Binding("end", "last", "Last loaded row", show=False),
        Binding("enter", "choose", "Open", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, init=False)

    class Highlighted(Message):
        """The cursor moved onto an item."""

        def __init__(self, table: PagedTable, item: Any) -> None:
            super().__init__()
            self.table = table
            self.item = item

        @property
        def control(self) -> PagedTable:
            return self.table

    class Chosen(Message):
        """Enter (or a double click) on an item."""

        def __init__(self, table: PagedTable, item: Any) -> None:
            super().__init__()
            self.table = table
            self.item = item

        @property
        def control(self) -> PagedTable:
            return self.table

    class PageLoaded(Message):
        """A page arrived: how many rows are loaded now and whether more exist."""

        def __init__(self, table: PagedTable, loaded: int, more: bool) -> None:
            super().__init__()
            self.table = table
            self.loaded = loaded
            self.more = more

        @property
        def control(self) -> PagedTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        cells: Callable[[Any], Sequence[Cell]],
        key: Callable[[Any], Hashable],
        *,
        page_size: int = 200,
        empty: str = "nothing to show",
        marks: bool = False,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self._cells = cells
        self._key = key
        self.page_size = page_size
        self.empty = empty
        self.show_marks = marks
        self.marked: list[Hashable] = []
        self.items: list[Any] = []
        self._fetch: Fetch | None = None
        self._next: str | None = None
        self._more = False
        self._loading = False
        self._error: str | None = None
        self._generation = 0
        self._keep: Hashable | None = None
        self._strips: dict[tuple[Any, ...], Strip] = {}

    # ------------------------------------------------------------------ data

    def load(self, fetch: Fetch, *, keep: Hashable | None = None) -> None:
        """Forget the rows and start again from the first page of ``fetch``.

        Args:
            keep: the key of a row to put the cursor back on if it is in the first page.
        """
        self._generation += 1
        self._fetch = fetch
        self.items = []
        self._strips.clear()
        self._next, self._more, self._loading, self._error = None, True, False, None
        self._keep = keep
        self.set_reactive(PagedTable.cursor_row, 0)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._resize()
        self._request_page()

    def set_items(self, items: Sequence[Any]) -> None:
        """Show a list that is already complete (no fetching)."""

        async def whole(_: str | None) -> tuple[Sequence[Any], str | None]:
            return items, None

        self.load(whole)

    def set_columns(self, columns: Sequence[Column]) -> None:
        self.columns = list(columns)
        self._resize()
        self.refresh_rows()

    @property
    def loading_more(self) -> bool:
        return self._loading

    @property
    def more(self) -> bool:
        return self._more

    @property
    def current(self) -> Any | None:
        """The item under the cursor, if any."""
        if 0 <= self.cursor_row < len(self.items):
            return self.items[self.cursor_row]
        return None

    def key_of(self, item: Any) -> Hashable:
        return self._key(item)

    def toggle_mark(self, key: Hashable, limit: int = 2) -> list[Hashable]:
        """Mark or unmark a row; the oldest mark goes when there would be more than ``limit``."""
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
            del self.marked[:-limit]
        self.refresh()
        return list(self.marked)

    def retry(self) -> None:
        """Ask again for the page that failed."""
        if self._error is not None:
            self._error, self._more = None, True
            self._request_page()
            self.refresh()

    def _request_page(self) -> None:
        if self._loading or not self._more or self._fetch is None or self._error is not None:
            return
        self._loading = True
        self.run_worker(
            self._load_page(self._generation, self._fetch, self._next),
            group="page", exclusive=True, exit_on_error=False,
        )  # fmt: skip

    async def _load_page(self, generation: int, fetch: Fetch, cursor: str | None) -> None:
        try:
            items, next_cursor = await fetch(cursor)
        except Exception as exc:
            if generation == self._generation:
                self._loading, self._error = False, describe(exc)
                self._resize()
                self.refresh()
            raise
        if generation != self._generation:
            return
        first = not self.items
        self.items.extend(items)
        self._next, self._more, self._loading = next_cursor, next_cursor is not None, False
        self._resize()
        self.refresh()
        self.post_message(self.PageLoaded(self, len(self.items), self._more))
        if first and self.items:
            keep = self._keep
            if keep is not None:
                for i, item in enumerate(self.items):
                    if self._key(item) == keep:
                        self.cursor_row = i
                        break
            if self.cursor_row == 0:
                self.post_message(self.Highlighted(self, self.items[0]))
        self._prefetch()

    def _prefetch(self) -> None:
        """Ask for the next page once the cursor or the view is within a page (or four screens) of the end.

        A held page-down moves ~30 screens a second: a page ahead gives the daemon a quarter of a
        second to answer before the cursor reaches the last loaded row.
        """
        if not self._more or self._loading:
            return
        bottom = max(self.cursor_row, int(self.scroll_y) + self.size.height)
        if len(self.items) - bottom <= max(self.page_size, 4 * self.size.height):
            self._request_page()

    def on_mount(self) -> None:
        # rendered rows carry the theme's colours: a new theme must repaint them
        self.watch(self.app, "theme", lambda _: self.refresh_rows(), init=False)

    # ------------------------------------------------------------------ geometry

    @property
    def row_width(self) -> int:
        return sum(c.width + 1 for c in self.columns) + (2 if self.show_marks else 0)

    def _resize(self) -> None:
        extra = 1 if (self._more or self._error or not self.items) else 0
        self.virtual_size = Size(self.row_width, 1 + len(self.items) + extra)

    @property
    def _page_height(self) -> int:
        return max(1, self.size.height - 2)

    # ------------------------------------------------------------------ cursor

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self.items) - 1)) if self.items else 0

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        item = self.current
        if item is not None and old != new:
            self.post_message(self.Highlighted(self, item))
        self._prefetch()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._prefetch()

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)  # less the header line
        top = int(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        self.cursor_row += 1

    def action_page_up(self) -> None:
        self.cursor_row -= self._page_height

    def action_page_down(self) -> None:
        self.cursor_row += self._page_height

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self.items) - 1

    def action_choose(self) -> None:
        item = self.current
        if item is not None:
            self.post_message(self.Chosen(self, item))

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y >= 1 and 0 <= row < len(self.items):
            self.cursor_row = row
            if event.chain > 1:
                self.action_choose()

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = max(self.row_width, self.size.width)
        scroll_x = int(self.scroll_x)
        if y == 0:
            key: tuple[Any, ...] = ("header", width)
            strip = self._strips.get(key)
            if strip is None:
                header = [Text(c.label) for c in self.columns]
                style = self.get_component_rich_style("paged-table--header")
                strip = self._strips[key] = self._strip(header, " ", width, style)
        else:
            row = int(self.scroll_y) + y - 1
            if row < len(self.items):
                item = self.items[row]
                marked = self.show_marks and self._key(item) in self.marked
                key = (row, row == self.cursor_row and (self.has_focus or 2), marked, width)
                strip = self._strips.get(key)
                if strip is None:
                    cursor = self.get_component_rich_style("paged-table--cursor") if row == self.cursor_row else None
                    strip = self._strips[key] = self._strip(self._cells(item), "◆" if marked else " ", width, cursor)
                    if len(self._strips) > STRIP_CACHE:
                        del self._strips[next(iter(self._strips))]
            elif row == len(self.items) and (self._more or self._error or not self.items):
                note, style = self._note()
                strip = Strip([Segment(note.ljust(width), style)], width).apply_style(self.rich_style)
            else:
                return Strip.blank(self.size.width, self.rich_style)
        return strip.crop(scroll_x, scroll_x + self.size.width)

    def refresh_rows(self) -> None:
        """Forget the rendered rows (their items changed) and repaint."""
        self._strips.clear()
        self.refresh()

    def _note(self) -> tuple[str, Style]:
        if self._error is not None:
            return f" ⚠ {self._error.splitlines()[0]} (r to retry)", self.get_component_rich_style("paged-table--error")
        return (" loading…" if self._more else f" {self.empty}"), self.get_component_rich_style("paged-table--note")

    def _strip(self, cells: Sequence[Cell], mark: str, width: int, row_style: Style | None) -> Strip:
        mark_style = self.get_component_rich_style("paged-table--mark") if self.show_marks else None
        return row_strip(self.columns, cells, width, self.rich_style, row_style, mark if self.show_marks else None,
                         mark_style)  # fmt: skip
