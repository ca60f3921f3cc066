"""One table row as a Strip of segments, built directly: Rich's Text layout costs ten times as much per line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

Cell = str | Text
"""A cell: plain text, or a Text with one style (stage badges, warnings)."""


@dataclass(frozen=True)
class Column:
    """A column: its header, its width in cells and how its text sits."""

    label: str
    width: int
    justify: Literal["left", "right"] = "left"


def row_strip(columns: Sequence[Column], cells: Sequence[Cell], width: int, base: Style, row_style: Style | None,
              mark: str | None = None, mark_style: Style | None = None) -> Strip:  # fmt: skip
    """Lay ``cells`` out in ``columns`` (truncated with an ellipsis), padded to ``width``.

    Args:
        base: the widget's style, under everything.
        row_style: over everything (the cursor row's highlight).
        mark: a one-character mark column in front (None: no mark column).
    """
    post = row_style or Style()
    plain_style = base + post
    segments: list[Segment] = []
    used = 0
    if mark is not None:
        segments.append(Segment(f"{mark or ' '} ", base + (mark_style or Style()) + post))
        used = 2
    for column, cell in zip(columns, cells, strict=False):
        if isinstance(cell, Text):
            plain, style = cell.plain, _text_style(cell)
        else:
            plain, style = str(cell), None
        size = cell_len(plain)
        if size > column.width:
            plain, size = set_cell_size(plain, column.width - 1) + "…", column.width
        pad = " " * (column.width - size)
        styled = plain_style if style is None else base + style + post
        if column.justify == "right":
            segments += [Segment(pad, plain_style), Segment(plain, styled), Segment(" ", plain_style)]
        else:
            segments += [Segment(plain, styled), Segment(pad + " ", plain_style)]
        used += column.width + 1
    if used < width:
        segments.append(Segment(" " * (width - used), plain_style))
    return Strip(segments, width)


def _text_style(text: Text) -> Style | None:
    """A cell's one style: the Text's own, else its first span's."""
    style = text.style or (text.spans[0].style if text.spans else None)
    if not style:
        return None
    return Style.parse(style) if isinstance(style, str) else style
