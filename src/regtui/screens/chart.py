"""A metric across the versions of a model, production marked (``m`` for the next metric)."""

from __future__ import annotations

from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Label

from regtui.fmt import metric_columns
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.metric_chart import MetricChart

POINTS = 500
"""The newest this many versions: a chart of 100,000 points says no more than one of 500."""


class ChartScreen(RegScreen):
    """The newest versions' metric, oldest on the left."""

    BINDINGS = [
        Binding("m", "metric(1)", "Next metric"),
        Binding("M", "metric(-1)", "Previous metric"),
        Binding("r", "refresh", "Refresh"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.model_name = name
        self.versions: list[dict[str, Any]] = []
        self.metrics: list[str] = []
        self.metric_index = 0
        self.production: str | None = None
        self.sub_title = f"{name} · chart"

    def compose(self) -> ComposeResult:
        yield Header()
        yield Label("loading…", id="chart-note")
        yield MetricChart(id="metric-chart")
        yield Footer()

    def on_mount(self) -> None:
        super().on_mount()
        self.reload()

    def selected(self) -> Selection | None:
        return self.model_name, self.production

    def on_registry_changed(self, events: list[Any]) -> None:
        if not events or any(e.model == self.model_name for e in events):
            self.reload()

    def reload(self) -> None:
        self.load_points()

    @work(exclusive=True, group="chart", exit_on_error=False)
    async def load_points(self) -> None:
        model = await self.regtui.call("models.get", {"name": self.model_name})
        page = await self.regtui.call("versions.list", {"name": self.model_name, "order": "newest", "limit": POINTS})
        self.versions = list(reversed(page["items"]))
        self.production = model.get("production")
        seen: dict[str, float] = {}
        for v in self.versions:
            seen.update(v.get("metrics") or {})
        current = self.metrics[self.metric_index] if self.metrics else None
        self.metrics = metric_columns(seen, len(seen))
        self.metric_index = self.metrics.index(current) if current in self.metrics else 0
        self.draw()

    def draw(self) -> None:
        note = self.query_one("#chart-note", Label)
        chart = self.query_one(MetricChart)
        if not self.metrics:
            note.update(f"{self.model_name}: no metrics recorded on its versions")
            chart.plot_metric([], "", None, self.model_name)
            return
        metric = self.metrics[self.metric_index]
        n = chart.plot_metric(self.versions, metric, self.production, f"{self.model_name} · {metric}")
        prod = f"production {self.production} in red" if self.production else "no production version"
        more = f" (newest {POINTS})" if len(self.versions) >= POINTS else ""
        note.update(f"{metric}: {n} of {len(self.versions)} versions{more} · {prod} · m: next metric ({self.metric_index + 1}/{len(self.metrics)})")

    def action_metric(self, step: int) -> None:
        if self.metrics:
            self.metric_index = (self.metric_index + step) % len(self.metrics)
            self.draw()
