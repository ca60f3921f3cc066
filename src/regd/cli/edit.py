"""``regd register | tag | alias``: adding and annotating versions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from regd.cli import EXIT_OK, output
from regd.cli.args import client, key_value, metric, param, parse_ref

BAR_MIN_BYTES = 32 * 1024 * 1024


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("register", parents=[common], help="register a model file or directory now",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Hash and store PATH and record a new version (or say which version these bytes\n"
                                   "already are). A sidecar PATH.regd.json is read too; options here win over it.\n\n"
                                   "  regd register out/model.safetensors --name fraud --metric accuracy=0.93 \\\n"
                                   "      --param lr=0.001 --tag team=risk")  # fmt: skip
    p.add_argument("path", help="a model file, or a model directory (MLflow, Hugging Face, SavedModel)")
    p.add_argument("--name", "-n", help="the model (default: the sidecar's name, else the file stem)")
    p.add_argument("--metric", "-m", type=metric, action="append", default=[], metavar="K=NUMBER")
    p.add_argument("--param", "-p", type=param, action="append", default=[], metavar="K=VALUE", help="JSON values are parsed")
    p.add_argument("--tag", "-t", type=key_value, action="append", default=[], metavar="K=V")
    p.add_argument("--description", "-d")
    p.add_argument("--version", dest="pin", metavar="X.Y.Z", help="pin the version number instead of letting regd assign it")
    p.add_argument("--data-version", metavar="ID", help="the dataset version the model was trained on")
    p.add_argument("--parent", metavar="NAME:VERSION", help="the version this one was derived from")
    p.add_argument("--env-lock", metavar="PATH", help="the environment lock file (default: the nearest one found)")
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("tag", parents=[common], help="set or remove tags on a version",
                       description="regd tag fraud:1.2.0 team=risk reviewed=yes --rm obsolete")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.add_argument("tags", type=key_value, nargs="*", metavar="K=V")
    p.add_argument("--rm", action="append", default=[], metavar="KEY", help="remove this tag (repeatable)")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("alias", parents=[common], help="point named aliases (champion, challenger) at versions",
                       description="regd alias set fraud champion 1.2.0 | regd alias rm fraud champion | regd alias ls fraud")  # fmt: skip
    alias_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    s = alias_sub.add_parser("set", parents=[common], help="point ALIAS at VERSION (the move is kept in the history)")
    s.add_argument("name")
    s.add_argument("alias")
    s.add_argument("version", help="1.2.0, latest, a stage, or @another-alias")
    s.add_argument("--reason", "-r")
    s.set_defaults(func=cmd_alias_set)
    s = alias_sub.add_parser("rm", parents=[common], help="remove ALIAS")
    s.add_argument("name")
    s.add_argument("alias")
    s.add_argument("--reason", "-r")
    s.set_defaults(func=cmd_alias_rm)
    s = alias_sub.add_parser("ls", parents=[common], help="the aliases of a model")
    s.add_argument("name")
    s.set_defaults(func=cmd_alias_ls)


def cmd_register(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    metadata: dict[str, Any] = {
        "metrics": dict(args.metric) or None,
        "params": dict(args.param) or None,
        "tags": dict(args.tag) or None,
        "description": args.description,
        "version": args.pin,
        "data_version": args.data_version,
        "parent": args.parent,
        "env_lock": str(Path(args.env_lock).expanduser().absolute()) if args.env_lock else None,
    }
    params = {"path": str(path.absolute()), "name": args.name,
              "metadata": {k: v for k, v in metadata.items() if v is not None} or None}  # fmt: skip
    c = client(args)
    c.timeout = None  # a large checkpoint may take minutes to hash
    size = _size_hint(path)
    if size >= BAR_MIN_BYTES and sys.stderr.isatty() and not args.json:
        result = _with_bar(c, params, size, path.name)
    else:
        result = c.call("versions.register", params)
    if args.json:
        output.print_json(result)
        return EXIT_OK
    v = result["version"]
    if result["created"]:
        print(f"registered {v['model']} {v['version']} ({v['artifact']['format']}, {output.size(v['artifact']['size'])})")
    else:
        print(f"already registered: these bytes are {v['model']} {v['version']}")
    print(f"  stored  {v['artifact']['stored_path']}")
    for w in v["warnings"]:
        print(f"  warning {w['code']}: {w['message']}")
    return EXIT_OK


def _size_hint(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return 0


def _with_bar(c: Any, params: dict[str, Any], size: int, label: str) -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), transient=True) as bar:  # fmt: skip
        task = bar.add_task(f"hashing {label}", total=size)
        return c.call("versions.register", {**params, "progress": True},
                      on_progress=lambda done, total: bar.update(task, completed=done, total=total or size))  # fmt: skip


def cmd_tag(args: argparse.Namespace) -> int:
    name, ref = args.ref
    if not args.tags and not args.rm:
        sys.stderr.write("regd: nothing to do: give K=V pairs to set and/or --rm KEY\n")
        return 2
    v = client(args).call("versions.tag", {"name": name, "version": ref, "set": dict(args.tags) or None, "remove": args.rm or None})
    if args.json:
        output.print_json(v)
    else:
        print(f"{v['model']} {v['version']} tags: {output.fmt(v['tags']) or '(none)'}")
    return EXIT_OK


def _print_aliases(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        output.print_json(result)
    elif result["aliases"]:
        output.table(f"{result['name']} aliases", ["alias", "version"], sorted(result["aliases"].items()))
    else:
        print(f"{result['name']} has no aliases")
    return EXIT_OK


def cmd_alias_set(args: argparse.Namespace) -> int:
    result = client(args).call("aliases.set", {"name": args.name, "alias": args.alias.lstrip("@"),
                                               "version": args.version, "reason": args.reason})  # fmt: skip
    return _print_aliases(args, result)


def cmd_alias_rm(args: argparse.Namespace) -> int:
    result = client(args).call("aliases.delete", {"name": args.name, "alias": args.alias.lstrip("@"), "reason": args.reason})
    return _print_aliases(args, result)


def cmd_alias_ls(args: argparse.Namespace) -> int:
    model = client(args).call("models.get", {"name": args.name})
    return _print_aliases(args, {"name": model["name"], "aliases": model["aliases"]})

