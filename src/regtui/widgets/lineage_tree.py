"""Where a version came from and where it went (``lineage.get``), as a tree rooted at the version."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

ICONS = {"version": "◇", "dataset": "▤", "commit": "⎇", "env": "⚙", "deployment": "⇪", "alias": "@"}
STYLES = {"version": "bold", "dataset": "cyan", "commit": "yellow", "env": "green", "deployment": "magenta", "alias": "magenta"}


def _label(node: dict[str, Any], via: str = "") -> Text:
    kind = str(node.get("kind", ""))
    text = Text()
    if via:
        text.append(f"{via} ", style="dim")
    text.append(f"{ICONS.get(kind, '·')} {node.get('label', node.get('id', '?'))}", style=STYLES.get(kind, ""))
    text.append(f"  {kind}", style="dim italic")
    return text


class LineageTree(Tree[dict[str, Any]]):
    """Nodes reachable from the root, each edge shown once, with its kind and direction."""

    DEFAULT_CSS = """
    LineageTree { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("lineage", id=id)
        self.show_root = True

    def show_lineage(self, result: dict[str, Any]) -> None:
        nodes = {n["id"]: n for n in result.get("nodes", [])}
        links: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for edge in result.get("edges", []):
            links[edge["source"]].append((edge["target"], f"→ {edge.get('kind', '')}"))
            links[edge["target"]].append((edge["source"], f"← {edge.get('kind', '')}"))
        root_id = result.get("root")
        self.clear()
        root = nodes.get(root_id, {"id": root_id, "label": str(root_id), "kind": "version"})
        self.root.set_label(_label(root))
        self.root.data = root
        seen = {root_id}
        frontier: list[tuple[TreeNode[dict[str, Any]], str]] = [(self.root, root_id)]
        while frontier:
            parent, node_id = frontier.pop(0)
            for other, via in links.get(node_id, []):
                if other in seen:
                    continue
                seen.add(other)
                data = nodes.get(other, {"id": other, "label": other, "kind": ""})
                child = parent.add(_label(data, via), data=data, expand=True)
                frontier.append((child, other))
        if len(seen) == 1:
            self.root.add_leaf(Text("no linked datasets, commits or versions", style="dim"))
        self.root.expand_all()
