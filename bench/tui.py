"""regtui at 100,000 versions: how soon the models screen shows its rows, and whether scrolling a
model with 100,000 versions ever stalls a frame.

The app is driven headless (``App.run_test(size=(120, 40))``) against a real daemon. The registry
is real too: N tiny distinct safetensors files registered through ``versions.register`` by a pool
of clients (``store.mode = "reference"``, so the bytes stay put and the catalog is all that is
built). That takes minutes at 100,000, so the finished catalog is kept in a cache directory
(``$REGD_BENCH_CACHE``, default ``~/.cache/regd-bench``) keyed by N and the schema, and copied for
each run; the setup time is reported on its own.

Scrolling is a held key: a key event every 33 ms (a keyboard's auto-repeat) sent to the driver while
the app runs; every frame the app paints is timestamped. Per key: the time from the key to the
next frame. Over the run: the longest gap between frames while keys were arriving, and the longest
time the event loop was blocked (a 5 ms ticker that measures how late it wakes up).
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import ROOT, Section, daemon, median, ms, pct

N_FULL, N_QUICK = 100_000, 5_000
SMALL_MODELS, SMALL_VERSIONS = 20, 5
"""Besides the big model: a registry also has a few ordinary models."""
STALL_S = 0.100
MODELS_TARGET_S = 1.0
KEY_REPEAT_S = 1 / 30
SIZE = (120, 40)


# ----------------------------------------------------------------------------- the registry


def safetensors_bytes(i: int) -> bytes:
    """A valid one-tensor safetensors file whose bytes are unique to ``i`` (no numpy needed)."""
    header = json.dumps({"w": {"dtype": "I64", "shape": [1], "data_offsets": [0, 8]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + struct.pack("<q", i)


def _cache_dir(n: int) -> Path:
    schema = hashlib.sha256((ROOT / "src/regd/store/migrations.py").read_bytes()).hexdigest()[:12]
    base = Path(os.environ.get("REGD_BENCH_CACHE", Path.home() / ".cache" / "regd-bench"))
    return base / f"tui-{n}-{schema}"


def _register_all(sock: Path, jobs: list[tuple[str, str, dict[str, Any]]], workers: int = 8) -> None:
    from regd.client import Client

    local = threading.local()

    def one(job: tuple[str, str, dict[str, Any]]) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(sock, timeout=120)
        path, name, meta = job
        client.call("versions.register", {"path": path, "name": name, "metadata": meta})

    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(one, jobs, chunksize=64):
            pass


RPC_SAMPLE = 1000
"""Versions registered through the socket even when the rest is bulk-loaded: their rate is reported."""
BATCH = 2000


def _bulk_record(db: Path, jobs: list[tuple[str, str, dict[str, Any], str]]) -> None:
    """Record ``jobs`` through the registry's own registration transaction, ``BATCH`` per transaction.

    ``regd.lifecycle.registration.record`` is what ``versions.register`` runs once the file is
    hashed and read: numbering, dedupe and the audit row are the daemon's. Only the ingest (hash,
    format reader) is replaced by a copy of the facts of the last version the daemon registered,
    with each file's own digest, size, path and metrics, and the version number the daemon would
    assign pinned (as a sidecar may): the daemon finds the latest version by sorting all of a
    model's versions, which at 100,000 makes each registration cost ~100 ms (see the report).
    """
    from regd.domain import FileEntry
    from regd.lifecycle.registration import record
    from regd.store import open_catalog
    from regd.store.catalog import VersionDraft

    async def load() -> None:
        catalog = open_catalog(f"sqlite:///{db}", db.parent)
        await catalog.open()
        try:
            template = await catalog.read(lambda r: r.version(r.row("big", "latest").id))
            signature_digest = await catalog.read(lambda r: r.row("big", "latest").signature_digest)
            for start in range(0, len(jobs), BATCH):
                chunk = jobs[start : start + BATCH]

                def write(tx: Any, chunk: list[tuple[str, str, dict[str, Any]]] = chunk) -> None:
                    for path, name, meta, number in chunk:
                        data = Path(path).read_bytes()
                        digest = hashlib.sha256(data).hexdigest()
                        draft = VersionDraft(
                            name=name, digest=digest, size=len(data), kind="file", format=template.artifact.format,
                            stored_path=path, source_path=path, store_mode="reference", run_id=template.lineage.run_id,
                            created_by=template.created_by, files=[FileEntry(path=Path(path).name, digest=digest, size=len(data))],
                            signature=template.signature, signature_digest=signature_digest,
                            format_metadata=template.format_metadata, metrics=meta.get("metrics", {}),
                            tags=meta.get("tags", {}), runtime=template.runtime, warnings=template.warnings,
                            pinned_version=number,
                        )  # fmt: skip
                        record(tx, draft, template.created_by)

                await catalog.write(write)
        finally:
            await catalog.close()

    asyncio.run(load())


def _numbered(jobs: list[tuple[str, str, dict[str, Any]]], rest: list[tuple[str, str, dict[str, Any]]],
              ) -> list[tuple[str, str, dict[str, Any], str]]:  # fmt: skip
    """Each job with the number the daemon gives it: 1.0.0 for a model's first, then a minor bump each."""
    seen: dict[str, int] = {}
    number = {}
    for path, name, _ in jobs:
        number[path] = f"1.{seen.get(name, 0)}.0"
        seen[name] = seen.get(name, 0) + 1
    return [(path, name, meta, number[path]) for path, name, meta in rest]


