"""``regd check | promote | approve | archive | rollback | history``: the governed changes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from regd.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, output
from regd.cli.args import client, parse_ref

STAGES = ["staging", "production"]


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common], help="run a promotion's guards without changing anything",
                       description="regd check fraud:1.3.0 production   (exit 1 when a check fails)")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.add_argument("stage", choices=STAGES)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("promote", parents=[common], help="move a version to staging or production",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Runs the policy's guards first; a refusal lists every failed check (exit 1).\n"
                                   "Promoting to production archives the version it replaces, in the same transaction.\n\n"
                                   "  regd promote fraud:1.3.0 production --reason 'beats 1.2.0 on the holdout set'")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--reason", "-r", required=True, help="why (kept in the audit log; at most 4 KB)")
    p.add_argument("--force", action="store_true", help="override failed guards (admins only; audited)")
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("approve", parents=[common], help="approve a version for promotion",
                       description="Approvals count toward a policy's `approvals = n`; the registrant's own never counts.")  # fmt: skip
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.add_argument("--note", help="a note kept with the approval")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("archive", parents=[common], help="archive a version")
    p.add_argument("ref", type=parse_ref, metavar="REF")
    p.add_argument("--reason", "-r", required=True)
    p.set_defaults(func=cmd_archive)

    p = sub.add_parser("rollback", parents=[common], help="put back the previous production version",
                       description="Restores the version that was in production before the current one (from the stage "
                                   "history, not by version number) and archives the current one, marked rolled back.")  # fmt: skip
    p.add_argument("name")
    p.add_argument("--to", metavar="VERSION", help="an earlier production version instead of the previous one")
    p.add_argument("--reason", "-r", required=True)
    p.set_defaults(func=cmd_rollback)

    p = sub.add_parser("history", parents=[common], help="a model's stage and alias timeline, newest first")
    p.add_argument("name")
    p.set_defaults(func=cmd_history)


def _checks_table(checks: list[dict[str, Any]]) -> None:
    output.table(None, ["", "check", "detail"],
                 [("[green]✓[/]" if c["passed"] else "[red]✗[/]", c["rule"], c["detail"]) for c in checks])  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    name, ref = args.ref
    result = client(args).call("versions.check", {"name": name, "version": ref, "stage": args.stage})
    if args.json:
        output.print_json(result)
    else:
        verdict = "[green]would pass[/]" if result["passed"] else "[red]would be refused[/]"
        output.console().print(f"{result['name']} {result['version']} -> {result['stage']}: {verdict}")
        _checks_table(result["checks"])
    return EXIT_OK if result["passed"] else EXIT_FAILED


def cmd_promote(args: argparse.Namespace) -> int:
    name, ref = args.ref
    result = client(args).call("versions.promote", {"name": name, "version": ref, "stage": args.stage,
                                                     "reason": args.reason, "force": args.force})  # fmt: skip
    if args.json:
        output.print_json(result)
        return EXIT_OK
    v = result["version"]
    line = f"{v['model']} {v['version']}: {result['from']} -> {result['to']}"
    if result.get("demoted"):
        line += f" ({result['demoted']} archived)"
    if result.get("forced"):
        line += " [red](forced past failed guards)[/]"
    output.console().print(line)
    if result["checks"]:
        _checks_table(result["checks"])
    return EXIT_OK


def cmd_approve(args: argparse.Namespace) -> int:
    name, ref = args.ref
    result = client(args).call("versions.approve", {"name": name, "version": ref, "note": args.note})
    if args.json:
        output.print_json(result)
    else:
        who = ", ".join(a["approver"] for a in result["approvals"])
        print(f"{result['name']} {result['version']} approved by {who}")
    return EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    name, ref = args.ref
    v = client(args).call("versions.archive", {"name": name, "version": ref, "reason": args.reason})
    if args.json:
        output.print_json(v)
    else:
        print(f"{v['model']} {v['version']} archived")
    return EXIT_OK


def cmd_rollback(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        sys.stderr.write("regd: --reason must say why\n")
        return EXIT_USAGE
    result = client(args).call("models.rollback", {"name": args.name, "to": args.to, "reason": args.reason})
    if args.json:
        output.print_json(result)
        return EXIT_OK
    restored, archived = result["restored"], result["archived"]
    line = f"{restored['model']}: {restored['version']} is back in production"
    if archived:
        line += f"; {archived['version']} archived (rolled back)"
    print(line)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    result = client(args).call("models.history", {"name": args.name})
    if args.json:
        output.print_json(result)
        return EXIT_OK
    rows = []
    for e in result["items"]:
        if e["kind"] == "stage":
            what = f"{e['version']}: {e['from']} → {output.stage_badge(e['to'])}"
        else:
            what = f"@{e['alias']}: {e['from'] or '∅'} → {e['to'] or '∅'}"
        rows.append((output.when(e["at"]), e["action"], what, e["actor"], e["reason"] or ""))
    if not rows:
        print(f"{args.name} has no stage or alias changes yet")
        return EXIT_OK
    output.table(f"{args.name} history", ["when", "action", "change", "actor", "reason"], rows)
    return EXIT_OK
