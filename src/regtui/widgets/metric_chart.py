"""A metric across a model's versions (oldest to newest), the production version marked."""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot


class MetricChart(PlotextPlot):
    """``plot_metric`` draws one metric; the production version gets a red marker and line."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 10; }
    """

    def plot_metric(self, versions: list[dict[str, Any]], metric: str, production: str | None, title: str) -> int:
        """Draw ``metric`` for ``versions`` (oldest first); return how many points were drawn."""
        plt = self.plt
        plt.clear_figure()
        points = [(i, v["metrics"][metric], v["version"]) for i, v in enumerate(versions) if metric in v.get("metrics", {})]
        plt.title(title)
        plt.xlabel("version")
        plt.ylabel(metric)
        if points:
            xs, ys, labels = zip(*points, strict=True)
            plt.plot(list(xs), list(ys), marker="braille", color="cyan")
            step = max(1, len(points) // 6)
            shown = list(range(0, len(points), step))
            plt.xticks([xs[i] for i in shown], [labels[i] for i in shown])
            for x, y, label in points:
                if label == production:
                    plt.vline(x, color="red")
                    plt.scatter([x], [y], marker="●", color="red", label=f"production {label}")
        self.refresh()
        return len(points)
