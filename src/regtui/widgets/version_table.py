"""The versions of a model, page by page: semver, stage badge, key metrics, aliases, who, when, warnings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual.message import Message

from regtui.fmt import WARNING_LABELS, number
from regtui.widgets.paged_table import Cell, Column, PagedTable
from regtui.widgets.stage_badge import aliases_text, stage_text


@dataclass(frozen=True, slots=True)
class VersionRow:
    """What a row needs of a version, and no more: 100,000 of these must stay small."""

    model: str
    version: str
    stage: str
    aliases: tuple[str, ...]
    metrics: tuple[float | None, ...]
    created_by: str
    created: str
    warnings: tuple[str, ...]

    @classmethod
    def from_summary(cls, raw: dict[str, Any], metric_names: Sequence[str], when: Callable[[Any], str]) -> VersionRow:
        metrics = raw.get("metrics") or {}
        return cls(
            model=raw["model"],
            version=raw["version"],
            stage=raw.get("stage", "none"),
            aliases=tuple(raw.get("aliases") or ()),
            metrics=tuple(metrics.get(k) for k in metric_names),
            created_by=raw.get("created_by", ""),
            created=when(raw.get("created_at")),
            warnings=tuple(raw.get("warnings") or ()),
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


def version_cells(row: VersionRow) -> list[Cell]:
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
    """A ``PagedTable`` of ``VersionRow``; space marks rows for the diff."""

    class VersionHighlighted(Message):
        def __init__(self, row: VersionRow) -> None:
            super().__init__()
            self.row = row

    class VersionSelected(Message):
        def __init__(self, row: VersionRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, metric_names: Sequence[str] = (), *, page_size: int = 300, id: str | None = None) -> None:  # noqa: A002
        super().__init__(
            version_columns(metric_names), version_cells, lambda r: r.version,
            page_size=page_size, empty="no versions", marks=True, id=id,
        )  # fmt: skip
        self.metric_names = list(metric_names)

    def set_metrics(self, metric_names: Sequence[str]) -> None:
        self.metric_names = list(metric_names)
        self.set_columns(version_columns(metric_names))

    def on_paged_table_highlighted(self, event: PagedTable.Highlighted) -> None:
        event.stop()
        self.post_message(self.VersionHighlighted(event.item))

    def on_paged_table_chosen(self, event: PagedTable.Chosen) -> None:
        event.stop()
        self.post_message(self.VersionSelected(event.item))

    def patch_stage(self, version: str, stage: str) -> bool:
        """Show a stage change on a loaded row without reloading; False if the row is not loaded."""
        for i, row in enumerate(self.items):
            if row.version == version:
                self.items[i] = replace(row, stage=stage)
                self.refresh()
                return True
        return False
