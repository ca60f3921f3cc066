"""``regd verify | gc | audit``: keeping the registry honest and tidy."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from regd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, output
from regd.cli.args import client, days, parse_ref


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("verify", parents=[common], help="rehash stored artifacts: ok, missing, corrupt or changed",
                       description="Rehash every stored artifact (or one model's, or one version's) and compare with "
                                   "its recorded digest. Exit code 1 when anything is not ok.")  # fmt: skip
    p.add_argument("ref", nargs="?", metavar="REF", help="NAME (all its versions) or NAME:VERSION, NAME@alias")
    p.add_argument("--repair", action="store_true", help="re-store missing or corrupt bytes from the original files "
                                                         "when they still match")  # fmt: skip
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("gc", parents=[common], help="free stored bytes nothing needs",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Free blobs no version refers to (left by interrupted registrations). With\n"
                                   "--keep-last/--older-than, also prune old versions' bytes (their rows and history stay).\n"
                                   "Never touches a version that was ever in production, is in staging, or has an alias.\n\n"
                                   "  regd gc --dry-run                    what would be freed\n"
                                   "  regd gc --keep-last 5 --older-than 30 --yes")  # fmt: skip
    p.add_argument("--dry-run", "-n", action="store_true", help="show what would be freed; change nothing")
    p.add_argument("--keep-last", type=int, metavar="N", help="per model, keep the newest N versions' bytes")
    p.add_argument("--older-than", type=days, metavar="DAYS", help="only prune versions older than DAYS")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("audit", parents=[common], help="the audit log, newest first (`regd audit verify` checks its chain)",
                       description="Every registration, stage change, alias move, approval, tag edit, forced override "
                                   "and deletion, newest first.")  # fmt: skip
    p.add_argument("what", nargs="?", choices=["verify"], help="verify: check the hash chain for edited or removed rows")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--version", metavar="X.Y.Z")
    p.add_argument("--actor", metavar="USER")
    p.add_argument("--action", metavar="ACTION", help="e.g. version.stage, alias (a prefix matches alias.set, alias.deleted)")
    p.add_argument("--since", metavar="WHEN", help="ISO date or datetime, e.g. 2026-11-01")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor")
    p.set_defaults(func=cmd_audit)


def cmd_verify(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"repair": args.repair or None}
    if args.ref:
        name, ref = parse_ref(args.ref)
        params["name"] = name
        if any(sep in args.ref for sep in ":@"):  # a bare NAME means every version of it
            params["version"] = ref
    c = client(args)
    c.timeout = None
    result = c.call("versions.verify", params)
    if args.json:
        output.print_json(result)
    else:
        bad = [i for i in result["items"] if i["status"] not in ("ok", "pruned")]  # repaired ones are shown too
        rows = [(f"{i['model']}:{i['version']}", _status(i["status"]), i["detail"]) for i in (bad or result["items"][:50])]
        output.table(f"verified {result['checked']} artifacts" + ("" if bad else ": all ok"), ["version", "status", "detail"], rows)
    return EXIT_OK if result["ok"] else EXIT_FAILED


def _status(status: str) -> str:
    return {"ok": "[green]ok[/]", "pruned": "[dim]pruned[/]", "repaired": "[yellow]repaired[/]"}.get(status, f"[red]{status}[/]")


def cmd_gc(args: argparse.Namespace) -> int:
    c = client(args)
    params = {"keep_last": args.keep_last, "older_than_days": args.older_than}
    plan = c.call("gc.plan", params)
    if args.dry_run or not plan["blobs"] and not plan["versions"]:
        return _print_gc(args, plan)
    if not args.yes:
        _print_gc(args, plan)
        if not sys.stdin.isatty():
            sys.stderr.write("regd: gc deletes stored bytes; pass --yes to confirm when not at a terminal\n")
            return EXIT_USAGE
        answer = input(f"free {output.size(plan['bytes'])}? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("nothing freed")
            return EXIT_OK
    return _print_gc(args, c.call("gc.run", params))


def _print_gc(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        output.print_json(result)
        return EXIT_OK
    verb = "would free" if result["dry_run"] else "freed"
    print(f"{verb} {len(result['blobs'])} blobs, {output.size(result['bytes'])}")
    if result["versions"]:
        print(f"{'would prune' if result['dry_run'] else 'pruned'} the bytes of: {', '.join(result['versions'][:20])}"
              + (" ..." if len(result["versions"]) > 20 else ""))  # fmt: skip
    return EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    c = client(args)
    if args.what == "verify":
        result = c.call("audit.verify")
        if args.json:
            output.print_json(result)
        elif result["ok"]:
            print(f"audit chain intact: {result['rows']} rows checked")
        else:
            print(f"audit chain BROKEN at row {result['first_broken']}: {result['detail']}")
        return EXIT_OK if result["ok"] else EXIT_FAILED
    result = c.call("audit.list", {"name": args.model, "version": args.version, "actor": args.actor, "action": args.action,
                                   "since": args.since, "limit": args.limit, "cursor": args.cursor})  # fmt: skip
    if args.json:
        output.print_json(result)
        return EXIT_OK
    rows = [
        (str(e["id"]), output.when(e["at"]), e["actor"], e["action"], f"{e['model'] or ''}{':' + e['version'] if e['version'] else ''}",
         f"{e['from'] or ''} → {e['to']}" if e.get("to") or e.get("from") else "", e["reason"] or "",
         output.fmt({k: v for k, v in e["details"].items() if k not in ("source",)})[:80])  # fmt: skip
        for e in result["items"]
    ]
    output.table("audit", ["#", "when", "actor", "action", "version", "change", "reason", "details"], rows,
                 caption=f"more: --cursor {result['next_cursor']}" if result.get("next_cursor") else None)  # fmt: skip
    return EXIT_OK