def prepared_registry(n: int, log: Callable[[str], None]) -> tuple[Path, dict[str, Any]]:
    """A catalog with ``n`` versions of ``big`` and a few small models: from the cache, or built now.

    The first ``RPC_SAMPLE`` go through ``versions.register`` on a real daemon (and their rate is
    reported); the rest through the same registration transaction in bulk (``_bulk_record``), or
    through the socket too if the store's internals have moved (``REGD_BENCH_RPC_ONLY=1`` forces it).
    """
    cache = _cache_dir(n)
    db = cache / "registry.db"
    facts_file = cache / "setup.json"
    if db.exists() and facts_file.exists():
        return db, {**json.loads(facts_file.read_text()), "cached": True}
    work = Path(tempfile.mkdtemp(prefix="regd-bench-tui-"))
    try:
        files = work / "files"
        files.mkdir()
        t0 = time.perf_counter()
        jobs: list[tuple[str, str, dict[str, Any]]] = []
        for i in range(n):
            path = files / f"big-{i}.safetensors"
            path.write_bytes(safetensors_bytes(i))
            meta = {"metrics": {"auc": round(0.5 + (i % 4999) / 10000, 4), "loss": round(1 - (i % 997) / 1000, 4)},
                    "tags": {"team": "risk" if i % 2 else "growth"}}  # fmt: skip
            jobs.append((str(path), "big", meta))
        for m in range(SMALL_MODELS):
            for v in range(SMALL_VERSIONS):
                path = files / f"m{m}-{v}.safetensors"
                path.write_bytes(safetensors_bytes(10_000_000 + m * 100 + v))
                jobs.append((str(path), f"model-{m:02d}", {"metrics": {"accuracy": round(0.7 + v / 100, 3)}}))
        write_s = time.perf_counter() - t0
        tmp_db = work / "registry.db"
        config = f'catalog = "sqlite:///{tmp_db}"\n[store]\nmode = "reference"\n'
        rpc_only = os.environ.get("REGD_BENCH_RPC_ONLY") == "1"
        sample = jobs[: len(jobs) if rpc_only else min(RPC_SAMPLE, n)]
        rest = jobs[len(sample) :]
        with daemon(config) as d:
            t1 = time.perf_counter()
            # the first one alone: semver follows registration order, and the rest need its signature
            _register_all(d.socket, sample[:1], workers=1)
            _register_all(d.socket, sample[1:])
            rpc_s = time.perf_counter() - t1
        method = "rpc"
        bulk_s = 0.0
        if rest:
            t2 = time.perf_counter()
            try:
                _bulk_record(tmp_db, _numbered(jobs, rest))
                method = "bulk"
            except (ImportError, AttributeError, TypeError) as exc:
                log(f"bench tui: the store's internals moved ({exc!r}); registering the rest through the socket")
                with daemon(config) as d:
                    _register_all(d.socket, rest)
            bulk_s = time.perf_counter() - t2
        facts = {"n": n, "versions": len(jobs), "write_s": write_s, "rpc_versions": len(sample), "rpc_s": rpc_s,
                 "rpc_rate": len(sample) / rpc_s, "bulk_versions": len(rest), "bulk_s": bulk_s, "method": method,
                 "register_s": rpc_s + bulk_s}  # fmt: skip
        cache.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            if (work / f"registry.db{suffix}").exists():
                shutil.move(str(work / f"registry.db{suffix}"), cache / f"registry.db{suffix}")
        facts_file.write_text(json.dumps(facts))
        log(f"bench tui: {len(jobs):,} versions in {facts['register_s']:.0f} s, cached in {cache}")
        return db, {**facts, "cached": False}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- driving the app


