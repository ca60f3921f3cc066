"""The ``regd`` command: one module per verb group, all on the sync client.

Exit codes scripts can rely on: 0 ok, 1 refused or failed, 2 usage, 3 daemon unreachable.
One-shot verbs must stay fast (``regd ls --json`` in well under 150 ms), so nothing here imports
pydantic, rich, textual or the daemon at module level: each verb imports what it needs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from regd import __version__
from regd.errors import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RegdError, Unreachable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

DESCRIPTION = """\
regd: a model registry that registers what your training writes.

Drop a model file into a watched folder (or `regd register` it) and regd hashes it, stores the
exact bytes, captures its signature, environment lock, git commit and metrics, and records a
semver version. Browse with `regd ls`, promote with `regd promote`, and open `regtui`.
"""

EPILOG = """\
references: NAME (latest), NAME:1.2.0, NAME:latest, NAME:production, NAME@champion

examples:
  regd start                                   start the daemon in the background
  regd register out/model.safetensors --name fraud --metric auc=0.91 --tag team=risk
  regd ls                                      models; `regd ls fraud` lists its versions
  regd show fraud:latest                       everything about one version
  regd search "metrics.auc > 0.9 and tags.team = 'risk'"
  regd alias set fraud champion 1.2.0
  regd path fraud@champion                     the stored artifact, for serving code
  regd ls --json | jq '.items[].name'          every verb takes --json for scripts

exit codes: 0 ok, 1 refused or failed, 2 usage, 3 daemon unreachable
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"regd: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from regd.cli import browse, daemon_cmds, demo_cmd, diff_cmds, edit, lifecycle_cmds, maintain, migrate_cmd, watch_cmds

    parser = _Parser(
        prog="regd", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"regd {__version__}")
    _add_common(parser, suppress=False)  # `regd --socket S ls` ...
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, suppress=True)  # ... and `regd ls --socket S` both work
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    for module in (daemon_cmds, watch_cmds, browse, edit, lifecycle_cmds, diff_cmds, maintain, demo_cmd, migrate_cmd):
        module.add_parsers(sub, common)
    return parser


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # on the verbs, SUPPRESS keeps an option given before the verb from being reset to its default
    default = {"default": argparse.SUPPRESS} if suppress else {}
    parser.add_argument("--json", action="store_true", help="print the API's JSON result instead of a table", **default)
    parser.add_argument("--socket", metavar="PATH", help="the daemon's socket (default: $REGD_SOCKET, then the config)",
                        **default)  # fmt: skip
    parser.add_argument("--config", metavar="PATH", help="config file (default: $REGD_CONFIG, then ~/.config/regd/regd.toml)",
                        **default)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``regd``; returns (and exits with) the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        code = args.func(args)
    except Unreachable as exc:
        _print_error(exc.message)
        code = EXIT_UNREACHABLE
    except RegdError as exc:
        _print_error(_describe(exc), exc.data if getattr(args, "json", False) else None)
        code = EXIT_USAGE if exc.code in (INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND) else EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `regd ls | head`
        code = EXIT_OK
    return code


def _describe(exc: RegdError) -> str:
    from regd.cli.output import describe_error

    return describe_error(exc)


def _print_error(message: str, data: object = None) -> None:
    sys.stderr.write(f"regd: {message}\n")
    if data is not None:
        import json

        sys.stderr.write(json.dumps(data, indent=2, default=str) + "\n")
