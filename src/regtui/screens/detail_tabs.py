"""What each tab of the version detail screen shows, as Rich renderables built from ``versions.get``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from regtui.fmt import WARNING_LABELS, number, shape, size
from regtui.widgets.paged_table import Column
from regtui.widgets.stage_badge import aliases_text, stage_text

When = Callable[[Any], str]


def _facts(rows: list[tuple[str, Any]], title: str | None = None) -> Table:
    table = Table.grid(padding=(0, 2))
    if title:
        table.title = title
        table.title_justify = "left"
        table.title_style = "bold"
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        if value is None or value == "" or value == []:
            value = Text("—", style="dim")
        table.add_row(key, value if isinstance(value, Text | Table) else Text(str(value)))
    return table


def overview(v: dict[str, Any], when: When) -> RenderableType:
    art = v.get("artifact") or {}
    git = v.get("git") or {}
    lin = v.get("lineage") or {}
    facts = _facts([
        ("version", Text(f"{v['model']}:{v['version']}", style="bold")),
        ("stage", stage_text(v.get("stage", "none"), rolled_back=v.get("rolled_back", False))),
        ("aliases", aliases_text(v.get("aliases") or [])),
        ("description", v.get("description")),
        ("format", f"{art.get('format', 'unknown')} ({art.get('kind', 'file')})"),
        ("size", size(art.get("size"))),
        ("digest", f"sha256:{art.get('digest', '')}"),
        ("created", f"{when(v.get('created_at'))} by {v.get('created_by', '')}"),
        ("stored path", art.get("stored_path")),
        ("source path", art.get("source_path")),
        ("store mode", art.get("store_mode")),
        ("run id", lin.get("run_id")),
        ("git", _git(git)),
    ])  # fmt: skip
    parts: list[RenderableType] = [facts]
    warnings = v.get("warnings") or []
    if warnings:
        w = Table.grid(padding=(0, 2))
        w.title, w.title_justify, w.title_style = "warnings", "left", "bold yellow"
        w.add_column(style="yellow", no_wrap=True)
        w.add_column(overflow="fold")
        for item in warnings:
            w.add_row(WARNING_LABELS.get(item.get("code", ""), item.get("code", "")), item.get("message", ""))
        parts += [Text(""), w]
    if v.get("unsafe_imports"):
        parts += [Text(""), Text("unsafe pickle imports: " + ", ".join(v["unsafe_imports"]), style="bold red")]
    return Group(*parts)


def _git(git: dict[str, Any]) -> str | None:
    branch = f"({git['branch']})" if git.get("branch") else None
    return " ".join(filter(None, [git.get("commit"), branch, "dirty" if git.get("dirty") else None])) or None


def metrics_params(v: dict[str, Any]) -> RenderableType:
    metrics = v.get("metrics") or {}
    params = v.get("params") or {}
    tags = v.get("tags") or {}
    m = _facts([(k, number(val)) for k, val in sorted(metrics.items())], title=f"metrics ({len(metrics)})")
    p = _facts([(k, json.dumps(val) if not isinstance(val, str) else val) for k, val in sorted(params.items())],
               title=f"params ({len(params)})")  # fmt: skip
    t = _facts(sorted(tags.items()), title=f"tags ({len(tags)})")
    return Group(m, Text(""), p, Text(""), t)


def _tensor_specs(title: str, specs: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False, show_edge=False)
    table.add_column("name", overflow="fold")
    table.add_column("dtype")
    table.add_column("shape")
    for spec in specs:
        table.add_row(spec.get("name", ""), spec.get("dtype", ""), shape(spec.get("shape")))
    return table


def signature(v: dict[str, Any]) -> RenderableType:
    sig = v.get("signature") or {}
    parts: list[RenderableType] = []
    for key in ("inputs", "outputs"):
        specs = sig.get(key) or []
        parts.append(_tensor_specs(f"{key} ({len(specs)})", specs) if specs else Text(f"{key}: none recorded", style="dim"))
    if sig.get("extra"):
        parts.append(_facts([(k, json.dumps(val, default=str)) for k, val in sorted(sig["extra"].items())], title="format facts"))
    meta = v.get("format_metadata") or {}
    if meta:
        parts.append(_facts([(k, json.dumps(val, default=str)) for k, val in sorted(meta.items())], title="format metadata"))
    tensors = v.get("tensors")
    count = len(tensors) if tensors is not None else len(sig.get("tensors") or [])
    parts.append(Text(f"tensors ({count:,}):", style="bold"))
    return Group(*parts)


TENSOR_COLUMNS = [
    Column("name", 40),
    Column("dtype", 6),
    Column("shape", 18),
    Column("bytes", 10, "right"),
    Column("file", 16),
    Column("fingerprint", 24),
]


def tensor_cells(t: dict[str, Any]) -> list[str]:
    return [t.get("name", ""), t.get("dtype", ""), shape(t.get("shape")), size(t.get("nbytes")), t.get("file", ""),
            t.get("fingerprint") or ""]  # fmt: skip


def environment(v: dict[str, Any]) -> RenderableType:
    rt = v.get("runtime") or {}
    runtime = _facts([
        ("python", rt.get("python")), ("os", rt.get("os")), ("machine", rt.get("machine")),
        ("cuda", rt.get("cuda")), ("driver", rt.get("driver")), ("gpus", ", ".join(rt.get("gpus") or [])),
    ], title="runtime")  # fmt: skip
    lock = v.get("env_lock")
    if not lock:
        return Group(runtime, Text(""), Text("no environment lock was found for this version", style="yellow"))
    head = _facts([("kind", lock.get("kind")), ("source", lock.get("source")), ("digest", lock.get("digest"))],
                  title="environment lock")  # fmt: skip
    packages = lock.get("packages") or {}
    table = Table(title=f"packages ({len(packages)})", title_justify="left", title_style="bold", show_edge=False)
    table.add_column("package")
    table.add_column("version")
    for name, version in sorted(packages.items()):
        table.add_row(name, version)
    return Group(runtime, Text(""), head, Text(""), table)


def lineage_facts(v: dict[str, Any]) -> RenderableType:
    lin = v.get("lineage") or {}
    return _facts([
        ("run id", lin.get("run_id")), ("code sha", lin.get("code_sha")), ("data version", lin.get("data_version")),
        ("parent", lin.get("parent")), ("env lock", lin.get("env_lock_digest")),
    ], title="recorded with the version")  # fmt: skip


def files(v: dict[str, Any]) -> RenderableType:
    art = v.get("artifact") or {}
    items = art.get("files") or []
    table = Table(title=f"{len(items)} file(s), {size(art.get('size'))}", title_justify="left", title_style="bold",
                  show_edge=False)  # fmt: skip
    table.add_column("path", overflow="fold")
    table.add_column("size", justify="right")
    table.add_column("sha256")
    for f in items:
        table.add_row(f.get("path", ""), size(f.get("size")), str(f.get("digest", ""))[:16] + "…")
    return Group(_facts([("stored path", art.get("stored_path"))]), Text(""), table)


def history(version: str, timeline: list[dict[str, Any]], audit: list[dict[str, Any]], when: When) -> RenderableType:
    stage = Table(title="stage and alias history", title_justify="left", title_style="bold", show_edge=False)
    for col in ("when", "change", "by", "reason"):
        stage.add_column(col, overflow="fold")
    mine = [h for h in timeline if h.get("version") == version or (h.get("kind") == "alias" and h.get("to") == version)]
    for h in mine:
        change = f"@{h['alias']} " if h.get("alias") else ""
        change += f"{h.get('from') or '—'} → {h.get('to') or '—'} ({h.get('action', '')})"
        stage.add_row(when(h.get("at")), change, h.get("actor", ""), h.get("reason") or "")
    if not mine:
        stage.add_row("", Text("never changed stage", style="dim"), "", "")
    log = Table(title="audit log", title_justify="left", title_style="bold", show_edge=False)
    for col in ("#", "when", "action", "by", "change", "reason"):
        log.add_column(col, overflow="fold")
    for row in audit:
        change = f"{row.get('from') or ''} → {row.get('to') or ''}" if row.get("from") or row.get("to") else ""
        log.add_row(str(row.get("id", "")), when(row.get("at")), row.get("action", ""), row.get("actor", ""), change,
                    row.get("reason") or "")  # fmt: skip
    return Group(stage, Text(""), log)