def _cpu() -> float:
    """CPU seconds of this (the app's) thread: what our code spent, whatever else the machine ran."""
    return time.thread_time()


class Frames:
    """Wall and CPU time of each frame the app paints (headless, ``App._display`` is still called)."""

    def __init__(self, app: Any) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                self.times.append(time.perf_counter())
                self.cpu.append(_cpu())
            original(screen, renderable)

        app._display = display

    def first_after(self, t: float) -> int | None:
        """The index of the first frame painted at or after ``t`` (frames are appended in time order)."""
        i = bisect.bisect_left(self.times, t)
        return i if i < len(self.times) else None


class LoopLag:
    """How late a 5 ms ticker wakes up (wall), and how much of that our own code ran (CPU).

    On a shared machine the wall figure includes time the OS gave to other processes; the CPU
    figure is the part regtui itself spent, which is what a stall of ours is.
    """

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.cpu_gaps: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t, c = time.perf_counter(), _cpu()
            await asyncio.sleep(0.005)
            self.gaps.append(max(0.0, time.perf_counter() - t - 0.005))
            self.cpu_gaps.append(_cpu() - c)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def machine_jitter(seconds: float) -> list[float]:
    """The same 5 ms ticker with no app running: how late the machine alone makes it."""
    with LoopLag() as lag:
        await asyncio.sleep(seconds)
    return lag.gaps


