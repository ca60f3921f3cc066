"""The report's plot: p50 latency of each operation against the number of versions, regd beside MLflow."""

from __future__ import annotations

import io

PLOT_NAME = "bench-latency.png"

# (figure key prefix, label) for the operations core measures at every size
OPS = [("get", "get by alias"), ("alias", "alias set"), ("search", "search by tag"), ("register", "register")]


def latency_plot(sizes: list[tuple[int, str, dict[str, float]]]) -> bytes:
    """A PNG of p50 latency (log) against versions (log): solid regd, dashed MLflow, one colour per operation.

    ``sizes`` holds (number of versions, its label, that size's figures) as bench core records them:
    ``<op>_p50_ms_<label>`` for regd and ``<op>_mlflow_p50_ms_<label>`` for MLflow where it ran.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on a benchmark machine
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (op, label), colour in zip(OPS, colours, strict=False):
        for who, key, style in (("regd", f"{op}_p50_ms_", "-"), ("MLflow", f"{op}_mlflow_p50_ms_", "--")):
            points = [(n, figures[key + tag]) for n, tag, figures in sizes if key + tag in figures]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", color=colour, label=f"{who}: {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("versions in the registry")
    ax.set_ylabel("p50 latency per call (ms)")
    ax.set_title("regd (solid) vs MLflow on SQLite (dashed), same machine, same run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


__all__ = ["PLOT_NAME", "latency_plot"]
