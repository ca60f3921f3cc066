"""``watch.list``, ``watch.add``, ``watch.remove``: folders watched at runtime, kept across restarts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from regd.api.methods import Call, handler
from regd.config import DEFAULT_PATTERNS
from regd.domain import WatchSpec
from regd.errors import InvalidParams, NotFound
from regd.protocol import NoParams, WatchAddParams, WatchList, WatchRemoveParams
from regd.store.catalog import AuditDraft, WriteTx


def _listing(call: Call) -> WatchList:
    return WatchList(items=call.daemon.registrar.watch_states())


@handler("watch.list")
async def watch_list(call: Call, _: NoParams) -> WatchList:
    return _listing(call)


def _expand(raw: str) -> Path:
    try:
        return Path(raw).expanduser()
    except RuntimeError:  # ~someone-unknown
        raise InvalidParams(f"cannot expand {raw!r}: no such user", {"path": raw}) from None


def _resolve(raw: str) -> Path:
    """The absolute, symlink-free path of a watch root; -32602 for one that cannot be resolved."""
    path = _expand(raw)
    if not path.is_absolute():
        raise InvalidParams(f"watch paths must be absolute (got {raw!r}); the CLI makes them so", {"path": raw})
    try:
        resolved = path.resolve()
        resolved.exists()  # a name over NAME_MAX, an unsearchable parent ... fail here, not later
    except RuntimeError as exc:  # a symlink loop (Python < 3.13)
        raise InvalidParams(f"cannot resolve {raw}: {exc}", {"path": raw}) from None
    except OSError as exc:
        raise InvalidParams(f"cannot resolve {raw}: {exc.strerror or exc}", {"path": raw}) from None
    return resolved


def _check_root(raw: str, data_dir: Path) -> Path:
    resolved = _resolve(raw)
    data = data_dir.resolve()
    if resolved == data or data in resolved.parents:
        raise InvalidParams(f"{raw} is inside regd's data dir ({data}): watch your training output instead")
    if resolved.exists() and not resolved.is_dir():
        raise InvalidParams(f"{raw} is not a directory")
    return resolved


@handler("watch.add")
async def watch_add(call: Call, p: WatchAddParams) -> WatchList:
    d = call.daemon
    path = await asyncio.to_thread(_check_root, p.path, d.config.data_dir)
    existing = d.registrar.watcher.roots.get(str(path)) if d.registrar.watcher else None
    base = existing.spec if existing else WatchSpec(path=str(path), patterns=list(DEFAULT_PATTERNS))
    if existing and existing.spec.source == "config":
        raise InvalidParams(f"{path} is watched by the config file; change it there and `regd reload`")
    spec = base.model_copy(
        update={k: v for k, v in p.model_dump(exclude_none=True).items() if k != "path"}
        | {"path": str(path), "source": "runtime"}
    )
    spec = WatchSpec.model_validate(spec.model_dump())

    def persist(tx: WriteTx) -> None:
        tx.add_watch(spec)
        tx.append_audit(AuditDraft(actor=call.actor, action="watch.added", details=spec.model_dump()))

    await d.catalog.write(persist)
    await d.registrar.watcher.add(spec)
    return _listing(call)


@handler("watch.remove")
async def watch_remove(call: Call, p: WatchRemoveParams) -> WatchList:
    d = call.daemon
    try:
        path = str(await asyncio.to_thread(_resolve, p.path))
    except InvalidParams:
        # a root that has since become unresolvable (replaced by a symlink loop) is still removable by its name
        path = os.path.abspath(_expand(p.path))
        if not d.registrar.watcher or path not in d.registrar.watcher.roots:
            raise
    root = d.registrar.watcher.roots.get(path) if d.registrar.watcher else None
    if root is None:
        raise NotFound(f"{p.path} is not watched", {"path": p.path})
    if root.spec.source == "config":
        raise InvalidParams(f"{path} is watched by the config file; remove it there and `regd reload`")

    def persist(tx: WriteTx) -> None:
        tx.remove_watch(path)
        tx.append_audit(AuditDraft(actor=call.actor, action="watch.removed", details={"path": path}))

    await d.catalog.write(persist)
    await d.registrar.watcher.remove(path)
    return _listing(call)
