"""``regd diff A B`` and ``regd lineage REF``: what changed between two versions, and where one came from.

Colours: green added, red removed, yellow changed; the one-line verdict comes first.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from regd.cli import EXIT_FAILED, EXIT_OK, output
from regd.cli.args import client, parse_ref

SHOWN = 20
"""Items per list before ``... and N more`` (``--all`` shows every one)."""


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "diff", parents=[common], help="what changed between two versions (or a version and a file on disk)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="A one-line verdict, then metrics, params, tags, signature (compatible or breaking), tensors\n"
                    "(from stored fingerprints: what a fine-tune touched), files, config.json/MLmodel key by key,\n"
                    "environment and lineage. B may be a path that is not registered: it is hashed, not stored.\n\n"
                    "  regd diff fraud:1.2.0 fraud:production\n"
                    "  regd diff churn:2.0.0 fraud@champion\n"
                    "  regd diff fraud:production ./out/model.safetensors",
    )  # fmt: skip
    p.add_argument("a", type=parse_ref, metavar="A", help="NAME, NAME:1.2.0, NAME:production or NAME@alias")
    p.add_argument("b", metavar="B", help="a reference like A, or a file or model directory on disk (./NAME when "
                                          "a bare NAME is ambiguous)")
    p.add_argument("--all", action="store_true", help=f"list every item (default: the first {SHOWN} of each list)")
    p.add_argument("--fail-on-breaking", action="store_true", help="exit 1 when the signature verdict is breaking")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser(
        "lineage", parents=[common], help="where a version came from and where it went (a tree)",
        description="Data versions, commit, environment lock, parent versions, children and deployments "
                    "(stage and alias history, deploy pointers).   regd lineage fraud:1.3.0",
    )  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.set_defaults(func=cmd_lineage)


def b_target(text: str) -> dict[str, Any]:
    """``versions.diff`` params for B: a path when it looks like one (``./x``, ``a/b``, ``~``) or is a bare
    word naming something on disk; ``NAME:REF`` and ``NAME@alias`` are always references."""
    looks_like_path = "/" in text or text.startswith((".", "~"))
    is_reference = ":" in text or "@" in text
    if looks_like_path or (not is_reference and os.path.exists(text)):
        return {"b_path": os.path.abspath(os.path.expanduser(text))}
    name, ref = parse_ref(text)
    return {"b": {"name": name, "version": ref}}


def cmd_diff(args: argparse.Namespace) -> int:
    try:
        target = b_target(args.b)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(_usage(str(exc))) from None
    name, ref = args.a
    result = client(args).call("versions.diff", {"a": {"name": name, "version": ref}, **target})
    if args.json:
        output.print_json(result)
    else:
        _Printer(output.console(), None if args.all else SHOWN).diff(result)
    breaking = result["signature"]["verdict"] == "breaking"
    return EXIT_FAILED if args.fail_on_breaking and breaking else EXIT_OK


def _usage(message: str) -> int:
    import sys

    from regd.cli import EXIT_USAGE

    sys.stderr.write(f"regd: error: {message}\n")
    return EXIT_USAGE


def _esc(value: Any) -> str:
    from rich.markup import escape

    return escape(value if isinstance(value, str) else output.fmt(value) if not isinstance(value, list) else _shape(value))


def _short(value: Any) -> str:
    """A digest or sha shortened to 12 characters; anything else as is."""
    if value is None:
        return "(none)"
    if not isinstance(value, str):
        return output.fmt(value)
    text = value
    return text[:12] if len(text) >= 40 and all(ch in "0123456789abcdef" for ch in text) else text


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _spec(spec: dict[str, Any]) -> str:
    return f"{spec['dtype']} {_shape(spec.get('shape') or [])}"


class _Printer:
    """Renders a ``versions.diff`` result for people."""

    def __init__(self, console: Any, limit: int | None) -> None:
        self.c = console
        self.limit = limit

    def line(self, text: str = "") -> None:
        self.c.print(text, soft_wrap=True)  # the verdict is one line, whatever the terminal's width

    def items(self, lines: list[str], indent: str = "  ") -> None:
        shown = lines if self.limit is None else lines[: self.limit]
        for text in shown:
            self.line(indent + text)
        if len(shown) < len(lines):
            self.line(f"{indent}[dim]... and {len(lines) - len(shown)} more (--all lists them)[/]")

    def section(self, title: str, note: str = "") -> None:
        self.line()
        self.line(f"[bold]{title}[/]" + (f"  {note}" if note else ""))

    @staticmethod
    def added(text: str) -> str:
        return f"[green]+ {text}[/]"

    @staticmethod
    def removed(text: str) -> str:
        return f"[red]- {text}[/]"

    @staticmethod
    def changed(text: str) -> str:
        return f"[yellow]~ {text}[/]"

    def diff(self, d: dict[str, Any]) -> None:
        colour = {"breaking": "red", "compatible": "green"}.get(d["signature"]["verdict"], "yellow")
        self.line(f"[bold {colour}]{_esc(d['verdict'])}[/]")
        for key in ("a", "b"):
            s = d[key]
            label = f"{s['model']}:{s['version']}" if s.get("version") and not s.get("path") else (s.get("path") or s["model"])
            stage = f"  {output.stage_badge(s['stage'])}" if s.get("stage") and not s.get("path") else "  (not registered)"
            self.line(f"  {key}  {_esc(label)}{stage}  {s['format']}  {output.size(s['size'])}  {s['digest'][:12]}")
        self.metrics(d["metrics"])
        self.keys("params", d["params"])
        self.keys("tags", d["tags"])
        if d["description"]["changed"]:
            self.section("description")
            desc = d["description"]
            self.items([self.removed(_esc(desc["a"] or "(none)")), self.added(_esc(desc["b"] or "(none)"))])
        self.signature(d["signature"])
        self.tensors(d["tensors"])
        self.files(d["files"], d["a"]["kind"] == "directory" or d["b"]["kind"] == "directory")
        self.env(d["env"])
        self.lineage(d["lineage"])
        self.keys("format metadata", d["format_metadata"])
        w = d["warnings"]
        if w["added"] or w["removed"]:
            self.section("warnings")
            self.items([self.added(_esc(c)) for c in w["added"]] + [self.removed(_esc(c)) for c in w["removed"]])

    def metrics(self, m: dict[str, Any]) -> None:
        if not m["items"]:
            return
        rows = []
        for item in m["items"]:
            verdict = item["verdict"]
            style = {"better": "green", "worse": "red", "added": "green", "removed": "red"}.get(verdict, "dim")
            delta = f"{item['delta']:+.4g}" if item["delta"] is not None else ""
            rows.append((_esc(item["name"]), output.fmt(item["a"]), output.fmt(item["b"]), delta,
                         f"[{style}]{verdict}[/]", "lower" if item["direction"] == "lower" else ""))  # fmt: skip
        self.line()
        output.table("metrics", ["metric", "a", "b", "delta", "", "better when"], rows)

    def keys(self, title: str, k: dict[str, Any], note: str = "") -> None:
        lines = [self.added(f"{_esc(key)} = {_esc(v)}") for key, v in k["added"].items()]
        lines += [self.removed(f"{_esc(key)} = {_esc(v)}") for key, v in k["removed"].items()]
        lines += [self.changed(f"{_esc(c['key'])}: {_esc(c['a'])} -> {_esc(c['b'])}") for c in k["changed"]]
        if lines or note:
            self.section(title, note)
            self.items(lines)

    def signature(self, s: dict[str, Any]) -> None:
        lines = []
        for side in ("inputs", "outputs"):
            kind = side[:-1]
            specs = s[side]
            lines += [self.added(f"{kind} {_esc(x['name'])}  {_esc(_spec(x))}") for x in specs["added"]]
            lines += [self.removed(f"{kind} {_esc(x['name'])}  {_esc(_spec(x))}") for x in specs["removed"]]
            seen = set()
            for change in specs["reshaped"] + specs["retyped"]:
                if change["name"] in seen:
                    continue
                seen.add(change["name"])
                mark = "[red]breaking[/]" if change["breaking"] else "[green]compatible[/]"
                why = change["why"].removesuffix(" (breaking)")
                lines.append(self.changed(f"{kind} {_esc(change['name'])}  {_esc(_spec(change['a']))} -> "
                                          f"{_esc(_spec(change['b']))}  ({_esc(why)})") + f" {mark}")  # fmt: skip
        for c in s["extra"]["changed"]:
            lines.append(self.changed(f"{_esc(c['key'])}: {_esc(c['a'])} -> {_esc(c['b'])}"))
        lines += [self.added(f"{_esc(k)} = {_esc(v)}") for k, v in s["extra"]["added"].items()]
        lines += [self.removed(f"{_esc(k)} = {_esc(v)}") for k, v in s["extra"]["removed"].items()]
        if s["verdict"] == "breaking" and not lines:
            lines = [f"[red]{_esc(r)}[/]" for r in s["reasons"]]
        verdict = {"breaking": "[red]breaking[/]", "compatible": "[green]compatible[/]"}.get(s["verdict"], "[yellow]unknown[/]")
        if lines or s["verdict"] != "compatible" or not s["identical"]:
            self.section("signature", verdict + ("" if not s.get("note") else f"  [dim]{_esc(s['note'])}[/]"))
            self.items(lines)

    def tensors(self, t: dict[str, Any]) -> None:
        if not t["available"]:
            if t.get("note"):
                self.section("tensors", f"[dim]{_esc(t['note'])}[/]")
            return
        self.section("tensors", _esc(t["summary"]))
        for key in ("a", "b"):
            tot = t[key]
            count = f"{tot['tensors']:,} tensor{'' if tot['tensors'] == 1 else 's'}"
            self.line(f"  {key}  {count}, {tot['params']:,} parameters, {output.size(tot['bytes'])}")
        if t.get("note"):
            self.line(f"  [yellow]{_esc(t['note'])}[/]")
        lines = [self.added(f"{_esc(x['name'])}  {_esc(_spec(x))}") for x in t["added"]]
        lines += [self.removed(f"{_esc(x['name'])}  {_esc(_spec(x))}") for x in t["removed"]]
        changes = {c["name"]: c for c in t["reshaped"] + t["retyped"]}
        lines += [self.changed(f"{_esc(n)}  {_esc(_spec(c['a']))} -> {_esc(_spec(c['b']))}") for n, c in changes.items()]
        lines += [self.changed(f"{_esc(n)}  (new values)") for n in t["changed"]]
        self.items(lines)

    def files(self, f: dict[str, Any], directory: bool) -> None:
        lines = [self.added(f"{_esc(x['path'])}  {output.size(x['size'])}") for x in f["added"]]
        lines += [self.removed(f"{_esc(x['path'])}  {output.size(x['size'])}") for x in f["removed"]]
        lines += [self.changed(f"{_esc(x['path'])}  {output.size(x['a_size'])} -> {output.size(x['b_size'])}")
                  for x in f["changed"]]  # fmt: skip
        if lines:
            self.section("files", f"[dim]{f['unchanged']} unchanged[/]" if directory else "")
            self.items(lines)
        for desc in f["descriptors"]:
            note = f"[yellow]{_esc(desc['note'])}[/]" if desc.get("note") else ""
            self.keys(desc["path"], desc["keys"], note)

    def env(self, e: dict[str, Any]) -> None:
        lines = [self.added(f"{_esc(k)} {_esc(v)}") for k, v in e["added"].items()]
        lines += [self.removed(f"{_esc(k)} {_esc(v)}") for k, v in e["removed"].items()]
        lines += [self.changed(f"{_esc(c['name'])} {_esc(c['a'])} -> {_esc(c['b'])} (upgraded)") for c in e["upgraded"]]
        lines += [self.changed(f"{_esc(c['name'])} {_esc(c['a'])} -> {_esc(c['b'])} (downgraded)") for c in e["downgraded"]]
        lines += [self.changed(f"{_esc(c['name'])} {_esc(c['a'])} -> {_esc(c['b'])}") for c in e["changed"]]
        lines += [self.changed(f"{_esc(c['key'])}: {_esc(c['a'])} -> {_esc(c['b'])}") for c in e["runtime"]]
        lock = {
            "same": "same lock", "different": f"lock {_esc(e['a_lock'])} -> {_esc(e['b_lock'])}",
            "missing_a": f"[green]lock only on b ({_esc(e['b_lock'])})[/]",
            "missing_b": f"[red]lock only on a ({_esc(e['a_lock'])})[/]",
            "missing_both": "[dim]no lock on either side[/]",
        }[e["lock"]]  # fmt: skip
        if lines or e["lock"] != "same":
            self.section("environment", lock)
            self.items(lines)

    def lineage(self, lin: dict[str, Any]) -> None:
        if lin["same_run"]:
            head = "[green]same run[/] (same code, data, params and environment)"
        else:
            head = f"[yellow]different run[/]: {_esc(', '.join(lin['differs']) or 'run_id differs')}"
        facts = [f"{what} {'unknown' if same is None else 'same' if same else 'differs'}"
                 for what, same in (("commit", lin["same_commit"]), ("data", lin["same_data"]))]  # fmt: skip
        self.section("lineage", f"{head}  [dim]({', '.join(facts)})[/]")
        lines = []
        for ing in lin["ingredients"]:
            if not ing["same"]:
                a, b = (_short(v) for v in (ing["a"], ing["b"]))
                lines.append(self.changed(f"{ing['name']}: {_esc(a)} -> {_esc(b)}"))
        for c in lin["git"]:
            lines.append(self.changed(f"git {c['key']}: {_esc(_short(c['a']))} -> {_esc(_short(c['b']))}"))
        if lin.get("parent"):
            parent = lin["parent"]
            lines.append(self.changed(f"parent: {_esc(_short(parent['a']))} -> {_esc(_short(parent['b']))}"))
        if lin.get("note"):
            lines.append(f"[yellow]{_esc(lin['note'])}[/]")
        self.items(lines)


def cmd_lineage(args: argparse.Namespace) -> int:
    name, ref = args.ref
    result = client(args).call("lineage.get", {"name": name, "version": ref})
    if args.json:
        output.print_json(result)
        return EXIT_OK
    output.console().print(lineage_tree(result))
    return EXIT_OK


def lineage_tree(result: dict[str, Any]) -> Any:
    """A rich Tree of a ``lineage.get`` result, rooted at the version asked about."""
    from rich.tree import Tree

    nodes = {n["id"]: n for n in result["nodes"]}
    into: dict[str, list[dict[str, Any]]] = {}
    out_of: dict[str, list[dict[str, Any]]] = {}
    for e in result["edges"]:
        into.setdefault(e["target"], []).append(e)
        out_of.setdefault(e["source"], []).append(e)

    def version_label(node: dict[str, Any]) -> str:
        data = node["data"]
        stage = f"  {output.stage_badge(data['stage'])}" if data.get("stage") else ""
        if data.get("missing"):
            return f"[red]{_esc(node['label'])}[/]"
        return f"[bold]{_esc(node['label'])}[/]{stage}"

    def origins(tree: Any, vid: str, depth: int) -> None:
        for e in into.get(vid, []):
            node = nodes[e["source"]]
            if e["kind"] == "parent":
                branch = tree.add(f"parent  {version_label(node)}")
                if depth < 32:
                    origins(branch, node["id"], depth + 1)
            else:
                kind = {"data": "data", "code": "commit", "env": "env"}.get(e["kind"], e["kind"])
                tree.add(f"[cyan]{kind}[/]  {_esc(node['label'])}")

    root = nodes[result["root"]]
    tree = Tree(version_label(root) + f"  [dim]run {root['data'].get('run_id', '')[:12]}[/]")
    origins(tree, root["id"], 0)

    def children(branch: Any, vid: str, depth: int) -> None:
        for e in out_of.get(vid, []):
            if e["kind"] == "parent" and depth < 8:
                child = branch.add(version_label(nodes[e["target"]]))
                children(child, e["target"], depth + 1)

    if any(e["kind"] == "parent" for e in out_of.get(root["id"], [])):
        children(tree.add("children"), root["id"], 0)
    deploys = [e for e in out_of.get(root["id"], []) if e["kind"] in ("stage", "alias", "pointer")]
    if deploys:
        branch = tree.add("deployments")
        for e in deploys:
            node = nodes[e["target"]]
            current = node["data"].get("current")
            label = _esc(node["label"])
            branch.add(f"[green]{label}[/]" if current or e["kind"] == "pointer" else f"[dim]{label}[/]")
    return tree
