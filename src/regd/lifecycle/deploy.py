"""Deploy pointers: ``<deploy_dir>/<model>/<stage>`` and ``.../@<alias>`` symlinks to stored artifacts.

A serving process watches one path and reloads when it moves. Every swap is atomic (a symlink
under a temporary name, then ``rename`` over the old one), so a reader sees the old target or the
new one, never nothing. ``sync`` makes the pointers of a model match the catalog exactly; it is
idempotent, so the daemon also runs it at start to repair what a crash interrupted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from regd.domain import Model

POINTED_STAGES = ("production", "staging")


def desired_pointers(model: Model, stored_paths: dict[str, str]) -> dict[str, str]:
    """pointer name -> target path, from the model's stages and aliases (``stored_paths`` by version)."""
    want: dict[str, str] = {}
    if model.production and model.production in stored_paths:
        want["production"] = stored_paths[model.production]
    if model.staging and model.staging[0] in stored_paths:
        want["staging"] = stored_paths[model.staging[0]]  # the newest staging version
    for alias, version in model.aliases.items():
        if version in stored_paths:
            want[f"@{alias}"] = stored_paths[version]
    return want


def sync(deploy_dir: Path, model: str, want: dict[str, str]) -> list[str]:
    """Make ``<deploy_dir>/<model>/`` hold exactly ``want``; return the pointers that changed."""
    directory = deploy_dir / model
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, target in want.items():
        link = directory / name
        try:
            if os.readlink(link) == target:
                continue
        except OSError:
            pass
        _swap(link, target)
        changed.append(name)
    for entry in os.scandir(directory):
        managed = entry.name in POINTED_STAGES or entry.name.startswith("@")
        if managed and entry.name not in want and entry.is_symlink():
            os.unlink(entry.path)
            changed.append(entry.name)
    if changed:
        _fsync_dir(directory)
    return changed


def _swap(link: Path, target: str) -> None:
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
