"""``python -m bench.profiles WHAT``: where the time of a missed benchmark target goes.

Not a benchmark (nothing here is written to docs/BENCHMARKS.md): a tool to explain one.

* ``register``: each step of ``Registrar.register`` / ``ingest.pipeline.prepare`` timed in-process
  with the product's own functions, beside the durable floor of the same file and the end-to-end
  ``versions.register`` over the socket, interleaved;
* ``alias``, ``promote``, ``get``, ``search``: the operation over the socket beside its parts: a
  new-connection round trip of ``daemon.status`` (the IPC floor), the catalog transaction run
  in-process on the same kind of catalog, and a bare SQLite commit;
* ``daemon OP``: py-spy (``pip install py-spy``) samples the daemon while the bench process repeats
  OP (register, alias, promote, get, search) and prints the functions holding the GIL the most
  (``--gil``: Python CPU, so fsync waits do not show), inclusive, as shares of all samples;
* ``idle``: CPU per daemon thread over a quiet window, with each busy thread's stack.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import Daemon, daemon, median, ms
from bench.fixtures import (
    DurableFloor,
    cpu_seconds,
    fsync_dir,
    rpc,
    small_model,
    tags_of,
)


def _row(name: str, samples: list[float], total: float | None = None) -> str:
    share = f"{100 * median(samples) / total:5.1f} %" if total else "       "
    return f"  {ms(median(samples)):>10}  {share}  {name}"


# ----------------------------------------------------------------------------- register, step by step


async def _register_steps(n: int) -> None:
    from regd.api.registrar import _size_of
    from regd.ingest import formats
    from regd.ingest.gitinfo import git_info
    from regd.ingest.pipeline import Source, _env_lock, prepare, store_file
    from regd.ingest.runtime import runtime_facts
    from regd.ingest.sidecar import load_metadata
    from regd.ingest.sources import check_source
    from regd.lifecycle import registration
    from regd.store import open_blobs, open_catalog

    work = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    try:
        data = work / "data"
        data.mkdir()
        catalog = open_catalog("sqlite", data)
        await catalog.open()
        blobs = open_blobs("local", data)
        files = work / "files"
        files.mkdir()
        floor = DurableFloor(work / "floor")
        s: dict[str, list[float]] = collections.defaultdict(list)

        async def step(name: str, coro: Any) -> Any:
            t0 = time.perf_counter()
            out = await coro
            s[name].append(time.perf_counter() - t0)
            return out

        for k in range(n):
            p = files / f"a-{k}.safetensors"
            q = files / f"b-{k}.safetensors"
            f = files / f"c-{k}.safetensors"
            small_model(p, k)
            small_model(q, 10**6 + k)
            small_model(f, 2 * 10**6 + k)
            t0 = time.perf_counter()
            r = await step("check_source (to_thread)", asyncio.to_thread(check_source, p, data))
            await step("_size_of (to_thread)", asyncio.to_thread(_size_of, r))
            await step("sidecar.load_metadata (to_thread)",
                       asyncio.to_thread(load_metadata, r, is_dir=False, explicit={"tags": tags_of(k)}, root=None))  # fmt: skip
            info = await step("formats.read_file (to_thread)", asyncio.to_thread(formats.read_file, r))
            await step("pipeline.store_file: read+sha256+write+fsync+link+dir fsync (to_thread)",
                       asyncio.to_thread(store_file, blobs, r, info.tensors, True, None))  # fmt: skip
            await step("pipeline._env_lock: look for lock files up to / (to_thread)",
                       asyncio.to_thread(_env_lock, blobs, r, False, None, None))  # fmt: skip
            await step("gitinfo.git_info", git_info(r.parent))
            await step("runtime.runtime_facts (cached)", runtime_facts())
            s["= prepare's steps, one by one"].append(time.perf_counter() - t0)
            draft = await step("prepare() as the daemon calls it (another file)",
                               prepare(Source(path=q, name="m", explicit={"tags": tags_of(k)}, actor="bench"), blobs, copy=True))  # fmt: skip
            await step("catalog.write(registration.record): one transaction + commit",
                       catalog.write(lambda tx, d=draft: registration.record(tx, d, "bench")))  # fmt: skip
            t0 = time.perf_counter()
            floor.register(f)
            s["FLOOR: sha256 + temp write + fsync + rename + dir fsync + commit"].append(time.perf_counter() - t0)
        await catalog.close()
        floor.close()
        total = median(s["prepare() as the daemon calls it (another file)"]) + median(
            s["catalog.write(registration.record): one transaction + commit"]
        )
        print(f"register a small file, in-process, median of {n} (share of prepare()+commit = {ms(total)}):")
        for name, v in s.items():
            print(_row(name, v, total))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _register_e2e(n: int) -> None:
    """The same files through the socket, beside the floor."""
    work = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    try:
        with daemon() as d:
            floor = DurableFloor(work / "floor")
            s: dict[str, list[float]] = collections.defaultdict(list)
            for k in range(n):
                p, f = work / f"e-{k}.safetensors", work / f"f-{k}.safetensors"
                small_model(p, 3 * 10**6 + k)
                small_model(f, 4 * 10**6 + k)
                t0 = time.perf_counter()
                rpc(d.socket, "daemon.status")
                s["daemon.status, new connection (IPC + dispatch floor)"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                rpc(d.socket, "versions.register", {"path": str(p), "name": "m", "metadata": {"tags": tags_of(k)}})
                s["versions.register over the socket, new connection"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                floor.register(f)
                s["FLOOR"].append(time.perf_counter() - t0)
            floor.close()
        print(f"register a small file end to end, median of {n}:")
        for name, v in s.items():
            print(_row(name, v))
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- small operations


def _commit_floor(directory: Path, n: int) -> list[float]:
    db = sqlite3.connect(directory / "commit.db", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
        db.execute("COMMIT")
        out.append(time.perf_counter() - t0)
    db.close()
    return out


POLICY = """
[policy."fraud*".production]
min = { accuracy = 0.8 }
max = { latency_ms = 50 }
max_regression = { accuracy = 0.02 }
lower_is_better = ["latency_ms"]
require = ["signature", "safe_format"]
"""


def _setup(d: Daemon, work: Path, n: int) -> list[str]:
    """Register ``n`` versions of ``fraud`` (small files, 3 tags, metrics) and set ``champion``."""
    out = []
    for k in range(n):
        p = work / f"fraud-{k}.safetensors"
        small_model(p, 5 * 10**6 + k)
        meta = {"tags": tags_of(k), "metrics": {"accuracy": 0.9 + 1e-5 * k, "latency_ms": 20.0}}
        out.append(rpc(d.socket, "versions.register", {"path": str(p), "name": "fraud", "metadata": meta})["version"]["version"])
    rpc(d.socket, "aliases.set", {"name": "fraud", "alias": "champion", "version": out[0]})
    return out


def _op(d: Daemon, what: str, versions: list[str]) -> Callable[[int], Any]:
    if what == "alias":
        return lambda i: rpc(d.socket, "aliases.set", {"name": "fraud", "alias": "champion", "version": versions[i % len(versions)]})
    if what == "get":
        return lambda i: rpc(d.socket, "versions.get", {"name": "fraud", "version": "@champion"})
    if what == "search":
        return lambda i: rpc(d.socket, "versions.search", {"filter": "tags.team = 'risk'", "limit": 100})
    if what == "promote":
        return lambda i: rpc(d.socket, "versions.promote", {"name": "fraud", "version": versions[i + 1], "stage": "production",
                                                             "reason": "profile"})  # fmt: skip
    raise SystemExit(f"unknown op {what}")


def _small(what: str, n: int) -> None:
    """The operation over the socket beside the IPC round trip and a bare commit."""
    work = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    deploy = work / "deploy"
    try:
        extra = f'deploy_dir = "{deploy}"\n{POLICY}' if what == "promote" else ""
        with daemon(extra) as d:
            versions = _setup(d, work, n + 1 if what == "promote" else 200)
            if what == "promote":
                rpc(d.socket, "versions.promote", {"name": "fraud", "version": versions[0], "stage": "production", "reason": "first"})
            op = _op(d, what, versions)
            s: dict[str, list[float]] = collections.defaultdict(list)
            for i in range(n):
                t0 = time.perf_counter()
                rpc(d.socket, "daemon.status")
                s["daemon.status, new connection: the IPC + dispatch floor"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                op(i)
                s[f"{what} over the socket, new connection"].append(time.perf_counter() - t0)
            s["bare SQLite commit (WAL, synchronous=FULL), same disk"] = _commit_floor(work, n)
            if what == "promote":
                link = deploy / "fraud" / "production"
                tmp = deploy / "swap-probe"
                tmp.mkdir()
                swaps = []
                for i in range(n):
                    t0 = time.perf_counter()
                    os.symlink(versions[i], tmp / ".p.tmp")
                    os.replace(tmp / ".p.tmp", tmp / "production")
                    fsync_dir(tmp)
                    swaps.append(time.perf_counter() - t0)
                s["bare symlink swap + dir fsync"] = swaps
                del link
        print(f"{what}, median of {n}:")
        for name, v in s.items():
            print(_row(name, v))
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def _tx_inprocess(what: str, n: int) -> None:
    """The operation's catalog transaction alone, run in-process on a catalog regd filled."""
    from regd.config import load_config
    from regd.domain import Stage
    from regd.lifecycle import edits, guards, promotion
    from regd.store import open_catalog

    work2 = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    try:
        with daemon(POLICY) as d:
            versions = _setup(d, work2, n + 1)
            rpc(d.socket, "versions.promote", {"name": "fraud", "version": versions[0], "stage": "production", "reason": "first"})
            config = load_config(d.config)
            d.proc.terminate()  # stopped: its catalog is ours now
            d.proc.wait(30)
            catalog = open_catalog("sqlite", d.data_dir)
            await catalog.open()
            policies = guards.policies_for(config.policy, "fraud", Stage.PRODUCTION)
            s: dict[str, list[float]] = collections.defaultdict(list)
            for i in range(n):
                t0 = time.perf_counter()
                if what == "alias":
                    await catalog.write(lambda tx, i=i: edits.set_alias(tx, "fraud", "champion", versions[i % 50 + 1], "bench", None))
                elif what == "promote":
                    await catalog.write(lambda tx, i=i: promotion.promote(tx, "fraud", versions[i + 1], Stage.PRODUCTION, reason="p",
                                                                          actor="bench", force=False, policies=policies))  # fmt: skip
                elif what == "get":
                    await catalog.read(lambda r: r.version(r.row("fraud", "@champion").id))
                s[f"catalog transaction of {what}, in-process (aiosqlite thread hop included)"].append(time.perf_counter() - t0)
            await catalog.close()
        print(f"{what}: the catalog part, median of {n}:")
        for name, v in s.items():
            print(_row(name, v))
    finally:
        shutil.rmtree(work2, ignore_errors=True)


