"""The version detail screen: every tab shows what versions.get (and history, audit, lineage) say."""

from __future__ import annotations

from textual.widgets import TabbedContent

from regtui.screens.detail import TABS, VersionDetailScreen
from regtui.screens.diff import DiffScreen
from regtui.widgets.lineage_tree import LineageTree
from regtui.widgets.paged_table import PagedTable
from tests.tui.conftest import make_app, screen_text, settle


async def open_detail(pilot, name: str = "fraud", version: str = "1.5.0") -> VersionDetailScreen:
    await settle(pilot)
    pilot.app.push_screen(VersionDetailScreen(name, version))
    await settle(pilot)
    return pilot.app.screen


async def test_every_tab_shows_the_version(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot)
        v = screen.version
        seen = {}
        for i, (key, _) in enumerate(TABS, 1):
            await pilot.press(str(i))
            await pilot.pause()
            assert screen.query_one(TabbedContent).active == f"tab-{key}"
            seen[key] = screen_text(app)
        head = seen["overview"]
        assert "fraud:1.5.0" in head and "PROD" in head and "@champion" in head
        assert v["artifact"]["digest"][:40] in seen["overview"] and "safetensors" in seen["overview"]
        assert "auc" in seen["metrics"] and "0.85" in seen["metrics"] and "team" in seen["metrics"] and "lr" in seen["metrics"]
        assert "dense.weight" in seen["signature"] and "[1, 4]" in seen["signature"] and "xxh3:" in seen["signature"]
        assert "no environment lock" in seen["environment"] and "python" in seen["environment"]
        assert "run id" in seen["lineage"] and v["lineage"]["run_id"][:20] in seen["lineage"]
        assert "model.safetensors" in seen["files"]
        assert "better auc" in seen["history"] and "version.registered" in seen["history"]
        assert "none → production" in seen["history"]


async def test_the_tensor_table_is_the_paged_table_with_fingerprints(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot)
        table = screen.query_one("#tensor-table", PagedTable)
        assert sorted(t["name"] for t in table.items) == ["dense.bias", "dense.weight"]
        assert all(t["fingerprint"].startswith("xxh3:") for t in table.items)
        assert ("versions.get", {"name": "fraud", "version": "1.5.0", "tensors": True}) in app.client.calls


async def test_lineage_is_a_tree_or_says_the_daemon_lacks_it(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot)
        await pilot.press("5")
        tree = screen.query_one(LineageTree)
        label = str(tree.root.label)
        if "not available in this daemon" in label:
            assert label == "lineage.get: not available in this daemon"
        else:
            assert "fraud" in label and "1.5.0" in label


async def test_d_diffs_against_production_and_y_copies_the_stored_path(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_detail(pilot, version="1.9.0")
        await pilot.press("y")
        await settle(pilot)
        assert app.clipboard == screen.version["artifact"]["stored_path"]
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, DiffScreen)
        assert (app.screen.a, app.screen.b) == (("fraud", "1.5.0"), ("fraud", "1.9.0"))


async def test_a_reference_resolves_and_the_title_names_the_version(seeded):
    app = make_app(seeded)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_detail(pilot, version="production")
        text = screen_text(app)
        assert "fraud:1.5.0" in text
