"""``watch.list``, ``watch.add``, ``watch.remove``: folders watched at runtime, kept across restarts."""

from __future__ import annotations

import asyncio
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


def _check_root(raw: str, data_dir: Path) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        raise InvalidParams(f"watch paths must be absolute (got {raw!r}); the CLI makes them so")
    resolved = path.resolve()
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
    path = str(Path(p.path).expanduser().resolve())
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
