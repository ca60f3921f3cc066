"""``regd show``'s human layout of one version."""

from __future__ import annotations

from typing import Any

from regd.cli import output


def print_version(v: dict[str, Any]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    con = output.console()
    art = v["artifact"]
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column(overflow="fold")
    aliases = ", ".join("@" + a for a in v["aliases"])
    head.add_row("stage", output.stage_badge(v["stage"]) + ("  [red](rolled back)[/]" if v.get("rolled_back") else ""))
    if aliases:
        head.add_row("aliases", aliases)
    if v.get("description"):
        head.add_row("description", v["description"])
    head.add_row("format", f"{art['format']} ({art['kind']})")
    head.add_row("size", output.size(art["size"]))
    head.add_row("digest", f"sha256:{art['digest']}")
    head.add_row("stored", art["stored_path"] + (" [dim](reference: bytes left in place)[/]" if art["store_mode"] == "reference" else ""))
    head.add_row("source", art["source_path"])
    head.add_row("created", f"{output.when(v['created_at'])} by {v['created_by']}")
    lineage = v["lineage"]
    head.add_row("run id", lineage["run_id"][:16])
    for key in ("code_sha", "data_version", "parent"):
        if lineage.get(key):
            head.add_row(key.replace("_", " "), str(lineage[key]))
    git = v.get("git") or {}
    if git.get("commit"):
        head.add_row("git", f"{git['commit'][:12]} on {git.get('branch') or '(detached)'}"
                     + (" [yellow](dirty)[/]" if git.get("dirty") else "") + (f"  {git['remote']}" if git.get("remote") else ""))  # fmt: skip
    con.print(Panel(head, title=f"[bold]{v['model']} {v['version']}[/]", title_align="left"))

    for w in v["warnings"]:
        con.print(f"[yellow]⚠ {w['code']}[/]: {w['message']}")
    if v.get("unsafe_imports"):
        con.print(f"[red]unsafe pickle imports:[/] {', '.join(v['unsafe_imports'])}")

    if v["metrics"] or v["params"] or v["tags"]:
        t = Table(title="metadata", title_justify="left", show_header=True, header_style="bold")
        t.add_column("kind")
        t.add_column("key")
        t.add_column("value", overflow="fold")
        for kind in ("metrics", "params", "tags"):
            for key, value in sorted(v[kind].items()):
                t.add_row(kind, key, output.fmt(value))
        con.print(t)

    sig = v.get("signature")
    if sig:
        _print_signature(con, sig)
    env = v.get("env_lock")
    rt = v.get("runtime") or {}
    if env or rt:
        facts = []
        if env:
            facts.append(f"lock {env['kind']} ({len(env['packages'])} packages) from {env['source']}")
        facts += [f"{k} {rt[k]}" for k in ("python", "os", "cuda", "driver") if rt.get(k)]
        if rt.get("gpus"):
            facts.append("gpu " + ", ".join(rt["gpus"]))
        con.print("[bold]environment[/]  " + "; ".join(facts))
    if v.get("tensors"):
        t = Table(title=f"tensors ({len(v['tensors'])})", title_justify="left", header_style="bold")
        for col in ("name", "dtype", "shape", "bytes", "fingerprint"):
            t.add_column(col, overflow="fold")
        for tensor in v["tensors"]:
            t.add_row(tensor["name"], tensor["dtype"], str(tensor.get("shape", [])), output.size(tensor.get("nbytes")),
                      (tensor.get("fingerprint") or "")[:21])  # fmt: skip
        con.print(t)


def _print_signature(con: Any, sig: dict[str, Any]) -> None:
    from rich.table import Table

    for part in ("inputs", "outputs"):
        if sig.get(part):
            t = Table(title=part, title_justify="left", header_style="bold")
            for col in ("name", "dtype", "shape"):
                t.add_column(col)
            for spec in sig[part]:
                t.add_row(spec["name"], spec["dtype"], str(spec.get("shape", [])))
            con.print(t)
    if sig.get("tensors") and not (sig.get("inputs") or sig.get("outputs")):
        tensors = sig["tensors"]
        con.print(f"[bold]signature[/]  {len(tensors)} tensors (regd show --tensors lists them)")
