"""What the core, ingest and lifecycle benches share besides ``common``.

* ``rpc``: one JSON-RPC call on a fresh connection (open, send, read one line, close), exactly
  what a script does with ``socat``; ``Conn`` keeps one connection for the concurrent clients;
  ``at_once`` sends a call on each of several before reading any answer.
* ``small_model`` / ``big_model``: real safetensors files with content of their own (regd dedupes
  by digest, so every registration needs distinct bytes).
* ``DurableFloor``: the least a durable registration can cost on this disk, with plain os and
  sqlite3 calls, to set beside regd's time in the same run.
* ``restarted``: stop a bench daemon, change its data dir (a catalog filled in bulk), start it again.
* ``interleave``: time several contenders round-robin, so the machine's noise falls on all of them.
* ``Row`` / ``table`` / verdict helpers: the report's tables.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Daemon, median, ms, pct

TEAMS = ["risk", "ads", "search", "fraud", "core", "vision", "speech", "infra", "growth", "data"]
"""The ``team`` tag cycles through these: ``tags.team = 'risk'`` matches one version in ten."""


def tags_of(k: int) -> dict[str, str]:
    """The three tags of the ``k``-th version of a workload (the same for regd and MLflow)."""
    return {"team": TEAMS[k % len(TEAMS)], "env": ("dev", "staging", "prod")[k % 3], "seed": str(k)}


# ----------------------------------------------------------------------------- talking to the daemon


class RpcError(Exception):
    """A JSON-RPC error answer."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"{error.get('code')}: {error.get('message')}")
        self.code = int(error.get("code", 0))
        self.message = str(error.get("message", ""))
        self.data = error.get("data")


def _request(method: str, params: dict[str, Any] | None, req_id: int) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": req_id, "method": method}
    if params:
        msg["params"] = params
    return json.dumps(msg, separators=(",", ":")).encode() + b"\n"


def _reply(msg: dict[str, Any]) -> Any:
    if "error" in msg:
        raise RpcError(msg["error"])
    return msg.get("result")


def rpc(sock: str | os.PathLike[str], method: str, params: dict[str, Any] | None = None, timeout: float = 120) -> Any:
    """Call ``method`` on a new connection and close it: what a script does, every time."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(os.fspath(sock))
        s.sendall(_request(method, params, 1))
        buf = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                raise ConnectionResetError(f"the daemon closed the connection during {method}")
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("id") == 1:
                    return _reply(msg)
    finally:
        s.close()


class Conn:
    """One persistent connection (for clients that loop, like the 50 concurrent ones)."""

    def __init__(self, sock: str | os.PathLike[str], timeout: float = 120) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(os.fspath(sock))
        self.buf = b""
        self.ids = 0

    def readline(self) -> dict[str, Any]:
        while b"\n" not in self.buf:
            self.receive()
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def receive(self) -> None:
        """Add what the socket has (blocks until it has something)."""
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("the daemon closed the connection")
        self.buf += chunk

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.ids += 1
        self.sock.sendall(_request(method, params, self.ids))
        while True:
            msg = self.readline()
            if msg.get("id") == self.ids:
                return _reply(msg)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def at_once(calls: list[tuple[Conn, str, dict[str, Any] | None]]) -> list[float]:
    """Send every call before reading any answer; each one's seconds from its send to its answer.

    One thread and a selector, so the clients cost the machine little while the daemons work: a
    thread per call, started each round, cost ~80 µs of CPU apiece on top of the calls' own (the
    team bench measured ~1 ms of the bench's CPU per round of four), which the daemons under test
    then waited for on a two-core machine.
    """
    selector = selectors.DefaultSelector()
    started: dict[Conn, float] = {}
    taken: dict[Conn, float] = {}
    for conn, method, params in calls:
        if conn in started:
            raise ValueError("one call per connection at a time")
        conn.ids += 1
        started[conn] = time.perf_counter()
        conn.sock.sendall(_request(method, params, conn.ids))
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    errors: list[RpcError] = []
    try:
        while len(taken) < len(calls):
            ready = selector.select(timeout=calls[0][0].sock.gettimeout())
            if not ready:
                raise TimeoutError("no answer from the daemons in time")
            for key, _ in ready:
                conn = key.data
                conn.receive()
                while b"\n" in conn.buf:
                    msg = conn.readline()
                    if msg.get("id") == conn.ids:
                        taken[conn] = time.perf_counter() - started[conn]
                        selector.unregister(conn.sock)
                        if "error" in msg:
                            errors.append(RpcError(msg["error"]))
    finally:
        selector.close()
    if errors:
        raise errors[0]
    return [taken[conn] for conn, _, _ in calls]


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def ingest_idle(sock: Path) -> bool:
    """Nothing queued or being registered, and every watch is watching."""
    status = rpc(sock, "daemon.status")
    queue = status["ingest"]
    return not queue.get("pending") and not queue.get("active") and all(w["state"] == "watching" for w in status["watches"])


def all_items(sock: Path, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Follow the cursors of a list method to the end."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = rpc(sock, method, {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def restarted(d: Daemon, change: Callable[[Path], None], start_timeout: float = 600) -> Iterator[Daemon]:
    """Stop ``d``, run ``change(data_dir)`` on its stopped data dir, and serve it again until exit.

    ``common.daemon`` still owns (and later removes) the directories; this owns the new process.
    """
    from regd.client import Client
    from regd.errors import Unreachable

    _stop(d.proc)
    change(d.data_dir)
    log_path = d.data_dir.parent / f"regd-restart-{os.getpid()}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "regd", "serve"], env=d.env(), stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    with Client(d.socket, timeout=start_timeout) as c:
                        c.status()
                    break
                except Unreachable:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log_path.read_text()) from None
                    time.sleep(0.05)
            yield Daemon(d.data_dir, d.socket, d.config, proc)
        finally:
            _stop(proc)


# ----------------------------------------------------------------------------- model files


def small_model(path: Path, seed: int, floats: int = 1024) -> int:
    """Write a small safetensors file (one float32 tensor) whose bytes depend on ``seed``; its size."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    save_file({"weight": rng.standard_normal(floats, dtype=np.float32)}, str(path), metadata={"seed": str(seed)})
    return path.stat().st_size


