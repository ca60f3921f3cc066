"""Registration, wired: ingest prepares and stores the bytes, lifecycle records the version.

Both ``versions.register`` and the folder watchers come through here, so a version registered by
hand and one dropped into a watched folder are the same thing, audited the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regd.api.peercred import Caller, user_name
from regd.api.rwlock import RWLock
from regd.config import Config
from regd.domain import WatchState
from regd.domain import Version
from regd.ingest import pipeline
from regd.ingest.progress import IngestTracker
from regd.errors import PermissionDenied
from regd.ingest.sources import check_source, readable_by
from regd.ingest.watcher import WatchManager
from regd.lifecycle import registration
from regd.store.catalog import WriteTx

if TYPE_CHECKING:
    from regd.api.daemon import Daemon

log = logging.getLogger(__name__)


class Registrar:
    """Registers paths for the API and the watchers, and keeps the ingest queue's figures."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.tracker = IngestTracker()
        self.watcher: WatchManager | None = None
        self.blob_lock = RWLock()
        """Registrations share it; gc takes it alone (see ``rwlock``)."""

    async def start(self) -> None:
        """Start watching the config's folders and those added at runtime (kept in the catalog)."""
        self.watcher = WatchManager(self._auto_register, self.daemon.catalog, exclude=self.daemon.config.data_dir)
        runtime = await self.daemon.catalog.read(lambda r: r.watches())
        config_specs = [w.spec() for w in self.daemon.config.watch]
        config_paths = {s.path for s in config_specs}
        await self.watcher.start(config_specs + [s for s in runtime if s.path not in config_paths])

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()

    async def reload(self, config: Config) -> None:
        """Apply a reloaded config's watch list: new roots start, dropped ones stop."""
        if self.watcher is None:
            return
        fresh = {s.path: s for s in (w.spec() for w in config.watch)}
        for path, root in list(self.watcher.roots.items()):
            if root.spec.source == "config" and path not in fresh:
                await self.watcher.remove(path)
        for path, spec in fresh.items():
            current = self.watcher.roots.get(path)
            if current is None or current.spec != spec:
                await self.watcher.add(spec)
        self.daemon.config.watch = config.watch

    def watch_states(self) -> list[WatchState]:
        """The watched folders and their state."""
        return self.watcher.states() if self.watcher is not None else []

    async def _auto_register(self, path: Path, root: Path) -> tuple[str, bool]:
        # files that land in a watched folder are registered as the daemon's owner
        version, created = await self.register(path, actor=user_name(os.getuid()), watch_root=root)
        return version.artifact.digest, created

    async def register(
        self,
        path: str | Path,
        *,
        actor: str,
        name: str | None = None,
        explicit: dict[str, Any] | None = None,
        watch_root: Path | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        caller: Caller | None = None,
    ) -> tuple[Version, bool]:
        """Register one file or model directory; returns the version and whether it is new.

        ``caller``: in shared mode, a caller who could not read the path themselves is refused.
        """
        config = self.daemon.config
        copy = config.store.mode == "copy"
        ticket, advance = self.tracker.begin(str(path), 0)
        size = 0
        done = 0
        where = str(path)
        checked = False

        def progress(delta: int) -> None:
            nonlocal done
            advance(delta)
            done += delta
            if on_progress is not None:
                on_progress(done, size)

        def staged() -> pipeline.Staged:
            # one worker-thread hop for every blocking step (checks, size, format, bytes, lock, git look)
            nonlocal size, where, checked
            resolved = check_source(Path(path), config.data_dir)
            where = str(resolved)
            if caller is not None and config.api.group and caller.uid != os.getuid():
                gids = {caller.gid, *os.getgrouplist(caller.name, caller.gid)} if not caller.name.startswith("uid:") else {caller.gid}
                if not readable_by(resolved, caller.uid, gids):
                    raise PermissionDenied(
                        f"{caller.name} cannot read {resolved}: regd registers only what its caller could read",
                        {"path": str(resolved), "actor": caller.name},
                    )
            checked = True  # from here on a failure is the ingest queue's to count
            size = _size_of(resolved)
            self.tracker.resize(ticket, where, size)
            source = pipeline.Source(path=resolved, watch_root=watch_root, name=name, explicit=explicit, actor=actor)
            return pipeline.stage(source, self.daemon.blobs, copy=copy, progress=progress)

        try:
            async with self.blob_lock.shared():
                ready = await asyncio.to_thread(staged)
                draft = await pipeline.finish(ready)

                def record(tx: WriteTx) -> tuple[Version, bool]:
                    try:
                        return registration.record(tx, draft, actor)
                    finally:
                        if ready.durable is not None:
                            # the blob's fsyncs ran beside the statements above: commit only once it is
                            # durable (and answer a refusal only once its temp is gone)
                            ready.durable.result()

                version, created = await self.daemon.catalog.write(record)
        except Exception as exc:
            if checked:
                self.tracker.end(ticket, size, ok=False, error=f"{where}: {exc}")
            else:  # refused before any work (no such path, not readable): a bad request, not a failed ingest
                self.tracker.cancel(ticket)
            raise
        self.tracker.end(ticket, size, ok=True)
        return version, created


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
