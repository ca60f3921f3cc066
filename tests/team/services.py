"""Finding and running the team store's servers on this machine: shared by the tests' fixtures
(``tests/team/conftest.py``) and the team benchmark (``bench/team.py``)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

PG_USER = "regdpg"
"""Who runs PostgreSQL when we run as root (it refuses to run as root)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(name: str) -> str | None:
    """``name`` on PATH, else from the newest /usr/lib/postgresql/<version>/bin (Debian keeps it off PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    # by version number, not as text: "9.6" must not win over "15"
    candidates.sort(key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    return candidates[-1] if candidates else None


def pg_run_as() -> str | None:
    """The user to run PostgreSQL as: ourselves, or ``PG_USER`` (created if need be) under root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)  # fmt: skip
    return PG_USER
