"""Everything about one version, in tabs: overview, metrics and params, signature, environment,
lineage, files, history and audit."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Label, Static, TabbedContent, TabPane

from regtui.fmt import NOT_AVAILABLE, WARNING_LABELS, describe, is_missing_method
from regtui.screens import detail_tabs as tabs
from regtui.screens.base import RegScreen, Selection
from regtui.widgets.lineage_tree import LineageTree
from regtui.widgets.paged_table import PagedTable
from regtui.widgets.stage_badge import StageBadge, aliases_text

TABS = [
    ("overview", "Overview"),
    ("metrics", "Metrics/params"),
    ("signature", "Signature"),
    ("environment", "Env"),
    ("lineage", "Lineage"),
    ("files", "Files"),
    ("history", "History/audit"),
]
AUDIT_ROWS = 200


class VersionDetailScreen(RegScreen):
    """One version; the lifecycle actions act on it, ``d`` diffs it with the marked one or production."""

    BINDINGS = [
        Binding("p", "promote", "Promote"),
        Binding("a", "approve", "Approve"),
        Binding("x", "archive", "Archive"),
        Binding("b", "rollback", "Rollback"),
        Binding("d", "diff", "Diff"),
        Binding("space", "mark", "Mark", show=False),
        Binding("c", "chart", "Chart"),
        Binding("y", "copy_path", "Copy path", show=False),
        Binding("Y", "copy_command", "Copy command", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        Binding("escape", "back", "Back"),
        *(Binding(str(i), f"tab('{key}')", f"{title} tab", show=False) for i, (key, title) in enumerate(TABS, 1)),
    ]

    def __init__(self, name: str, version: str) -> None:
        super().__init__()
        self.model_name = name
        self.version_ref = version
        self.version: dict[str, Any] | None = None
        self.production: str | None = None
        self.sub_title = f"{name}:{version}"

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="detail-head"):
            yield Label(Text(f"{self.model_name}:{self.version_ref}", style="bold"), id="detail-title")
            yield StageBadge(id="detail-stage")
            yield Label("", id="detail-aliases")
            yield Label("", id="detail-warnings")
        with TabbedContent(id="detail-tabs"):
            for key, title in TABS:
                with TabPane(title, id=f"tab-{key}"):
                    yield from self._tab_body(key)
        yield Footer()

    def _tab_body(self, key: str) -> ComposeResult:
        if key == "signature":
            with VerticalScroll(classes="tab-top"):
                yield Static("loading…", id="body-signature")
            yield PagedTable(tabs.TENSOR_COLUMNS, tabs.tensor_cells, lambda t: t.get("name"),
                             page_size=100_000, empty="no tensors recorded", id="tensor-table")  # fmt: skip
        elif key == "lineage":
            with VerticalScroll(classes="tab-top"):
                yield Static("loading…", id="body-lineage")
            yield LineageTree(id="lineage-tree")
        else:
            with VerticalScroll():
                yield Static("loading…", id=f"body-{key}")

    def on_mount(self) -> None:
        super().on_mount()
        self.reload()

    def reload(self) -> None:
        self.load_version()
        self.load_history()
        self.load_lineage()
        self.load_production()

    def on_registry_changed(self, events: list[Any]) -> None:
        if not events or any(e.model == self.model_name for e in events):
            self.reload()

    def selected(self) -> Selection | None:
        return self.model_name, (self.version or {}).get("version", self.version_ref)

    def _body(self, key: str) -> Static:
        return self.query_one(f"#body-{key}", Static)

    # ------------------------------------------------------------------ loading

    @work(exclusive=True, group="version", exit_on_error=False)
    async def load_version(self) -> None:
        v = await self.regtui.call("versions.get", {"name": self.model_name, "version": self.version_ref, "tensors": True})
        self.version = v
        when = self.regtui.format_time
        self.query_one("#detail-title", Label).update(Text(f"{v['model']}:{v['version']}", style="bold"))
        self.query_one(StageBadge).show(v.get("stage", "none"), rolled_back=v.get("rolled_back", False))
        self.query_one("#detail-aliases", Label).update(aliases_text(v.get("aliases") or []))
        codes = [w.get("code", "") for w in v.get("warnings") or []]
        self.query_one("#detail-warnings", Label).update(
            Text(" ".join(WARNING_LABELS.get(c, c) for c in codes), style="bold red" if "unsafe_pickle" in codes else "yellow")
        )
        self._body("overview").update(tabs.overview(v, when))
        self._body("metrics").update(tabs.metrics_params(v))
        self._body("signature").update(tabs.signature(v))
        tensors = v.get("tensors")
        if tensors is None:  # a daemon without the per-tensor table: the signature's tensors have no fingerprints
            tensors = (v.get("signature") or {}).get("tensors") or []
        self.query_one("#tensor-table", PagedTable).set_items(tensors)
        self._body("environment").update(tabs.environment(v))
        self._body("files").update(tabs.files(v))
        self._body("lineage").update(tabs.lineage_facts(v))

    @work(exclusive=True, group="history", exit_on_error=False)
    async def load_history(self) -> None:
        timeline = await self.regtui.call("models.history", {"name": self.model_name})
        audit = await self.regtui.call(
            "audit.list", {"name": self.model_name, "version": self.version_ref, "limit": AUDIT_ROWS}
        )
        version = (self.version or {}).get("version", self.version_ref)
        self._body("history").update(tabs.history(version, timeline["items"], audit["items"], self.regtui.format_time))

    @work(exclusive=True, group="lineage", exit_on_error=False)
    async def load_lineage(self) -> None:
        tree = self.query_one(LineageTree)
        try:
            result = await self.regtui.call("lineage.get", {"name": self.model_name, "version": self.version_ref})
        except Exception as exc:
            tree.clear()
            tree.root.set_label(Text(f"lineage.get: {NOT_AVAILABLE}" if is_missing_method(exc) else describe(exc),
                                     style="yellow"))  # fmt: skip
            if not is_missing_method(exc):
                raise
            return
        tree.show_lineage(result)

    # ------------------------------------------------------------------ actions

    def action_tab(self, key: str) -> None:
        self.query_one(TabbedContent).active = f"tab-{key}"

    def action_diff(self) -> None:
        self.open_diff(self.selected(), production=self.production)

    @work(exclusive=True, group="production", exit_on_error=False)
    async def load_production(self) -> None:
        # the model names its production version; the version itself only knows its own stage
        model = await self.regtui.call("models.get", {"name": self.model_name})
        self.production = model.get("production")
