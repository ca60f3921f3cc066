"""``regd ls | show | search | path | audit``: looking at the registry."""

from __future__ import annotations

import argparse
from typing import Any

from regd.cli import EXIT_OK, output
from regd.cli.args import client, parse_ref


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ls", parents=[common], help="list models, or the versions of one model",
                       description="Without NAME: every model with its production and latest version. "
                                   "With NAME: that model's versions, newest first.")  # fmt: skip
    p.add_argument("name", nargs="?", help="a model name")
    p.add_argument("--stage", choices=["none", "staging", "production", "archived"], help="only this stage")
    p.add_argument("--tag", metavar="K=V", help="only models with a version carrying this tag")
    p.add_argument("--query", "-q", metavar="TEXT", help="models whose name contains TEXT (or matches a glob)")
    p.add_argument("--all", action="store_true", help="include deprecated models")
    p.add_argument("--oldest", action="store_true", help="versions oldest first")
    p.add_argument("--limit", type=int, default=100, help="at most this many (100; max 1000)")
    p.add_argument("--cursor", help="continue from a previous page's next_cursor")
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", parents=[common], help="everything about one version",
                       description="Artifact, signature, metrics, params, tags, environment, git, lineage, warnings.")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF", help="NAME, NAME:1.2.0, NAME:production, NAME@alias")
    p.add_argument("--tensors", action="store_true", help="include the per-tensor table")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("search", parents=[common], help="find versions with a filter expression",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Filter with and/or/not, parentheses and = != < <= > >= like in over name, version,\n"
                                   "stage, alias, format, created_at, created_by, metrics.*, params.*, tags.*\n\n"
                                   "  regd search \"metrics.accuracy > 0.9 and (tags.team = 'risk' or stage = 'production')\"\n"
                                   "  regd search \"name like 'fraud%'\" --order-by 'metrics.auc desc'")  # fmt: skip
    p.add_argument("filter", help="the filter expression (quote it)")
    p.add_argument("--order-by", metavar="FIELD [asc|desc]", help="e.g. 'metrics.auc desc' (default: newest first)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (100; max 1000)")
    p.add_argument("--cursor", help="continue from a previous page's next_cursor")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("path", parents=[common], help="print the stored artifact's path (for serving code)",
                       description="Print the path serving code should load: the read-only stored blob or tree.")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.set_defaults(func=cmd_path)


def _page_footer(result: dict[str, Any]) -> str | None:
    return f"more: --cursor {result['next_cursor']}" if result.get("next_cursor") else None


def cmd_ls(args: argparse.Namespace) -> int:
    c = client(args)
    if args.name:
        result = c.call("versions.list", {"name": args.name, "stage": args.stage, "order": "oldest" if args.oldest else "newest",
                                          "limit": args.limit, "cursor": args.cursor})  # fmt: skip
        if args.json:
            output.print_json(result)
            return EXIT_OK
        print_versions(args.name, result, show_model=False)
        return EXIT_OK
    result = c.call("models.list", {"query": args.query, "stage": args.stage, "tag": args.tag, "include_deprecated": args.all,
                                    "limit": args.limit, "cursor": args.cursor})  # fmt: skip
    if args.json:
        output.print_json(result)
        return EXIT_OK
    rows = []
    for m in result["items"]:
        name = f"[dim]{m['name']} (deprecated)[/]" if m["deprecated"] else m["name"]
        rows.append((name, m["production"] or "", m["latest"] or "", str(m["versions"]),
                     ", ".join(f"@{a}→{v}" for a, v in m["aliases"].items()), output.fmt(m["latest_metrics"]),
                     output.when(m["updated_at"])))  # fmt: skip
    if not rows:
        print("no models yet: `regd register PATH` or add a watch folder (`regd watch add DIR`)")
        return EXIT_OK
    output.table("models", ["name", "production", "latest", "versions", "aliases", "latest metrics", "changed"], rows,
                 caption=_page_footer(result))  # fmt: skip
    return EXIT_OK


def print_versions(title: str, result: dict[str, Any], *, show_model: bool) -> None:
    rows = [
        (f"{v['model']}:{v['version']}" if show_model else v["version"], output.stage_badge(v["stage"]),
         ", ".join("@" + a for a in v["aliases"]), v["format"], output.size(v["size"]), output.fmt(v["metrics"]),
         output.fmt(v["tags"]), output.when(v["created_at"]), v["created_by"],
         "[yellow]" + ", ".join(v["warnings"]) + "[/]" if v["warnings"] else "")  # fmt: skip
        for v in result["items"]
    ]
    output.table(title, ["version", "stage", "aliases", "format", "size", "metrics", "tags", "created", "by", "warnings"],
                 rows, caption=_page_footer(result))  # fmt: skip


def cmd_show(args: argparse.Namespace) -> int:
    name, ref = args.ref
    v = client(args).call("versions.get", {"name": name, "version": ref, "tensors": args.tensors})
    if args.json:
        output.print_json(v)
        return EXIT_OK
    from regd.cli.showing import print_version

    print_version(v)
    return EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    result = client(args).call("versions.search", {"filter": args.filter, "order_by": args.order_by, "limit": args.limit,
                                                    "cursor": args.cursor})  # fmt: skip
    if args.json:
        output.print_json(result)
        return EXIT_OK
    if not result["items"]:
        print("no versions match")
        return EXIT_OK
    print_versions("matches", result, show_model=True)
    return EXIT_OK


def cmd_path(args: argparse.Namespace) -> int:
    name, ref = args.ref
    # fetch: with a team store (S3) the daemon first brings the bytes into its local cache
    v = client(args).call("versions.get", {"name": name, "version": ref, "fetch": True})
    if args.json:
        output.print_json({"name": v["model"], "version": v["version"], "path": v["artifact"]["stored_path"]})
    else:
        print(v["artifact"]["stored_path"])
    return EXIT_OK
