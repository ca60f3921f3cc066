"""``regd watch add | rm | ls``: folders whose new models register themselves."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regd.cli import EXIT_OK, output
from regd.cli.args import client


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("watch", parents=[common], help="watch folders: what lands there registers itself",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Folders added here are kept across restarts; folders in the config's [[watch]]\n"
                                   "tables are managed there.\n\n"
                                   "  regd watch add ~/runs --pattern '*.safetensors' --settle-ms 1000\n"
                                   "  regd watch ls\n"
                                   "  regd watch rm ~/runs")  # fmt: skip
    wsub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    a = wsub.add_parser("add", parents=[common], help="watch a folder")
    a.add_argument("path")
    a.add_argument("--pattern", action="append", metavar="GLOB", help="file names that register (repeatable; default: every model format)")
    a.add_argument("--ignore", action="append", metavar="GLOB", help="relpaths never registered (repeatable)")
    a.add_argument("--no-recursive", dest="recursive", action="store_false", default=None, help="only the top level")
    a.add_argument("--settle-ms", type=int, metavar="MS", help="quiet time before a file registers (500)")
    a.add_argument("--dir-settle-ms", type=int, metavar="MS", help="quiet time before a model directory registers (10000)")
    a.set_defaults(func=cmd_add)
    r = wsub.add_parser("rm", parents=[common], help="stop watching a folder added with `watch add`")
    r.add_argument("path")
    r.set_defaults(func=cmd_rm)
    ls = wsub.add_parser("ls", parents=[common], help="the watched folders")
    ls.set_defaults(func=cmd_ls)


def _print(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        output.print_json(result)
        return EXIT_OK
    if not result["items"]:
        print("no folders watched: `regd watch add DIR`")
        return EXIT_OK
    output.table("watching", ["path", "state", "from", "patterns", "settle", "dir settle", "ignore"], [
        (w["path"], w["state"] + (f": {w['error']}" if w.get("error") else ""), w["source"], ", ".join(w["patterns"]),
         f"{w['settle_ms']} ms", f"{w['dir_settle_ms']} ms", ", ".join(w["ignore"]))
        for w in result["items"]
    ])  # fmt: skip
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    params = {
        "path": str(Path(args.path).expanduser().absolute()),
        "patterns": args.pattern,
        "ignore": args.ignore,
        "recursive": args.recursive,
        "settle_ms": args.settle_ms,
        "dir_settle_ms": args.dir_settle_ms,
    }
    return _print(args, client(args).call("watch.add", params))


def cmd_rm(args: argparse.Namespace) -> int:
    return _print(args, client(args).call("watch.remove", {"path": str(Path(args.path).expanduser().absolute())}))


def cmd_ls(args: argparse.Namespace) -> int:
    return _print(args, client(args).call("watch.list"))