# ----------------------------------------------------------------------------- py-spy on the daemon


def _spy(what: str, seconds: float) -> None:
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    out = work / "spy.txt"
    try:
        extra = f'deploy_dir = "{work / "deploy"}"\n{POLICY}' if what == "promote" else ""
        with daemon(extra) as d:
            n_versions = 2000 if what == "promote" else 200
            versions = _setup(d, work, n_versions) if what != "register" else []
            if what == "promote":
                rpc(d.socket, "versions.promote", {"name": "fraud", "version": versions[0], "stage": "production", "reason": "first"})
            paths = []
            if what == "register":
                for k in range(3000):
                    p = work / f"r-{k}.safetensors"
                    small_model(p, 6 * 10**6 + k)
                    paths.append(p)
            spy = subprocess.Popen([spy_bin, "record", "--gil", "-r", "1000", "-f", "raw", "-o", str(out), "-d", str(int(seconds)),
                                    "-p", str(d.proc.pid)], stdout=subprocess.DEVNULL, stderr=(work / "spy.err").open("wb"))  # fmt: skip
            time.sleep(1)
            op = _op(d, what, versions) if what != "register" else (
                lambda i: rpc(d.socket, "versions.register", {"path": str(paths[i]), "name": "m", "metadata": {"tags": tags_of(i)}}))
            deadline = time.monotonic() + seconds - 1.5
            i = 0
            wall = []
            limit = len(paths) if what == "register" else n_versions - 2
            while time.monotonic() < deadline and i < limit:
                t0 = time.perf_counter()
                op(i)
                wall.append(time.perf_counter() - t0)
                i += 1
            spy.wait()
        print(f"{what}: {i} calls, {ms(median(wall))} median each; py-spy --gil samples of the daemon:")
        if not out.exists():
            raise SystemExit("py-spy wrote nothing: " + (work / "spy.err").read_text()[-2000:])
        _report_spy(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _report_spy(path: Path, top: int = 45) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        seen = set()
        for frame in stack.split(";"):
            name = frame.split(" (")[0]
            where = frame.rsplit("/", 1)[-1].split(":")[0].rstrip(")") if "(" in frame else ""
            key = f"{name} [{where}]"
            if key not in seen:
                seen.add(key)
                inclusive[key] += n
    print(f"  {total} samples (1 kHz while holding the GIL)")
    for key, n in inclusive.most_common(top):
        print(f"  {100 * n / total:5.1f} %  {key}")


# ----------------------------------------------------------------------------- idle


def _idle(seconds: float, files: int) -> None:
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    work = Path(tempfile.mkdtemp(prefix="regd-profile-"))
    try:
        with daemon() as d:
            tree = work / "tree"
            for i in range(files):
                sub = tree / f"run-{i // 100:03d}"
                if i % 100 == 0:
                    sub.mkdir(parents=True)
                (sub / f"step-{i:05d}.log").write_text("x\n")
            for root in (tree, work / "empty", work / "models"):
                root.mkdir(exist_ok=True)
                rpc(d.socket, "watch.add", {"path": str(root)})
            time.sleep(10)
            pid = d.proc.pid
            tasks = Path(f"/proc/{pid}/task")

            def per_thread() -> dict[int, float]:
                out = {}
                for t in tasks.iterdir():
                    try:
                        f = (t / "stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    out[int(t.name)] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
                return out

            before, total0 = per_thread(), cpu_seconds(pid)
            time.sleep(seconds)
            after, total1 = per_thread(), cpu_seconds(pid)
            dump = subprocess.run([spy_bin, "dump", "-p", str(pid)], capture_output=True, text=True, check=False).stdout
        print(f"idle {seconds:.0f} s, watching 3 roots ({files} files): {total1 - total0:.2f} s CPU in all")
        stacks = _dump_stacks(dump)
        for tid, cpu in sorted(((t, after[t] - before.get(t, 0)) for t in after), key=lambda x: -x[1]):
            if cpu > 0:
                print(f"  thread {tid}: {cpu:.2f} s   {stacks.get(tid, '(no Python frames)')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dump_stacks(dump: str) -> dict[int, str]:
    out: dict[int, str] = {}
    tid = None
    frames: list[str] = []
    for line in dump.splitlines():
        if line.startswith("Thread "):
            if tid is not None:
                out[tid] = " <- ".join(frames[:3])
            tid = int(line.split()[1], 0)
            frames = []
        elif line.startswith("    ") and tid is not None:
            frames.append(line.strip())
    if tid is not None:
        out[tid] = " <- ".join(frames[:3])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("what", choices=["register", "alias", "promote", "get", "search", "daemon", "idle"])
    parser.add_argument("op", nargs="?", help="for `daemon`: register, alias, promote, get or search")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args(argv)
    if args.what == "register":
        asyncio.run(_register_steps(args.n))
        _register_e2e(args.n)
    elif args.what in ("alias", "promote", "get"):
        _small(args.what, args.n)
        asyncio.run(_tx_inprocess(args.what, args.n))
    elif args.what == "search":
        _small("search", args.n)
    elif args.what == "daemon":
        _spy(args.op or "register", args.seconds)
    else:
        _idle(args.seconds, 10_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
