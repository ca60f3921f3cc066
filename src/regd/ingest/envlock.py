"""Find the environment lock nearest an artifact and parse it to {package: version}.

Both functions touch the filesystem and a lock can be megabytes of TOML or YAML: call them through
``asyncio.to_thread``, and parse a lock only when its digest is new (PyYAML reads about 1 MiB a second,
so a 16 MiB pixi.lock costs a worker thread tens of seconds).

    find_env_lock(start_dir, root)  -> the nearest lock file, or None
    parse_env_lock(path, data)      -> ParsedLock(kind, packages)   (raises EnvLockError)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from regd.ingest.boundedio import read_bounded
from regd.ingest.lockformats import (
    EnvLockError,
    ParsedLock,
    load_toml,
    load_yaml_mapping,
    parse_conda_lock,
    parse_pipfile_lock,
    parse_pixi_lock,
    parse_poetry_lock,
    parse_uv_lock,
)
from regd.ingest.requirements import parse_environment_yml, parse_requirements

__all__ = ["LOCK_NAMES", "MAX_LOCK_BYTES", "EnvLockError", "ParsedLock", "find_env_lock", "parse_env_lock"]

LOCK_NAMES: tuple[str, ...] = (
    "uv.lock",
    "poetry.lock",
    "pixi.lock",
    "Pipfile.lock",
    "conda-lock.yml",
    "environment.yml",
    "requirements*.txt",
)
"""Discovery order within one directory: the first that exists wins (``requirements.txt`` before other
``requirements*.txt``, which go in name order)."""

MAX_LOCK_BYTES = 16 * 1024 * 1024
"""A lock, with everything it includes, larger than this is refused."""

MAX_LEVELS = 32
"""How many directories ``find_env_lock`` climbs at most."""

_EXACT_NAMES = tuple(name for name in LOCK_NAMES if "*" not in name)


def find_env_lock(start_dir: Path, root: Path | None) -> Path | None:
    """Return the nearest lock from ``start_dir`` up to and including ``root``.

    With ``root`` (the watch root) the search never leaves it; a ``start_dir`` outside ``root`` is searched
    alone. Without one (an artifact registered by hand) it stops at the top of the git repository holding
    ``start_dir``, else at the home directory, else at ``/``: a lock above those belongs to something else.
    """
    start = Path(os.path.abspath(start_dir))
    chain = _search_chain(start, root)
    for directory in chain[:MAX_LEVELS]:
        found = _lock_in(directory)
        if found is not None:
            return found
    return None


def _search_chain(start: Path, root: Path | None) -> list[Path]:
    candidates = [start, *start.parents]
    if root is not None:
        top = Path(os.path.abspath(root))
        if not start.is_relative_to(top):
            # The watcher may report resolved paths under a symlinked root, or the reverse.
            start, top = start.resolve(), top.resolve()
            if not start.is_relative_to(top):
                return [start]
            candidates = [start, *start.parents]
        return [directory for directory in candidates if directory.is_relative_to(top)]
    home = Path(os.path.expanduser("~"))
    chain: list[Path] = []
    for directory in candidates:
        chain.append(directory)
        if directory == home or _is_repository_top(directory):
            break
    return chain


def _is_repository_top(directory: Path) -> bool:
    try:
        return (directory / ".git").exists()
    except OSError:
        return False


_LISTED: dict[str, tuple[tuple[int, int, int], Path | None]] = {}
"""Per directory: its (inode, mtime, ctime) when last listed and the lock found then."""
_LISTED_MAX = 4096
_SETTLED_NS = 250_000_000
"""A directory unchanged for this long has a trustworthy mtime: timestamps are coarse (a clock tick,
at most 10 ms), so a change within the tick of the listing could otherwise leave the mtime as it was."""


def _lock_in(directory: Path) -> Path | None:
    """Return the first lock of ``LOCK_NAMES`` order in ``directory`` (regular files only).

    Every registration climbs the same few directories, and one holding thousands of artifacts costs a
    full listing each time: a listing is reused while the directory's mtime and ctime (any entry added,
    removed or renamed changes them; ctime cannot be set back) are as they were.
    """
    key = str(directory)
    try:
        st = os.stat(key)
    except OSError:
        return None  # unreadable or vanished: look further up
    stamp = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    cached = _LISTED.get(key)
    if cached is not None and cached[0] == stamp and (cached[1] is None or cached[1].is_file()):
        return cached[1]  # (a symlinked lock's target can change without the directory changing)
    found = _list_lock(directory)
    if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _SETTLED_NS:
        if len(_LISTED) >= _LISTED_MAX:
            _LISTED.clear()
        _LISTED[key] = (stamp, found)
    return found


def _list_lock(directory: Path) -> Path | None:
    requirements: list[str] = []
    present: set[str] = set()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name in _EXACT_NAMES or (name.startswith("requirements") and name.endswith(".txt")):
                    try:
                        if not entry.is_file():
                            continue
                    except OSError:
                        continue
                    if name in _EXACT_NAMES:
                        present.add(name)
                    else:
                        requirements.append(name)
    except OSError:
        return None  # unreadable or vanished: look further up
    for name in _EXACT_NAMES:
        if name in present:
            return directory / name
    if requirements:
        requirements.sort(key=lambda name: (name != "requirements.txt", name))
        return directory / requirements[0]
    return None


def parse_env_lock(path: Path, data: bytes | None = None) -> ParsedLock:
    """Parse the lock at ``path`` (or ``data``, its bytes, already read) to its kind and packages.

    The format comes from the file name; a lock named otherwise (a sidecar's ``env_lock`` may point at
    ``env/prod.lock``) is recognised by its content.

    Raises:
        EnvLockError: unreadable, larger than ``MAX_LOCK_BYTES``, malformed, or of no known format.
    """
    label = path.name
    if data is None:
        try:
            data = read_bounded(path, MAX_LOCK_BYTES)
        except OSError as exc:
            raise EnvLockError(f"cannot read {label}: {exc.strerror or exc}") from None
    elif len(data) > MAX_LOCK_BYTES:
        raise EnvLockError(f"{label}: larger than {MAX_LOCK_BYTES // (1024 * 1024)} MiB")
    kind = lock_kind(path, data)
    try:
        packages = _PARSERS[kind](path, data)
    except RecursionError:
        raise EnvLockError(f"{label}: nested too deeply to be a lock file") from None
    return ParsedLock(kind=kind, packages=packages)


def lock_kind(path: Path, data: bytes) -> str:
    """Name the format of a lock: by file name, else by suffix and content."""
    name = path.name
    if name in _EXACT_NAMES:
        return name
    if name in ("conda-lock.yaml",) or name.endswith((".conda-lock.yml", ".conda-lock.yaml")):
        return "conda-lock.yml"
    if name == "environment.yaml":
        return "environment.yml"
    suffix = path.suffix.lower()
    if suffix in (".txt", ".in"):
        return "requirements.txt"
    try:
        if suffix in (".lock", ".toml"):
            return _toml_kind(name, data)
        if suffix == ".json" or name.endswith(".lock.json"):
            return "Pipfile.lock"
        if suffix in (".yml", ".yaml"):
            return _yaml_kind(name, data)
    except RecursionError:
        raise EnvLockError(f"{name}: nested too deeply to be a lock file") from None
    raise EnvLockError(f"{name}: not a lock format regd reads ({', '.join(LOCK_NAMES)})")


def _toml_kind(name: str, data: bytes) -> str:
    doc = load_toml(name, data)
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and ("lock-version" in metadata or "content-hash" in metadata):
        return "poetry.lock"
    if isinstance(doc.get("package"), list) and ("requires-python" in doc or "version" in doc):
        return "uv.lock"
    raise EnvLockError(f"{name}: a TOML file but neither a uv nor a Poetry lock")


def _yaml_kind(name: str, data: bytes) -> str:
    doc = load_yaml_mapping(name, data)
    if "environments" in doc and ("packages" in doc or "package" in doc):
        return "pixi.lock"
    if "package" in doc and "metadata" in doc:
        return "conda-lock.yml"
    if "dependencies" in doc:
        return "environment.yml"
    raise EnvLockError(f"{name}: a YAML file but not a pixi lock, conda lock or environment file")


def _named(parser: Callable[[str, bytes], dict[str, str]]) -> Callable[[Path, bytes], dict[str, str]]:
    return lambda path, data: parser(path.name, data)


_PARSERS: dict[str, Callable[[Path, bytes], dict[str, str]]] = {
    "uv.lock": _named(parse_uv_lock),
    "poetry.lock": _named(parse_poetry_lock),
    "pixi.lock": _named(parse_pixi_lock),
    "Pipfile.lock": _named(parse_pipfile_lock),
    "conda-lock.yml": _named(parse_conda_lock),
    "environment.yml": lambda path, data: parse_environment_yml(path, data, limit=MAX_LOCK_BYTES),
    "requirements.txt": lambda path, data: parse_requirements(path, data, limit=MAX_LOCK_BYTES),
}
