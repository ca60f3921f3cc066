"""The versions of a model, page by page: semver, stage badge, key metrics, aliases, who, when, warnings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from rich.text import Text
from textual.message import Message

from regtui.fmt import WARNING_LABELS, number
from regtui.widgets.paged_table import Cell, Column, PagedTable
from regtui.widgets.stage_badge import aliases_text, stage_text


class VersionRow(NamedTuple):
    """What a row needs of a version, and no more.

    The table keeps each row as a plain ``tuple`` of these fields (``pack``): a tuple of strings
    and numbers is untracked by the garbage collector after one pass, where 100,000 tracked
    objects would make every full collection a visible pause. ``VersionRow`` is the named view.
    """

    model: str
    version: str
    stage: str
    aliases: tuple[str, ...]
    metrics: tuple[float | None, ...]
    created_by: str
    created: str
    warnings: tuple[str, ...]

    @staticmethod
    def pack(raw: dict[str, Any], metric_names: Sequence[str], when: Callable[[Any], str]) -> tuple[Any, ...]:
        """A ``versions.list`` item as the plain tuple the table stores."""
        metrics = raw.get("metrics") or {}
        return (
            raw["model"],
            raw["version"],
            raw.get("stage", "none"),
            tuple(raw.get("aliases") or ()),
            tuple(metrics.get(k) for k in metric_names),
            raw.get("created_by", ""),
            when(raw.get("created_at")),
            tuple(raw.get("warnings") or ()),
        )


def version_columns(metric_names: Sequence[str]) -> list[Column]:
    metric_cols = [Column(name, max(8, min(len(name), 14)), "right") for name in metric_names]
    return [
        Column("version", 11),
        Column("stage", 10),
        *metric_cols,
        Column("aliases", 14),
        Column("created by", 10),
        Column("created", 16),
        Column("warnings", 24),
    ]


def version_cells(packed: tuple[Any, ...]) -> list[Cell]:
    row = VersionRow._make(packed)
    warnings = Text(" ".join(WARNING_LABELS.get(w, w) for w in row.warnings), style="yellow")
    if "unsafe_pickle" in row.warnings:
        warnings.stylize("bold red")
    return [
        Text(row.version, style="bold"),
        stage_text(row.stage),
        *(Text("—", style="dim") if v is None else number(v) for v in row.metrics),
        aliases_text(row.aliases),
        row.created_by,
        row.created,
        warnings,
    ]


class VersionTable(PagedTable):
    """A ``PagedTable`` of ``VersionRow``; space marks rows for the diff.

    No vertical scrollbar: Textual repaints all of it on every scroll, which cost as much as the
    rows themselves while holding page-down (bench/tui.py); the screen's status line says where
    the cursor is instead ("row 3,401 of 100,000").
    """

    DEFAULT_CSS = """
    VersionTable { scrollbar-size-vertical: 0; scrollbar-gutter: auto; }
    """

    class VersionHighlighted(Message):
        def __init__(self, row: VersionRow) -> None:
            super().__init__()
            self.row = row

    class VersionSelected(Message):
        def __init__(self, row: VersionRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, metric_names: Sequence[str] = (), *, page_size: int = 300, id: str | None = None) -> None:
        super().__init__(
            version_columns(metric_names), version_cells, lambda packed: packed[1],
            page_size=page_size, empty="no versions", marks=True, id=id,
        )  # fmt: skip
        self.metric_names = list(metric_names)

    def set_metrics(self, metric_names: Sequence[str]) -> None:
        self.metric_names = list(metric_names)
        self.set_columns(version_columns(metric_names))

    @property
    def current(self) -> VersionRow | None:  # type: ignore[override]
        packed = super().current
        return None if packed is None else VersionRow._make(packed)

    @property
    def rows(self) -> list[VersionRow]:
        """Every loaded row, named (a copy: for tests and small lists)."""
        return [VersionRow._make(packed) for packed in self.items]

    def on_paged_table_highlighted(self, event: PagedTable.Highlighted) -> None:
        event.stop()
        self.post_message(self.VersionHighlighted(VersionRow._make(event.item)))

    def on_paged_table_chosen(self, event: PagedTable.Chosen) -> None:
        event.stop()
        self.post_message(self.VersionSelected(VersionRow._make(event.item)))

    def patch_stage(self, version: str, stage: str) -> bool:
        """Show a stage change on a loaded row without reloading; False if the row is not loaded."""
        for i, packed in enumerate(self.items):
            if packed[1] == version:
                self.items[i] = (*packed[:2], stage, *packed[3:])
                self.refresh_rows()
                return True
        return False