def big_model(path: Path, size: int, tensors: int = 8) -> int:
    """Write a safetensors file of about ``size`` bytes of random float32 tensors; its exact size."""
    per = size // tensors // 4 * 4
    header = {
        f"layers.{i}.weight": {"dtype": "F32", "shape": [per // 4], "data_offsets": [i * per, (i + 1) * per]}
        for i in range(tensors)
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    chunk = 64 << 20
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        left = per * tensors
        while left:
            n = min(chunk, left)
            f.write(secrets.token_bytes(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())
    return path.stat().st_size


def touch_tail(path: Path) -> None:
    """Rewrite the last 16 bytes (inside the last tensor): new content, new digest, same layout."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, secrets.token_bytes(16), os.fstat(fd).st_size - 16)
        os.fsync(fd)
    finally:
        os.close(fd)


def drop_cache(path: Path) -> None:
    """Evict a file's pages from the page cache (it must be clean: fsync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- physical limits


class AliasFloor:
    """The least a durable alias move can do: one SQLite commit (WAL, ``synchronous = FULL``) of the
    alias row, a history row and an audit row, in plain sqlite3 calls on the same disk."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "alias-floor.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS aliases (model TEXT, alias TEXT, version TEXT, PRIMARY KEY (model, alias))")
        self.db.execute("CREATE TABLE IF NOT EXISTS alias_history (id INTEGER PRIMARY KEY, model TEXT, alias TEXT, version TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, what TEXT)")

    def set(self, model: str, alias: str, version: str) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT OR REPLACE INTO aliases VALUES (?, ?, ?)", (model, alias, version))
        self.db.execute("INSERT INTO alias_history (model, alias, version) VALUES (?, ?, ?)", (model, alias, version))
        self.db.execute("INSERT INTO audit (what) VALUES (?)", (f"alias {model} {alias} {version}",))
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class DurableFloor:
    """The least a durable registration can do, in plain os and sqlite3 calls on the same disk.

    Read the source and SHA-256 it (the blob's name), create a temp file, write, fsync, rename it
    into its shard directory, fsync that directory, then commit one row with SQLite in WAL mode at
    ``synchronous = FULL``. Nothing else: no format reading, no metadata, no IPC.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.tmp = directory / "tmp"
        self.objects = directory / "objects"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.objects.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(directory / "floor.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS versions (id INTEGER PRIMARY KEY, name TEXT, digest TEXT UNIQUE, "
            "size INTEGER, path TEXT, created_at INTEGER)"
        )
        self.n = 0

    def register(self, src: Path) -> None:
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        self.n += 1
        tmp = self.tmp / f"{self.n}-{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        shard = self.objects / digest[:2]
        shard.mkdir(exist_ok=True)
        final = shard / digest
        os.rename(tmp, final)
        fsync_dir(shard)
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute(
            "INSERT OR REPLACE INTO versions (name, digest, size, path, created_at) VALUES (?, ?, ?, ?, ?)",
            (src.stem, digest, len(data), str(final), time.time_ns() // 1000),
        )
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    """hashlib's SHA-256 of a file, read in large chunks: the hashing limit."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def copy_fsync(src: Path, dst: Path) -> None:
    """Copy with the kernel's in-kernel copy (copy_file_range) and fsync: the copying limit."""
    size = src.stat().st_size
    fin = os.open(src, os.O_RDONLY)
    fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < size:
            n = os.copy_file_range(fin, fout, min(size - done, 1 << 30))
            if n == 0:
                break
            done += n
        os.fsync(fout)
    finally:
        os.close(fin)
        os.close(fout)
    fsync_dir(dst.parent)


# ----------------------------------------------------------------------------- process figures


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- timing and the report


def interleave(ops: dict[str, Callable[[int], object]], rounds: int, budget_s: float | None = None) -> dict[str, list[float]]:
    """Time each op once per round, rotating which goes first; stop after ``budget_s`` if given."""
    names = list(ops)
    samples: dict[str, list[float]] = {k: [] for k in names}
    deadline = time.monotonic() + budget_s if budget_s else None
    for i in range(rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            ops[name](i)
            samples[name].append(time.perf_counter() - t0)
        if deadline is not None and time.monotonic() > deadline and i >= 4:
            break
    return samples


def dist(samples: list[float]) -> str:
    """``p50 1.23 ms · p99 4.56 ms (n=200)``."""
    return f"p50 {ms(median(samples))} · p99 {ms(pct(samples, 99))} (n={len(samples)})"


def times(x: float) -> str:
    return f"{x:.1f}×" if x < 100 else f"{x:.0f}×"


def by(excess: float) -> str:
    """How far past a target: ``12 %`` when close, ``3.4×`` when far."""
    return f"{100 * (excess - 1):.0f} %" if excess < 2 else times(excess)


@dataclass
class Row:
    figure: str
    regd: str
    peer: str
    ratio: str
    target: str
    verdict: str


def table(rows: list[Row]) -> str:
    out = ["| figure | regd | peer or limit | ratio | target | verdict |", "|---|---|---|---|---|---|"]
    out += [f"| {r.figure} | {r.regd} | {r.peer} | {r.ratio} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(out)


def faster(figure: str, regd_s: list[float], peer_s: list[float], peer_name: str, need: float) -> tuple[Row, float]:
    """A row for "regd at least ``need`` times faster than the peer" (median per op, same run)."""
    r, p = median(regd_s), median(peer_s)
    ratio = p / r
    ok = ratio >= need
    verdict = "met" if ok else f"**NOT met**: {times(ratio)}, short by {by(need / ratio)} (regd needs ≤ {ms(p / need)})"
    return Row(figure, dist(regd_s), f"{peer_name}: {dist(peer_s)}", f"{times(ratio)} faster", f"≥ {need:g}× faster", verdict), ratio


def within(figure: str, regd_s: list[float], limit_s: list[float], limit_name: str, most: float) -> tuple[Row, float]:
    """A row for "regd within ``most`` times the physical limit" (medians, same run)."""
    r, lim = median(regd_s), median(limit_s)
    ratio = r / lim
    ok = ratio <= most
    verdict = "met" if ok else f"**NOT met**: {ratio:.2f}× the limit, over by {by(ratio / most)} (regd needs ≤ {ms(lim * most)})"
    return Row(figure, dist(regd_s), f"{limit_name}: {dist(limit_s)}", f"{ratio:.2f}× the limit", f"≤ {most:g}×", verdict), ratio


def at_most(figure: str, regd_s: list[float], peer: str, ratio: str, limit_s: float, q: float = 50) -> tuple[Row, float]:
    """A row for an absolute target on a percentile (``q``) of regd's samples."""
    value = pct(regd_s, q)
    ok = value <= limit_s
    verdict = "met" if ok else f"**NOT met**: p{q:g} {ms(value)}, over by {by(value / limit_s)}"
    return Row(figure, dist(regd_s), peer, ratio, f"p{q:g} ≤ {ms(limit_s)}", verdict), value


def mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def load_note(start: str) -> str:
    """One line on how busy the (shared) machine was while a bench ran: the 1-minute load average."""
    end = Path("/proc/loadavg").read_text().split()[0]
    return (f"_Load average (1 min) at start {start}, at end {end}, on {os.cpu_count()} cores: other jobs share this "
            "machine, so compare the interleaved columns, not absolute times across runs._")


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]
