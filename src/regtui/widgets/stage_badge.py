"""A version's stage as a coloured badge, in tables (``stage_text``) and headers (``StageBadge``)."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

_STYLES = {
    "production": ("PROD", "bold black on green"),
    "staging": ("STAGING", "bold black on yellow"),
    "archived": ("archived", "dim"),
    "none": ("", ""),
}


def stage_text(stage: str, *, rolled_back: bool = False) -> Text:
    """The stage as a short coloured label (empty for ``none``)."""
    label, style = _STYLES.get(stage, (stage, "bold"))
    if rolled_back and stage == "archived":
        label = "rolled-back"
    return Text(f" {label} " if label and style.startswith("bold") else label, style=style)


def aliases_text(aliases: list[str] | tuple[str, ...]) -> Text:
    return Text(" ".join(f"@{a}" for a in aliases), style="magenta")


class StageBadge(Static):
    """A stage badge that follows ``stage``."""

    DEFAULT_CSS = """
    StageBadge { width: auto; height: 1; margin: 0 1; }
    """

    def __init__(self, stage: str = "none", *, id: str | None = None) -> None:
        super().__init__(stage_text(stage), id=id)
        self.stage = stage

    def show(self, stage: str, *, rolled_back: bool = False) -> None:
        self.stage = stage
        self.update(stage_text(stage, rolled_back=rolled_back) if stage != "none" else Text("no stage", style="dim"))
