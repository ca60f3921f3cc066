"""``regd demo``: a live demo registry, filled while you watch, opened in regtui."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from regd.cli import EXIT_FAILED, EXIT_OK, output


def add_parsers(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="a live demo registry, opened in regtui",
                       description="Start a daemon on a fresh demo data dir, drop real models into its watched folder "
                                   "over a few seconds (watch them register live), promote one, and open regtui. "
                                   "Quit the TUI and the demo daemon stops (unless --keep).")  # fmt: skip
    p.add_argument("--dir", metavar="PATH", help="where to put the demo registry (default: a new temp dir)")
    p.add_argument("--no-tui", action="store_true", help="run the demo without the TUI (scripts, CI); the daemon keeps running")
    p.add_argument("--keep", action="store_true", help="leave the demo daemon running after the TUI exits")
    p.add_argument("--pace", type=float, default=1.5, metavar="S", help="seconds between drops (1.5)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from regd.client import Client
    from regd.demo import steps, write_config
    from regd.errors import Unreachable

    base = Path(args.dir).expanduser().absolute() if args.dir else Path(tempfile.mkdtemp(prefix="regd-demo-"))
    socket = Path(tempfile.mkdtemp(prefix="regd-demo-", dir="/tmp")) / "regd.sock"
    config = write_config(base, socket)
    env = dict(os.environ, REGD_SOCKET=str(socket), REGD_CONFIG=str(config))
    log = open(base / "regd.log", "ab")  # noqa: SIM115 - the daemon writes it for its whole life
    daemon = subprocess.Popen([sys.executable, "-m", "regd", "serve", "--config", str(config)], env=env,
                              stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    client = Client(socket)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.status()
            break
        except Unreachable:
            if daemon.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write(f"regd: the demo daemon did not start; see {base / 'regd.log'}\n")
                return EXIT_FAILED
            time.sleep(0.05)
    print(f"demo registry in {base}")
    print(f"  watching  {base / 'runs'}  (drop your own models there too)")
    print(f"  socket    {socket}")
    print(f"  use it    export REGD_SOCKET={socket}")

    def feed() -> None:
        for what, write in steps(base / "runs"):
            write()
            if args.no_tui:
                print(f"  dropped   {what}")
            time.sleep(args.pace)
        _promote_best(Client(socket))

    writer = threading.Thread(target=feed, name="demo-writer", daemon=True)
    writer.start()
    if args.no_tui:
        writer.join()
        _wait_registered(client, expected=6)
        from regd.cli.browse import cmd_ls

        cmd_ls(argparse.Namespace(name=None, stage=None, tag=None, query=None, all=False, oldest=False, limit=100,
                                  cursor=None, json=args.json, socket=str(socket), config=str(config)))  # fmt: skip
        print(f"the demo daemon keeps running (pid {daemon.pid}); stop it with: REGD_SOCKET={socket} regd stop")
        return EXIT_OK
    try:
        from regtui.app import main as regtui_main

        return regtui_main(["--socket", str(socket), "--no-start"])
    finally:
        if not args.keep:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
        else:
            print(f"the demo daemon keeps running; stop it with: REGD_SOCKET={socket} regd stop")


def _wait_registered(client: Any, expected: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.status()
        if status["counts"]["versions"] >= expected and status["ingest"]["pending"] == 0:
            return
        time.sleep(0.1)
    output.console().print("[yellow]some demo models are still registering[/]")


def _promote_best(client: Any) -> None:
    """Promote fraud's best version as a person would, and name it champion."""
    _wait_registered(client, expected=3)
    try:
        client.call("versions.promote", {"name": "fraud", "version": "1.1.0", "stage": "production",
                                         "reason": "demo: better accuracy than 1.0.0 on the holdout set"})  # fmt: skip
        client.call("aliases.set", {"name": "fraud", "alias": "champion", "version": "1.2.0", "reason": "demo"})
    except Exception as exc:  # noqa: BLE001 - the demo goes on; the TUI shows the registry either way
        sys.stderr.write(f"regd demo: could not promote: {exc}\n")
