"""``regd serve | start | stop | status | reload``: running the daemon."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from regd.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, output
from regd.cli.args import client
from regd.errors import Unreachable


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("serve", parents=[common], help="run the daemon in the foreground (systemd, containers, debugging)",
                       description="Run the daemon in the foreground until SIGTERM or Ctrl-C; SIGHUP reloads the config.")  # fmt: skip
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override the config's log_level")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("start", parents=[common], help="start the daemon in the background",
                       description="Start `regd serve` detached, wait until it answers, and say where it lives. "
                                   "Its log goes to <data_dir>/regd.log.")  # fmt: skip
    p.add_argument("--wait", type=float, default=15.0, metavar="S", help="seconds to wait for it to answer (15)")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", parents=[common], help="stop the background daemon",
                       description="Ask the daemon to finish what it is doing and exit (SIGTERM), and wait for it.")  # fmt: skip
    p.add_argument("--wait", type=float, default=30.0, metavar="S", help="seconds to wait for it to exit (30)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", parents=[common], help="is the daemon up; what is it watching and ingesting",
                       description="Daemon facts: version, pid, uptime, paths, watches, counts and the ingest queue. "
                                   "Exit code 3 when no daemon answers.")  # fmt: skip
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("reload", parents=[common], help="re-read the config (policies, roles, watches)",
                       description="Same as SIGHUP: a broken config is refused (with the line at fault) and the one "
                                   "in force stays.")  # fmt: skip
    p.set_defaults(func=cmd_reload)


def _load_config(args: argparse.Namespace) -> Any:
    from regd.config import ConfigError, load_config

    try:
        return load_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"regd: {exc}\n")
        raise SystemExit(EXIT_FAILED) from None


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from regd.api.daemon import Daemon
    from regd.api.methods import load_handlers
    from regd.errors import Conflict

    config = _load_config(args)
    if args.socket:
        os.environ["REGD_SOCKET"] = args.socket
    logging.basicConfig(
        level=(args.log_level or config.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiosqlite").setLevel(logging.INFO)  # it logs every statement at debug
    load_handlers()
    try:
        asyncio.run(Daemon(config).run())
    except Conflict as exc:
        sys.stderr.write(f"regd: {exc.message}\n")
        return EXIT_FAILED
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"regd: cannot start: {exc}\n")
        return EXIT_FAILED
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        status = c.status()
        print(f"regd is already running (pid {status['pid']}) on {status['socket']}")
        return EXIT_OK
    except Unreachable:
        pass
    config = _load_config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = config.data_dir / "regd.log"
    cmd = [sys.executable, "-m", "regd", "serve"]
    if args.config:
        cmd += ["--config", str(Path(args.config).expanduser().absolute())]
    env = dict(os.environ)
    if args.socket:
        env["REGD_SOCKET"] = args.socket
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env, close_fds=True
        )
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.stderr.write(f"regd: the daemon exited at start (code {proc.returncode}); see {log_path}:\n")
            sys.stderr.write(_tail(log_path))
            return EXIT_FAILED
        try:
            status = client(args).status()
        except Unreachable:
            time.sleep(0.05)
            continue
        print(f"regd {status['version']} started (pid {status['pid']})")
        print(f"  socket  {status['socket']}")
        print(f"  data    {status['data_dir']}")
        print(f"  log     {log_path}")
        return EXIT_OK
    sys.stderr.write(f"regd: the daemon did not answer within {args.wait} s; see {log_path}\n")
    return EXIT_UNREACHABLE


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "".join(path.read_text(errors="replace").splitlines(keepends=True)[-lines:])
    except OSError:
        return ""


def cmd_stop(args: argparse.Namespace) -> int:
    c = client(args)
    try:
        status = c.status()
    except Unreachable:
        print("regd is not running")
        return EXIT_OK
    pid = int(status["pid"])
    c.close()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return EXIT_OK
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"regd stopped (pid {pid})")
            return EXIT_OK
        time.sleep(0.05)
    sys.stderr.write(f"regd: pid {pid} is still running after {args.wait} s\n")
    return EXIT_FAILED


def cmd_status(args: argparse.Namespace) -> int:
    status = client(args).status()
    if args.json:
        output.print_json(status)
        return EXIT_OK
    ingest = status["ingest"]
    rows = [
        ("version", status["version"]),
        ("pid", str(status["pid"])),
        ("uptime", f"{status['uptime_s']:.0f} s"),
        ("socket", status["socket"]),
        ("data dir", status["data_dir"]),
        ("config", status["config"] or "built-in defaults"),
        ("catalog", status["catalog"]),
        ("store", f"{status['objects']} ({status['store_mode']})"),
        ("models / versions", f"{status['counts']['models']} / {status['counts']['versions']}"),
        ("you", f"{status['actor']} ({status['role']})"),
        ("ingest", _ingest_line(ingest)),
    ]
    output.pairs("regd", rows)
    if status["watches"]:
        output.table(
            "watching",
            ["path", "state", "patterns", "settle"],
            [(w["path"], w["state"] + (f": {w['error']}" if w.get("error") else ""), ", ".join(w["patterns"][:6]),
              f"{w['settle_ms']} ms") for w in status["watches"]],  # fmt: skip
        )
    if status.get("hook_failures"):
        output.table(
            "recent hook failures",
            ["when", "model", "kind", "detail"],
            [(output.when(h["at"]), h["model"], h["kind"], h["detail"]) for h in status["hook_failures"][-10:]],
        )
    return EXIT_OK


def _ingest_line(q: dict[str, Any]) -> str:
    line = f"{q['pending']} pending, {q['registered']} registered, {q['failed']} failed"
    if q["bytes_total"]:
        line += f", {output.size(q['bytes_done'])} of {output.size(q['bytes_total'])} hashed"
    if q["rate_bytes_per_s"]:
        line += f" at {output.size(int(q['rate_bytes_per_s']))}/s"
    if q.get("last_error"):
        line += f"\nlast error: {q['last_error']}"
    return line


def cmd_reload(args: argparse.Namespace) -> int:
    result = client(args).call("daemon.reload")
    if args.json:
        output.print_json(result)
    else:
        print(f"config reloaded from {result['source']}")
    return EXIT_OK
