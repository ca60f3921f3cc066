"""Where a version came from and where it went: the graph behind ``lineage.get``.

Nodes (``LineageNode.kind``) and the edges between them, every edge pointing the way things flowed:

    dataset  --data-->   version      the sidecar's ``data_version``
    commit   --code-->   version      ``code_sha`` with the repository, branch and dirty flag git reported
    env      --env-->    version      the environment lock (kind, digest, packages)
    version  --parent--> version      the sidecar's ``parent`` ("name:version") up to MAX_ANCESTORS, and
                                      the versions naming this one as parent, down to MAX_DEPTH
    version  --stage-->  deployment   each stage the version entered, from the stage history
    version  --alias-->  alias        each alias that pointed at it, from the alias history
    version  --pointer-> deployment   deploy pointers under ``deploy_dir`` that point at its stored artifact

Ancestors carry their own data, commit and env nodes (shared by id when equal), so the data
versions of a whole chain of fine-tunes are in one graph. ``lineage`` runs inside ``Catalog.read``,
off the event loop; reading the deploy pointers is a few ``readlink`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from regd.domain import Stage, Version
from regd.errors import NotFound
from regd.lifecycle.deploy import POINTED_STAGES
from regd.protocol import LineageEdge, LineageNode, LineageResult
from regd.store.catalog import ReadTx, VersionRow

MAX_ANCESTORS = 32
MAX_DEPTH = 8
"""How many generations of children are followed."""
MAX_NODES = 500


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, LineageNode] = {}
        self.edges: list[LineageEdge] = []
        self._edge_keys: set[tuple[str, str, str]] = set()

    def node(self, id: str, kind: str, label: str, data: dict[str, Any] | None = None) -> str:
        if id not in self.nodes:
            self.nodes[id] = LineageNode(id=id, kind=kind, label=label, data=data or {})  # type: ignore[arg-type]
        return id

    def edge(self, source: str, target: str, kind: str) -> None:
        if (source, target, kind) not in self._edge_keys:
            self._edge_keys.add((source, target, kind))
            self.edges.append(LineageEdge(source=source, target=target, kind=kind))

    @property
    def full(self) -> bool:
        return len(self.nodes) >= MAX_NODES


def version_id(model: str, version: str) -> str:
    return f"version:{model}:{version}"


def split_parent(parent: str) -> tuple[str, str]:
    """``fraud:1.2.0`` -> (fraud, 1.2.0); ``fraud@champion`` -> (fraud, @champion); ``fraud`` -> (fraud, latest)."""
    if ":" in parent:
        name, ref = parent.split(":", 1)
        return name, ref or "latest"
    if "@" in parent:
        name, alias = parent.split("@", 1)
        return name, f"@{alias}"
    return parent, "latest"


def lineage(r: ReadTx, name: str, ref: str, *, deploy_dir: Path | None = None,
            local_path: Callable[[str, str], Path] | None = None) -> LineageResult:
    """Build the lineage graph of one version (NotFound when the reference resolves to nothing)."""
    row = r.row(name, ref)
    root = r.version(row.id)
    g = _Graph()
    root_id = _add_version(g, root, root=True)
    _ancestors(r, g, root)
    _descendants(r, g, root)
    _deployments(r, g, root, row, root_id)
    if deploy_dir is not None:
        _pointers(g, root, root_id, deploy_dir, local_path)
    return LineageResult(root=root_id, nodes=list(g.nodes.values()), edges=g.edges)


def _add_version(g: _Graph, v: Version, *, root: bool = False) -> str:
    vid = g.node(version_id(v.model, v.version), "version", f"{v.model} {v.version}", {
        "model": v.model, "version": v.version, "stage": v.stage.value, "aliases": v.aliases, "digest": v.artifact.digest,
        "format": v.artifact.format, "created_at": v.created_at.isoformat(), "created_by": v.created_by,
        "run_id": v.lineage.run_id, "parent": v.lineage.parent, "root": root,
        "runtime": v.runtime.model_dump(exclude_defaults=True) if v.runtime else None,
    })  # fmt: skip
    _ingredients(g, v, vid)
    return vid


def _ingredients(g: _Graph, v: Version, vid: str) -> None:
    lin = v.lineage
    if lin.data_version:
        g.edge(g.node(f"dataset:{lin.data_version}", "dataset", lin.data_version, {"data_version": lin.data_version}),
               vid, "data")  # fmt: skip
    if lin.code_sha:
        git = v.git if v.git and v.git.commit == lin.code_sha else None
        data: dict[str, Any] = {"sha": lin.code_sha, "source": "git" if git else "sidecar"}
        label = lin.code_sha[:12]
        if git:
            data |= {"branch": git.branch, "repository": git.repository, "remote": git.remote, "dirty": git.dirty}
            label += (f" on {git.branch}" if git.branch else "") + (f" in {git.remote or git.repository}"
                                                                    if (git.remote or git.repository) else "")  # fmt: skip
            label += " (dirty)" if git.dirty else ""
        g.edge(g.node(f"commit:{lin.code_sha}", "commit", label, data), vid, "code")
    lock = v.env_lock
    if lock:
        label = f"{lock.kind} ({len(lock.packages)} packages)"
        data = {"digest": lock.digest, "kind": lock.kind, "source": lock.source, "packages": lock.packages}
        g.edge(g.node(f"env:{lock.digest}", "env", label, data), vid, "env")


def _ancestors(r: ReadTx, g: _Graph, v: Version) -> None:
    child, seen = v, {(v.model, v.version)}
    for _ in range(MAX_ANCESTORS):
        parent = child.lineage.parent
        if not parent or g.full:
            return
        pname, pref = split_parent(parent)
        try:
            prow = r.row(pname, pref)
        except NotFound:
            pid = g.node(f"version:{parent}", "version", f"{parent} (not registered)", {"ref": parent, "missing": True})
            g.edge(pid, version_id(child.model, child.version), "parent")
            return
        if (prow.model, prow.version) in seen:
            return  # a sidecar that names a descendant as parent: stop rather than loop
        seen.add((prow.model, prow.version))
        pv = r.version(prow.id)
        g.edge(_add_version(g, pv), version_id(child.model, child.version), "parent")
        child = pv


def _descendants(r: ReadTx, g: _Graph, v: Version) -> None:
    frontier: list[tuple[str, str]] = [(v.model, v.version)]
    seen = set(frontier)
    for _ in range(MAX_DEPTH):
        following: list[tuple[str, str]] = []
        for model, version in frontier:
            for row in r.children(model, version):
                if g.full:
                    return
                key = (row.model, row.version)
                cid = _row_node(g, row)
                g.edge(version_id(model, version), cid, "parent")
                if key not in seen:
                    seen.add(key)
                    following.append(key)
        if not following:
            return
        frontier = following


def _row_node(g: _Graph, row: VersionRow) -> str:
    return g.node(version_id(row.model, row.version), "version", f"{row.model} {row.version}", {
        "model": row.model, "version": row.version, "stage": row.stage.value, "digest": row.digest,
        "created_at": row.created_at.isoformat(), "created_by": row.created_by,
    })  # fmt: skip


def _deployments(r: ReadTx, g: _Graph, v: Version, row: VersionRow, vid: str) -> None:
    history = [h for h in r.stage_history(row.model_id) if h.version_id == row.id]
    for i, change in enumerate(history):
        if change.to_stage == Stage.NONE:
            continue
        until = history[i + 1].at if i + 1 < len(history) else None
        current = until is None and v.stage == change.to_stage
        stage = change.to_stage.value
        when = f"since {change.at:%Y-%m-%d %H:%M}" if current else (
            f"{change.at:%Y-%m-%d %H:%M} - {until:%Y-%m-%d %H:%M}" if until else f"{change.at:%Y-%m-%d %H:%M}"
        )  # fmt: skip
        data = {"stage": stage, "current": current, "from": change.from_stage.value, "action": change.action,
                "actor": change.actor, "at": change.at.isoformat(), "until": until.isoformat() if until else None,
                "reason": change.reason}  # fmt: skip
        g.edge(vid, g.node(f"stage:{v.model}:{v.version}:{change.id}", "deployment", f"{stage} {when}", data), "stage")
    moves: dict[str, list[dict[str, Any]]] = {}
    for a in r.alias_history(row.model_id):
        if v.version in (a.to_version, a.from_version):
            moves.setdefault(a.alias, []).append({
                "at": a.at.isoformat(), "from": a.from_version, "to": a.to_version, "actor": a.actor, "reason": a.reason,
            })  # fmt: skip
    for alias, events in moves.items():
        current = alias in v.aliases
        label = f"@{alias} (current)" if current else f"@{alias} (until {events[-1]['at'][:16].replace('T', ' ')})"
        data = {"alias": alias, "current": current, "events": events}
        g.edge(vid, g.node(f"alias:{v.model}@{alias}", "alias", label, data), "alias")


def _pointers(g: _Graph, v: Version, vid: str, deploy_dir: Path, local_path: Callable[[str, str], Path] | None) -> None:
    directory = deploy_dir / v.model
    # A pointer made on this host targets this host's copy of the bytes, which with a remote object
    # store is its cache, not the stored path recorded by whichever host registered the version.
    targets = {v.artifact.stored_path}
    if local_path is not None and v.artifact.store_mode == "copy":
        targets.add(str(local_path(v.artifact.kind, v.artifact.digest)))
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if not (entry.name in POINTED_STAGES or entry.name.startswith("@")):
            continue
        try:
            target = os.readlink(entry.path)
        except OSError:
            continue
        if target in targets:
            data = {"pointer": entry.path, "target": target, "name": entry.name}
            g.edge(vid, g.node(f"pointer:{entry.path}", "deployment", f"pointer {entry.path}", data), "pointer")
