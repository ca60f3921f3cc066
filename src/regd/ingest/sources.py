"""What may be registered: path checks, model-directory walks, and the model name a path gets."""

from __future__ import annotations

import logging
import os
import re
import stat
from fnmatch import fnmatchcase
from pathlib import Path

from regd.domain import is_valid_name
from regd.errors import InvalidParams, NotFound

log = logging.getLogger(__name__)

# names a writer uses before the final rename, and our own sidecars: never part of a model
TEMP_PATTERNS = ("*.tmp", "*.part", "*.partial", "*.crdownload", "*.swp", "*~", ".*")
MAX_DIRECTORY_FILES = 100_000


def is_temporary(name: str) -> bool:
    """Temporary names (``*.tmp``, ``*.part``, dotfiles) are ignored: write-then-rename registers once."""
    return any(fnmatchcase(name, p) for p in TEMP_PATTERNS)


def check_source(path: Path, data_dir: Path) -> Path:
    """Resolve a path to register, refusing what cannot or must not be registered."""
    try:
        resolved = path.expanduser().resolve(strict=True)
    except FileNotFoundError:
        raise NotFound(f"no such file or directory: {path}", {"path": str(path)}) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission problem
        raise InvalidParams(f"cannot resolve {path}: {exc}", {"path": str(path)}) from None
    try:
        st = resolved.stat()
    except OSError as exc:
        raise InvalidParams(f"cannot stat {path}: {exc.strerror}", {"path": str(path)}) from None
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        kind = _kind(st.st_mode)
        raise InvalidParams(f"{path} is a {kind}: only regular files and model directories register", {"path": str(path)})
    data = data_dir.expanduser().resolve()
    if resolved == data or data in resolved.parents:
        raise InvalidParams(
            f"{path} lies inside regd's data dir ({data}): register the original, not a stored copy", {"path": str(path)}
        )
    if not os.access(resolved, os.R_OK):
        raise InvalidParams(f"{path} is not readable", {"path": str(path)})
    return resolved


def _kind(mode: int) -> str:
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def directory_files(root: Path) -> list[str]:
    """The relpaths that make up a model directory, sorted.

    Symlinks are followed only to a file inside the directory: one leaving it, dangling, or going
    round in a loop is skipped, as a file that is not part of the model (the watcher walks a settling
    directory again and again, so a skip is logged at debug level only).
    """
    out: list[str] = []
    base = root.resolve()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not is_temporary(d))
        for name in sorted(filenames):
            if is_temporary(name) or name == "regd.json" or name.endswith(".regd.json"):
                continue
            full = Path(dirpath) / name
            if full.is_symlink():
                try:
                    target = full.resolve(strict=True)
                except (OSError, RuntimeError) as exc:  # dangling, or a loop (RuntimeError before 3.13)
                    log.debug("skipping %s in %s: the symlink cannot be resolved (%s)", name, root, exc)
                    continue
                if base not in target.parents or not target.is_file():
                    continue
            elif not full.is_file():
                continue
            out.append(full.relative_to(base).as_posix())
            if len(out) > MAX_DIRECTORY_FILES:
                raise InvalidParams(f"{root} holds more than {MAX_DIRECTORY_FILES} files: not a model directory")
    return out


_INVALID = re.compile(r"[^A-Za-z0-9._-]+")


def sanitize_name(raw: str) -> str:
    """Make a model name from a file or folder name (``model final v2`` -> ``model-final-v2``)."""
    name = _INVALID.sub("-", raw).strip("-._")[:128]
    return name if name and is_valid_name(name) else "model"


def derive_name(path: Path, watch_root: Path | None) -> str:
    """The first directory under the watch root (``root/fraud/run-12/model.pt`` -> ``fraud``), else the stem."""
    if watch_root is not None:
        try:
            rel = path.relative_to(watch_root)
        except ValueError:
            rel = None
        if rel is not None and len(rel.parts) > 1:
            return sanitize_name(rel.parts[0])
    return sanitize_name(path.stem if path.is_file() else path.name)


def readable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """Could the user ``uid`` (in groups ``gids``) read ``path`` themselves? (Shared mode: the daemon
    reads with its own rights, so it must not register what the caller could not have read.)"""
    def allowed(st: os.stat_result, bit_user: int, bit_group: int, bit_other: int) -> bool:
        if uid == 0:
            return True
        if st.st_uid == uid:
            return bool(st.st_mode & bit_user)
        if st.st_gid in gids:
            return bool(st.st_mode & bit_group)
        return bool(st.st_mode & bit_other)

    resolved = path.resolve()
    for parent in reversed(resolved.parents):  # every directory on the way must be searchable
        if not allowed(parent.stat(), stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH):
            return False
    targets = [resolved] if resolved.is_file() else [resolved / rel for rel in directory_files(resolved)]
    if resolved.is_dir() and not allowed(resolved.stat(), stat.S_IRUSR | stat.S_IXUSR, stat.S_IRGRP | stat.S_IXGRP,
                                         stat.S_IROTH | stat.S_IXOTH):  # fmt: skip
        return False
    return all(allowed(t.stat(), stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH) for t in targets)