async def _until(predicate: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the app did not get there in time")
        await asyncio.sleep(0.002)


async def time_models_screen(sock: Path, since: float | None = None) -> float:
    """Seconds from starting the app (or from ``since``, a ``time.time()``) to the first frame with the models' rows."""
    from textual.widgets import DataTable

    from regd.client import AsyncClient
    from regtui.app import RegTUI

    t0 = time.perf_counter()
    app = RegTUI(AsyncClient(sock), autostart=False)
    frames = Frames(app)
    async with app.run_test(size=SIZE) as pilot:
        await _until(lambda: app.screen.query(DataTable) and app.screen.query_one(DataTable).row_count > 0)
        shown = time.perf_counter()
        await _until(lambda: frames.times and frames.times[-1] >= shown)
        seconds = frames.times[-1] - t0
        if since is not None:  # from the parent's clock: wall time now, less what passed since the frame
            seconds = time.time() - (time.perf_counter() - frames.times[-1]) - since
        await pilot.pause()
    return seconds


def _cold_child(sock: str, since: float) -> None:
    """In a fresh interpreter: import regtui, start it, print when the models' rows were painted
    (wall seconds since ``since``) and the CPU this process had used by then."""
    wall = asyncio.run(time_models_screen(Path(sock), since))
    print(wall, time.process_time())


def cold_start(sock: Path) -> tuple[float, float]:
    """From spawning ``python`` to the models' rows on screen (interpreter, imports, app, first RPC):
    wall seconds, and the CPU seconds regtui's process spent (all threads) to get there."""
    import subprocess
    import sys

    code = "import sys; from bench.tui import _cold_child; _cold_child(sys.argv[1], float(sys.argv[2]))"
    since = time.time()
    out = subprocess.run([sys.executable, "-c", code, str(sock), str(since)], cwd=ROOT, capture_output=True,
                         text=True, check=True)  # fmt: skip
    wall, cpu = out.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


async def scroll(sock: Path, key: str, presses: int) -> dict[str, Any]:
    """Hold ``key`` on the versions of ``big`` for ``presses`` auto-repeats."""
    from textual import events

    from regd.client import AsyncClient
    from regtui.app import RegTUI
    from regtui.screens.versions import VersionsScreen
    from regtui.widgets.version_table import VersionTable

    app = RegTUI(AsyncClient(sock), autostart=False, live=False)
    frames = Frames(app)
    async with app.run_test(size=SIZE) as pilot:
        await _until(lambda: app.status is not None)
        t_open = time.perf_counter()
        app.push_screen(VersionsScreen("big"))
        await _until(lambda: isinstance(app.screen, VersionsScreen) and app.screen.query(VersionTable)
                     and app.screen.table.items)  # fmt: skip
        first_page = time.perf_counter() - t_open
        # a person reads the first page before holding a key: let the screen finish settling
        # (Textual recomposes the footer a few times after a screen change)
        await asyncio.sleep(1.0)
        await pilot.pause()
        table = app.screen.table
        driver = app._driver
        sent: list[tuple[float, float]] = []
        at_edge = 0
        with LoopLag() as lag:
            start = time.perf_counter()
            for i in range(presses):
                # a steady auto-repeat: the next key is due at start + i * period, however long the last took
                delay = start + i * KEY_REPEAT_S - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if table.cursor_row >= len(table.items) - 1 and table.more:
                    at_edge += 1
                event = events.Key(key, None)
                event.set_sender(app)
                sent.append((time.perf_counter(), _cpu()))
                driver.send_message(event)
            await asyncio.sleep(0.3)
        end = time.perf_counter()
        latency, latency_cpu = [], []
        for wall, cpu in sent:
            i = frames.first_after(wall)
            if i is not None:
                latency.append(frames.times[i] - wall)
                latency_cpu.append(frames.cpu[i] - cpu)
        during = [i for i, t in enumerate(frames.times) if sent[0][0] <= t <= end]
        gaps = [frames.times[b] - frames.times[a] for a, b in itertools.pairwise(during)]
        gaps_cpu = [frames.cpu[b] - frames.cpu[a] for a, b in itertools.pairwise(during)]
        return {
            "key": key, "presses": presses, "rows": table.cursor_row + 1, "loaded": len(table.items),
            "first_page_s": first_page, "latency": latency, "latency_cpu": latency_cpu, "frame_gaps": gaps,
            "frame_gaps_cpu": gaps_cpu, "loop_lag": lag.gaps, "loop_lag_cpu": lag.cpu_gaps,
            "at_edge": at_edge, "frames": len(during), "seconds": end - sent[0][0],
        }  # fmt: skip


# ----------------------------------------------------------------------------- the report


def run(quick: bool) -> Section:
    import sys

    n = N_QUICK if quick else N_FULL
    db, setup = prepared_registry(n, lambda line: print(line, file=sys.stderr))
    work = Path(tempfile.mkdtemp(prefix="regd-bench-tui-run-"))
    try:
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{db}{suffix}").exists():
                shutil.copy2(f"{db}{suffix}", work / f"registry.db{suffix}")
        config = f'catalog = "sqlite:///{work / "registry.db"}"\n[store]\nmode = "reference"\n'
        with daemon(config) as d:
            from regd.client import Client

            with Client(d.socket) as c:
                counts = c.status()["counts"]
                t = time.perf_counter()
                c.call("models.list", {"limit": 1000})
                models_rpc = time.perf_counter() - t
            load_before = os.getloadavg()[0]
            jitter = asyncio.run(machine_jitter(5.0))
            models = [asyncio.run(time_models_screen(d.socket)) for _ in range(3 if quick else 5)]
            cold = [cold_start(d.socket) for _ in range(3)]
            scrolls = [asyncio.run(scroll(d.socket, "pagedown", 150 if quick else 1000)),
                       asyncio.run(scroll(d.socket, "down", 150 if quick else 600))]  # fmt: skip
            load = (load_before + os.getloadavg()[0]) / 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _section(n, setup, counts, models_rpc, models, cold, scrolls, jitter, load)


def _bulk(setup: dict[str, Any]) -> str:
    if not setup.get("bulk_versions"):
        return "no bulk load"
    how = ("through the daemon's own registration transaction, 2,000 per commit" if setup["method"] == "bulk"
           else "through the socket too")  # fmt: skip
    return f"{setup['bulk_versions']:,} more in {setup['bulk_s']:.0f} s {how}"


def _verdict(ok: bool) -> str:
    return "✔" if ok else "✘"


def _p99_max(samples: list[float]) -> str:
    return f"{ms(pct(samples, 99))} / {ms(max(samples, default=0.0))}"


def _section(n: int, setup: dict[str, Any], counts: dict[str, Any], models_rpc: float, models: list[float],
             cold: list[tuple[float, float]], scrolls: list[dict[str, Any]], jitter: list[float],
             load: float) -> Section:  # fmt: skip
    worst_models = max(models)
    cold_wall, cold_cpu = [w for w, _ in cold], [c for _, c in cold]
    rows = [
        "| figure | measured | target | |",
        "|---|---|---|---|",
        f"| models screen shows its rows, median of {len(models)} starts | {ms(median(models))} | ≤ 1 s | "
        f"{_verdict(median(models) <= MODELS_TARGET_S)} |",
        f"| models screen, slowest start | {ms(worst_models)} | ≤ 1 s | {_verdict(worst_models <= MODELS_TARGET_S)} |",
        f"| from `python` starting to the models' rows (imports included), wall median / max of {len(cold)} | "
        f"{ms(median(cold_wall))} / {ms(max(cold_wall))} | ≤ 1 s | {_verdict(max(cold_wall) <= MODELS_TARGET_S)} |",
        f"| the same, CPU regtui's process spent, median / max | {ms(median(cold_cpu))} / {ms(max(cold_cpu))} | ≤ 1 s | "
        f"{_verdict(max(cold_cpu) <= MODELS_TARGET_S)} |",
        f"| `models.list` alone | {ms(models_rpc)} | | |",
        f"| the machine alone: 5 ms ticker lateness, p99 / max (no app) | {_p99_max(jitter)} | | |",
    ]
    figures: dict[str, float] = {"models_screen_s": median(models), "models_screen_max_s": worst_models,
                                 "cold_start_s": median(cold_wall), "cold_start_max_s": max(cold_wall),
                                 "cold_start_cpu_s": median(cold_cpu),
                                 "machine_jitter_max_s": max(jitter, default=0.0)}  # fmt: skip
    for s in scrolls:
        k = s["key"]
        rows += [
            f"| hold {k} ×{s['presses']}: key → next frame, wall p99 / max | {_p99_max(s['latency'])} | ≤ 100 ms | "
            f"{_verdict(max(s['latency'], default=0) <= STALL_S)} |",
            f"| hold {k}: key → next frame, regtui's own CPU p99 / max | {_p99_max(s['latency_cpu'])} | ≤ 100 ms | "
            f"{_verdict(max(s['latency_cpu'], default=0) <= STALL_S)} |",
            f"| hold {k}: gap between frames, wall p99 / max | {_p99_max(s['frame_gaps'])} | ≤ 100 ms | "
            f"{_verdict(max(s['frame_gaps'], default=0) <= STALL_S)} |",
            f"| hold {k}: gap between frames, regtui's own CPU p99 / max | {_p99_max(s['frame_gaps_cpu'])} | ≤ 100 ms | "
            f"{_verdict(max(s['frame_gaps_cpu'], default=0) <= STALL_S)} |",
            f"| hold {k}: event loop blocked, wall p99 / max | {_p99_max(s['loop_lag'])} | ≤ 100 ms | "
            f"{_verdict(max(s['loop_lag'], default=0) <= STALL_S)} |",
            f"| hold {k}: event loop blocked by regtui's own CPU, p99 / max | {_p99_max(s['loop_lag_cpu'])} | ≤ 100 ms | "
            f"{_verdict(max(s['loop_lag_cpu'], default=0) <= STALL_S)} |",
            f"| hold {k}: rows reached / loaded (of {n:,}) | {s['rows']:,} / {s['loaded']:,} | | |",
            f"| hold {k}: keys that found the cursor at the loaded edge | {s['at_edge']} of {s['presses']} | | |",
        ]
        for name in ("latency", "frame_gaps", "loop_lag"):
            figures[f"{k}_{name}_max_s"] = max(s[name], default=0.0)
            figures[f"{k}_{name}_cpu_max_s"] = max(s[f"{name}_cpu"], default=0.0)
            figures[f"{k}_{name}_p99_s"] = pct(s[name], 99)
    first_page = median([s["first_page_s"] for s in scrolls])
    rows.append(f"| versions screen of `big`: first page shown | {ms(first_page)} | | |")
    how = "from the cache" if setup.get("cached") else "this run"
    body = f"""
Registry: {counts['versions']:,} versions in {counts['models']} models (`big` has {n:,}); terminal {SIZE[0]}x{SIZE[1]};
keys auto-repeat every {KEY_REPEAT_S * 1000:.0f} ms; load average during the run {load:.1f} on {os.cpu_count()} cores.

{chr(10).join(rows)}

"Wall" figures include the time the OS gave other processes (this machine is shared: compare with
"the machine alone"); "regtui's own CPU" is the CPU time regtui's thread spent in the same
interval, which is what a stall caused by regtui is. A stall is over 100 ms.

Setup (not part of the figures above; {how}): {setup['versions']:,} tiny safetensors files written in
{setup['write_s']:.0f} s; {setup['rpc_versions']:,} registered through `versions.register` by 8 clients in
{setup['rpc_s']:.0f} s ({setup['rpc_rate']:.0f} versions/s: the daemon commits each with fsync), {_bulk(setup)}.
The catalog is cached (`$REGD_BENCH_CACHE`) and copied for each run.

The versions screen loads 300 rows per page (`versions.list` with `limit` and `cursor`) as the cursor
nears the end of what is loaded, and renders only the visible lines from a cache of rendered rows,
so a 100,000-row model costs what a 40-row one does per frame.
Reproduce: `python -m bench tui` (`--quick`: {N_QUICK:,} versions).
"""
    return Section("tui", "regtui at 100,000 versions", body, figures)
