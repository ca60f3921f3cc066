"""Watching folders: turn filesystem events into settled model files and directories to register.

    watchfiles (inotify) --events--> classify (thread) --touches--> Settler --due--> check (thread)
        --complete--> queue --> workers --> register callback (the API's registrar)

Idle costs nothing but watchfiles' own blocking thread: the settle timer sleeps until the next
deadline, and the workers wait on the queue. A restart scans every root and queues what arrived
(or changed) while the daemon was down, skipping what ``ingest_seen`` says is already handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from regd.domain import WatchSpec, WatchState
from regd.errors import NotFound, RegdError
from regd.ingest import formats
from regd.ingest.settle import Pending, Settler, Snapshot, dir_snapshot, file_snapshot, file_state
from regd.ingest.sidecar import is_sidecar_or_companion
from regd.ingest.sources import directory_files, is_temporary
from regd.store.catalog import Catalog, SeenEntry

log = logging.getLogger(__name__)

RegisterFn = Callable[[Path, Path], Awaitable[tuple[str, bool]]]
"""(path, watch root) -> (digest, created). Raises on failure."""

MARKERS = ("MLmodel", "saved_model.pb", "config.json")
WORKERS = 2
MISSING_RETRY_S = 2.0
STEP_MS = 250
"""Longest step of watchfiles' polling loop (it wakes every step to check its stop event): 4 wakeups a
second per root instead of 20 keeps the idle daemon near zero CPU. The settle window starts from the
file's own change time, not from when the batch arrived, so the longer step adds no latency while
it stays under settle_ms (see ``_step``)."""
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 300.0
RETRY_ATTEMPTS = 12
"""A file whose ingest failed for a transient cause (a full disk ...) is tried again after 2, 4, 8 ...
up to 300 s, at most this many times (about half an hour); then only an event or a restart retries it."""
TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE,
     errno.EBUSY}
)  # fmt: skip
TRANSIENT_STORAGE = frozenset({"no_space", "read_only", "io_error"})


@dataclass
class Root:
    """One watched folder and its watcher task."""

    spec: WatchSpec
    path: Path
    state: str = "starting"
    error: str | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the root is watched (or known missing): the daemon serves only after that."""
    task: asyncio.Task[None] | None = None

    def watch_state(self) -> WatchState:
        return WatchState(**self.spec.model_dump(), state=self.state, error=self.error)

    def matches(self, rel: PurePosixPath) -> bool:
        """A file that may register: a pattern matches its name, and no ignore glob its relpath."""
        if self.ignored(rel):
            return False
        patterns = self.spec.patterns or []
        return any(fnmatchcase(rel.name, p) for p in patterns)

    def ignored(self, rel: PurePosixPath) -> bool:
        text = rel.as_posix()
        return any(fnmatchcase(text, g) or rel.match(g) for g in self.spec.ignore)


@dataclass(frozen=True)
class Touch:
    """What one event means for the settler: this file or model directory is (still) being written."""

    path: Path
    kind: str  # file | dir | gone
    snapshot: Snapshot | None = None
    changed_ns: int | None = None
    """A file's last change (the later of mtime and ctime, ns since the epoch): its settle window starts there."""


