"""Where regd keeps its config, data and socket, resolved without importing anything heavy.

The CLI and the client resolve the socket on every one-shot command, so this module reads the
config file with ``tomllib`` only (no pydantic): ``config.py`` does the full validation in the
daemon.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

APP = "regd"
# sockaddr_un.sun_path is 108 bytes on Linux, including the terminating NUL
MAX_SOCKET_PATH = 107


def user_config_file() -> Path:
    """The per-user config file (``~/.config/regd/regd.toml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / APP / "regd.toml"


def default_data_dir() -> Path:
    """The per-user data dir (platformdirs' user data dir, e.g. ``~/.local/share/regd``)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def default_socket(data_dir: Path) -> Path:
    """``$XDG_RUNTIME_DIR/regd/regd.sock`` when a runtime dir exists, else ``<data_dir>/regd.sock``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / APP / "regd.sock"
    return data_dir / "regd.sock"


def config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file in force: ``--config``, else ``$REGD_CONFIG``, else the user file if it exists."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("REGD_CONFIG")
    if env:
        return Path(env).expanduser()
    user = user_config_file()
    return user if user.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file (errors propagate: the caller decides how loud to be)."""
    with path.open("rb") as f:
        return tomllib.load(f)


def expand(value: str | os.PathLike[str]) -> Path:
    """Expand ``~`` and environment variables in a configured path."""
    return Path(os.path.expandvars(os.path.expanduser(os.fspath(value))))


def resolve_socket(config: str | os.PathLike[str] | None = None) -> Path:
    """The socket a client should dial: ``$REGD_SOCKET``, else the config's, else the default.

    A config file that cannot be read falls back to the defaults here; the daemon is the one that
    reports a broken config loudly.
    """
    env = os.environ.get("REGD_SOCKET")
    if env:
        return expand(env)
    raw: dict[str, Any] = {}
    path = config_file(config)
    if path is not None:
        try:
            raw = read_toml(path)
        except (OSError, tomllib.TOMLDecodeError):
            raw = {}
    if isinstance(raw.get("socket"), str) and raw["socket"]:
        return expand(raw["socket"])
    data_dir = expand(raw["data_dir"]) if isinstance(raw.get("data_dir"), str) else default_data_dir()
    return default_socket(data_dir)