class WatchManager:
    """Watches roots, settles what lands, and feeds the register callback; owned by the daemon."""

    def __init__(self, register: RegisterFn, catalog: Catalog, exclude: Path, workers: int = WORKERS) -> None:
        self._register = register
        self._catalog = catalog
        self._exclude = exclude.resolve()
        self.roots: dict[str, Root] = {}
        self.settler = Settler()
        self.queue: asyncio.Queue[tuple[Path, Root, Snapshot | None]] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._n_workers = workers
        self._reported: set[tuple[str, str]] = set()
        self._retries: dict[Path, int] = {}
        """Transient failures so far, per path waiting to be tried again."""

    # ------------------------------------------------------------------ life cycle

    async def start(self, specs: list[WatchSpec]) -> None:
        self._tasks.append(asyncio.create_task(self._timer(), name="settle-timer"))
        for i in range(self._n_workers):
            self._tasks.append(asyncio.create_task(self._worker(), name=f"ingest-worker-{i}"))
        for spec in specs:
            await self.add(spec)
        roots = list(self.roots.values())
        if roots:
            # a file dropped the moment `regd start` returns must not be missed
            await asyncio.wait([asyncio.create_task(r.ready.wait()) for r in roots], timeout=10)

    async def stop(self) -> None:
        for root in list(self.roots.values()):
            await self._stop_root(root)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def add(self, spec: WatchSpec) -> Root:
        """Start watching ``spec.path`` (replacing an existing watch of the same path)."""
        path = Path(spec.path)
        if str(path) in self.roots:
            await self._stop_root(self.roots.pop(str(path)))
        root = Root(spec=spec, path=path)
        self.roots[str(path)] = root
        root.task = asyncio.create_task(self._watch(root), name=f"watch {path}")
        return root

    async def remove(self, path: str) -> bool:
        root = self.roots.pop(path, None)
        if root is None:
            return False
        await self._stop_root(root)
        for pending in [p for p in self.settler.pending.values() if p.context is root]:
            self.settler.forget(pending.path)
            self._retries.pop(pending.path, None)
        return True

    async def _stop_root(self, root: Root) -> None:
        root.stop.set()
        if root.task is not None:
            root.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await root.task

    def states(self) -> list[WatchState]:
        return [r.watch_state() for r in self.roots.values()]

    # ------------------------------------------------------------------ watching

    async def _watch(self, root: Root) -> None:
        from watchfiles import awatch

        while not root.stop.is_set():
            if not root.path.is_dir():
                root.state, root.error = "missing", f"{root.path} does not exist (yet): watching for it"
                root.ready.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(root.stop.wait(), MISSING_RETRY_S)
                continue
            changes_of = awatch(
                root.path, watch_filter=None, stop_event=root.stop, recursive=root.spec.recursive,
                ignore_permission_denied=True, step=_step(root.spec), rust_timeout=0,
            )  # fmt: skip
            pending: asyncio.Future[set[tuple[object, str]]] | None = None
            try:
                # start inotify first, then scan: a file written before the watch began is found by
                # the scan, one written after makes an event; both touching it once is harmless
                pending = asyncio.ensure_future(changes_of.__anext__())
                await asyncio.sleep(0)
                touches = await asyncio.to_thread(self._scan, root, await self._seen(root))
                self._apply(root, touches)
                root.state, root.error = "watching", None
                root.ready.set()
                while True:
                    changes = await pending
                    pending = asyncio.ensure_future(changes_of.__anext__())
                    touches = await asyncio.to_thread(self._classify, root, [(c.name, p) for c, p in changes])
                    self._apply(root, touches)
            except asyncio.CancelledError:
                raise
            except StopAsyncIteration:
                return  # stopped
            except FileNotFoundError:
                continue  # the root vanished: back to waiting for it
            except Exception as exc:  # noqa: BLE001 - a broken root must not take the others down
                root.state, root.error = "error", f"{type(exc).__name__}: {exc}"
                root.ready.set()
                log.warning("watch %s failed: %s; retrying", root.path, root.error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(root.stop.wait(), MISSING_RETRY_S)
            finally:
                if pending is not None and not pending.done():
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                with contextlib.suppress(BaseException):
                    await changes_of.aclose()

    async def _seen(self, root: Root) -> dict[str, SeenEntry]:
        return await self._catalog.read(lambda r: r.seen_under(str(root.path)))

    def _apply(self, root: Root, touches: list[Touch]) -> None:
        now = time.monotonic()
        wall_ns = time.time_ns()
        for t in touches:
            if t.kind == "gone":
                self.settler.forget(t.path)
                self._retries.pop(t.path, None)
                continue
            at = now
            if t.kind == "dir":
                self.settler.forget_under(t.path)
                quiet = root.spec.dir_settle_ms / 1000
            else:
                quiet = root.spec.settle_ms / 1000
                if t.changed_ns is not None:
                    # the window runs from the file's last change, not from when its event reached us
                    # (watchfiles batches events for up to two steps); never from further back than
                    # one window, and a change time in the future (clock skew) counts as now
                    at = now - min(quiet, max(0.0, (wall_ns - t.changed_ns) / 1e9))
            self.settler.touch(t.path, t.kind, quiet, at, t.snapshot, context=root)
        if touches:
            self._wake.set()

    # ------------------------------------------------------------------ classification (worker threads)

    def _classify(self, root: Root, changes: list[tuple[str, str]]) -> list[Touch]:
        """Map raw events to touches: a model directory, a model file, or a path gone."""
        out: dict[Path, Touch] = {}
        listings: dict[Path, list[str] | None] = {}
        for change, raw in changes:
            path = Path(raw)
            rel = self._relative(root, path)
            if rel is None or any(is_temporary(part) for part in rel.parts) or root.ignored(rel):
                continue
            if change != "deleted" and path.is_dir() and not path.is_symlink():
                # inotify watches a new directory only once it is reported: whatever was written
                # into it before that (mkdir, then files at once) makes no event of its own
                for t in self._walk(root, path, {}, listings):
                    out.setdefault(t.path, t)
                continue
            model_dir = self._model_dir_of(root, path, listings)
            if model_dir is not None:
                if model_dir not in out:
                    out[model_dir] = Touch(model_dir, "dir", dir_snapshot(model_dir, directory_files))
                continue
            if change == "deleted":
                out[path] = Touch(path, "gone")
                continue
            if is_sidecar_or_companion(path):
                continue
            if root.matches(rel) and self._inside(root, path):
                snap, changed = file_state(path)
                out[path] = Touch(path, "file", snap, changed)
        return list(out.values())

    def _scan(self, root: Root, seen: dict[str, SeenEntry]) -> list[Touch]:
        """Walk a root at start: everything new or changed since the daemon last looked."""
        return self._walk(root, root.path, seen, {})

    def _walk(self, root: Root, top: Path, seen: dict[str, SeenEntry], listings: dict[Path, list[str] | None]) -> list[Touch]:
        """Every model file and model directory under ``top`` not already handled in its current state."""
        out: list[Touch] = []
        enclosing = self._model_dir_of(root, top, listings) if top != root.path else None
        if enclosing is not None:  # a folder appeared inside a model directory: the directory changed
            return [Touch(enclosing, "dir", dir_snapshot(enclosing, directory_files))]
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            here = Path(dirpath)
            rel_dir = self._relative(root, here)
            if rel_dir is None or (rel_dir.parts and (any(is_temporary(p) for p in rel_dir.parts) or root.ignored(rel_dir))):
                dirnames[:] = []
                continue
            if self._layout_of(here, listings, pending_ok=True) is not None:
                dirnames[:] = []  # a model directory is one version: do not descend
                snap = dir_snapshot(here, directory_files)
                if not _unchanged(seen.get(str(here)), _dir_identity(snap)):
                    out.append(Touch(here, "dir", snap))
                continue
            if not root.spec.recursive and here != root.path:
                dirnames[:] = []
                continue
            for name in filenames:
                path = here / name
                rel = rel_dir / name
                if is_temporary(name) or is_sidecar_or_companion(path) or not root.matches(rel) or not self._inside(root, path):
                    continue
                snap, changed = file_state(path)
                if snap is not None and not _unchanged(seen.get(str(path)), snap):
                    out.append(Touch(path, "file", snap, changed))
        return out

    def _relative(self, root: Root, path: Path) -> PurePosixPath | None:
        try:
            rel = path.relative_to(root.path)
        except ValueError:
            return None
        if self._exclude == path or self._exclude in path.parents:
            return None  # never register regd's own store, even when a root contains it
        return PurePosixPath(rel.as_posix())

    @staticmethod
    def _inside(root: Root, path: Path) -> bool:
        """Symlinks leading out of the root are not followed."""
        if not path.is_symlink():
            return True
        try:
            target = path.resolve(strict=True)
        except OSError:
            return False
        base = root.path.resolve()
        return base in target.parents

    def _model_dir_of(self, root: Root, path: Path, listings: dict[Path, list[str] | None]) -> Path | None:
        """The model directory (MLmodel, config.json + weights, saved_model.pb) that holds ``path``."""
        start = path if path.is_dir() else path.parent
        for d in (start, *start.parents):
            if d != root.path and root.path not in d.parents:
                break
            if self._layout_of(d, listings, pending_ok=True) is not None:
                return d
            if d == root.path:
                break
        return None

    @staticmethod
    def _layout_of(d: Path, listings: dict[Path, list[str] | None], pending_ok: bool = False) -> str | None:
        if d not in listings:
            try:
                listings[d] = os.listdir(d)
            except OSError:
                listings[d] = None
        names = listings[d]
        if not names:
            return None
        layout = formats.detect_directory_layout(d, names)
        if layout is None and pending_ok and any(m in names for m in MARKERS):
            # config.json first, weights later: already a model directory in the making
            return "pending"
        return layout

    # ------------------------------------------------------------------ settling and registering

    async def _timer(self) -> None:
        while True:
            deadline = self.settler.next_deadline()
            self._wake.clear()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            for pending in self.settler.due(time.monotonic()):
                await self._check(pending)

    async def _check(self, p: Pending) -> None:
        root = p.context
        assert isinstance(root, Root)
        if p.kind == "dir":
            snap, status = await asyncio.to_thread(_dir_state, p.path)
            now = time.monotonic()
            if status is None:  # not (or no longer) a model directory: nothing to register as one
                self.settler.forget(p.path)
                return
            if not status.complete or (status.expected_later and not p.extra_wait_until):
                if status.expected_later and not p.extra_wait_until:
                    # late companions (MLflow's requirements, a tokenizer): one more window for them
                    p.extra_wait_until = now + p.quiet_s
                p.snapshot, p.last_event = snap, now
                self._wake.set()
                return
        else:
            snap = await asyncio.to_thread(file_snapshot, p.path)
            now = time.monotonic()
        if self.settler.check(p, snap, now):
            await self.queue.put((p.path, root, snap))
        self._wake.set()

    async def _worker(self) -> None:
        while True:
            path, root, snap = await self.queue.get()
            try:
                await self._register_one(path, root, snap)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the worker
                if not self._retry_later(path, root, snap, exc):
                    log.exception("ingest of %s failed", path)
            finally:
                self.queue.task_done()

    def _retry_later(self, path: Path, root: Root, snap: Snapshot | None, exc: Exception) -> bool:
        """Schedule another try of a file that failed for a transient cause; False if it was not one.

        Through the settler, so the wait is a timer deadline (no polling), a change to the file
        meanwhile restarts the ordinary settle window, and the bytes are re-checked before the try.
        """
        if not _transient(exc) or root.stop.is_set() or self.roots.get(str(root.path)) is not root:
            return False
        attempt = self._retries.get(path, 0) + 1
        if attempt > RETRY_ATTEMPTS:
            self._retries.pop(path, None)
            log.warning("giving up on %s after %d tries (%s); a change to it or a restart tries again",
                        path, RETRY_ATTEMPTS, exc)  # fmt: skip
            return True
        self._retries[path] = attempt
        delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempt - 1))
        (log.warning if attempt == 1 else log.debug)("cannot register %s yet (%s): trying again in %.0f s", path, exc, delay)
        kind = "dir" if _is_dir_snapshot(snap) else "file"
        self.settler.touch(path, kind, delay, time.monotonic(), snap, context=root)
        self._wake.set()
        return True

    async def _register_one(self, path: Path, root: Root, snap: Snapshot | None) -> None:
        identity = _dir_identity(snap) if _is_dir_snapshot(snap) else snap
        try:
            digest, created = await self._register(path, root.path)
        except NotFound:
            self._retries.pop(path, None)
            log.debug("%s vanished before it was registered", path)
            return
        except RegdError as exc:
            if _transient(exc):
                raise  # tried again later (``_worker``); not marked failed, so a restart tries it too
            self._retries.pop(path, None)
            await self._mark(path, identity, None, "failed", exc.message)
            key = (str(path), exc.message)
            if key not in self._reported:  # reported once, not on every event that touches it
                self._reported.add(key)
                log.warning("cannot register %s: %s", path, exc.message)
            return
        self._retries.pop(path, None)
        await self._mark(path, identity, digest, "registered" if created else "known", None)

    async def _mark(self, path: Path, identity: Snapshot | None, digest: str | None, outcome: str, detail: str | None) -> None:
        if not (isinstance(identity, tuple) and len(identity) == 3):
            return
        size, mtime_ns, inode = identity
        await self._catalog.write(lambda tx: tx.mark_seen(str(path), size, mtime_ns, inode, digest, outcome, detail))

    async def drain(self) -> None:
        """Wait until nothing is pending, queued or being registered (tests and the demo)."""
        while self.settler.pending or not self.queue.empty() or self.queue._unfinished_tasks:  # noqa: SLF001
            await asyncio.sleep(0.05)


def _dir_state(path: Path) -> tuple[Snapshot | None, formats.DirectoryStatus | None]:
    snap = dir_snapshot(path, directory_files)
    if snap is None:
        return None, None
    names = [rel for rel, _, _ in snap]  # type: ignore[misc]
    layout = formats.detect_directory_layout(path, names)
    if layout is None:
        return snap, None
    return snap, formats.directory_requirements(path, layout, names)


def _step(spec: WatchSpec) -> int:
    """watchfiles' step for a root: a batch arrives one to two steps after its first event, so keep
    two steps within the settle window (it then costs no latency), and at most STEP_MS."""
    return max(20, min(STEP_MS, spec.settle_ms // 2))


def _is_dir_snapshot(snap: Snapshot | None) -> bool:
    return isinstance(snap, tuple) and bool(snap) and isinstance(snap[0], tuple)


def _transient(exc: BaseException) -> bool:
    """A failure that may pass by itself (a full disk, a busy or flaky store), worth another try."""
    if isinstance(exc, RegdError):
        return isinstance(exc.data, dict) and exc.data.get("storage") in TRANSIENT_STORAGE
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "full" in text or "i/o" in text or "locked" in text or "readonly" in text
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def _dir_identity(snap: Snapshot | None) -> tuple[int, int, int] | None:
    """A directory's identity for ``ingest_seen``: total size, newest mtime, file count."""
    if not snap:
        return None
    files = list(snap)  # type: ignore[call-overload]
    return (sum(f[1] for f in files), max(f[2] for f in files), len(files))


def _unchanged(entry: SeenEntry | None, identity: Snapshot | None) -> bool:
    return entry is not None and identity is not None and (entry.size, entry.mtime_ns, entry.inode) == identity
