"""50 concurrent clients mixing reads and writes: no 'database is locked', no -32603, nothing lost.

``run_load`` is the driver (``bench/load.py`` runs it for latency percentiles and the 10-minute memory
soak); the test runs it for ``REGD_LOAD_SECONDS`` (default 15) and checks correctness only:

* every answer is a result or a contract refusal (rolling back a model with no earlier production
  version, promoting an archived version ...), never -32603 and never a message about a lock;
* every acknowledged registration is there afterwards, ``versions.verify`` and ``audit.verify`` are ok,
  no model has two production versions, and ``PRAGMA integrity_check`` is ok;
* an ``events.subscribe`` connection that never reads does not slow the others down, and one that
  reads receives the registrations it asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import sqlite3
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tests.hardening.crashlib import CONTRACT_CODES

CLIENTS = 50
MODELS = [f"load-{i}" for i in range(8)]
READS = {"versions.get": 30, "versions.search": 15, "models.list": 15, "models.get": 10, "versions.list": 10}
WRITES = {"versions.register": 4, "versions.tag": 6, "aliases.set": 4, "versions.promote": 4, "models.rollback": 2}


class Conn:
    """A client connection; ``fresh=True`` reconnects for every call, as a shell script with socat does."""

    def __init__(self, sock_path: Path, fresh: bool = False, timeout: float = 60.0) -> None:
        self.path, self.fresh, self.timeout = sock_path, fresh, timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.ids = 0

    def _connect(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(str(self.path))
        self.buf = b""
        return s

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The raw answer object: ``result`` or ``error``."""
        if self.sock is None or self.fresh:
            self.close()
            self.sock = self._connect()
        self.ids += 1
        msg = {"jsonrpc": "2.0", "id": self.ids, "method": method, **({"params": params} if params else {})}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise ConnectionResetError(f"the daemon closed the connection during {method}")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            reply = json.loads(line)
            if reply.get("id") == self.ids:
                return reply

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class LoadResult:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    codes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    registered: list[tuple[str, str, str]] = field(default_factory=list)
    """(model, version, digest) of every acknowledged registration."""
    rss: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, VmRSS KiB) of the daemon."""
    events_seen: int = 0

    @property
    def calls(self) -> int:
        return sum(len(v) for v in self.latencies.values())


def seed_models(conn: Conn, files: Path) -> None:
    """Two versions of every model, the second in production and aliased: the reads have targets."""
    for m in MODELS:
        for k in range(2):
            path = files / f"seed-{m}-{k}.safetensors"
            small_model(path, hash((m, k)) & 0xFFFFFFFF)
            reply = conn.call("versions.register", {"path": str(path), "name": m, "metadata": {"metrics": {"acc": 0.5 + k / 10}}})
            assert "result" in reply, reply
        for v in ("1.0.0", "1.1.0"):
            assert "result" in conn.call("versions.promote", {"name": m, "version": v, "stage": "production", "reason": "seed"})
        conn.call("aliases.set", {"name": m, "alias": "champion", "version": "1.1.0"})


def small_model(path: Path, seed: int) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    save_file({"w": rng.standard_normal(64, dtype=np.float32)}, str(path), metadata={"seed": str(seed)})


def pick_call(rng: random.Random, files: Path, worker: int, n: int, write_share: float) -> tuple[str, dict[str, Any]]:
    name = rng.choice(MODELS)
    table = WRITES if rng.random() < write_share else READS
    method = rng.choices(list(table), list(table.values()))[0]
    ref = rng.choice(["latest", "1.0.0", "1.1.0", "production", "@champion"])
    if method == "versions.get":
        return method, {"name": name, "version": ref}
    if method == "versions.search":
        return method, {"filter": rng.choice([f"name = '{name}'", "metrics.acc > 0.5", "stage = 'production'",
                                              f"name = '{name}' and tags.worker = '{worker}'"]), "limit": 20}  # fmt: skip
    if method == "models.list":
        return method, {"limit": 20}
    if method in ("models.get",):
        return method, {"name": name}
    if method == "versions.list":
        return method, {"name": name, "limit": 20}
    if method == "versions.register":
        path = files / f"w{worker}-{n}.safetensors"
        small_model(path, worker * 1_000_003 + n)
        return method, {"path": str(path), "name": name, "metadata": {"metrics": {"acc": round(rng.random(), 3)}}}
    if method == "versions.tag":
        return method, {"name": name, "version": ref, "set": {"worker": str(worker), f"n{n % 5}": str(n)}}
    if method == "aliases.set":
        return method, {"name": name, "alias": rng.choice(["champion", "challenger"]), "version": rng.choice(["latest", "1.0.0"])}
    if method == "versions.promote":
        return method, {"name": name, "version": rng.choice(["latest", "1.0.0", "1.1.0"]),
                        "stage": rng.choice(["staging", "production"]), "reason": f"load {worker}"}  # fmt: skip
    return method, {"name": name, "reason": f"load {worker}"}


def run_load(
    sock_path: Path,
    pid: int,
    files: Path,
    *,
    seconds: float,
    clients: int = CLIENTS,
    write_share: float = 0.25,
    rss_every: float = 2.0,
    seed: int = 0,
    seed_catalog: bool = True,
    progress: Callable[[str], None] | None = None,
) -> LoadResult:
    """Drive ``clients`` threads against the daemon for ``seconds``; record everything they saw.

    ``seed_catalog``: first register and promote the models the calls name (once per daemon).
    """
    files.mkdir(parents=True, exist_ok=True)
    if seed_catalog:
        seed_models(Conn(sock_path), files)
    result = LoadResult(seconds=seconds)
    lock = threading.Lock()
    stop = threading.Event()

    def worker(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        conn = Conn(sock_path, fresh=i % 10 == 9)  # one client in ten reconnects every call
        n = 0
        lat: dict[str, list[float]] = defaultdict(list)
        codes: Counter[str] = Counter()
        problems: list[str] = []
        registered = []
        try:
            while not stop.is_set():
                n += 1
                method, params = pick_call(rng, files, i, n, write_share)
                t0 = time.perf_counter()
                try:
                    reply = conn.call(method, params)
                except OSError as exc:
                    problems.append(f"{method}: {type(exc).__name__}: {exc}")
                    conn.close()
                    continue
                lat[method].append(time.perf_counter() - t0)
                err = reply.get("error")
                if err is None:
                    codes["ok"] += 1
                    if method == "versions.register":
                        v = reply["result"]["version"]
                        registered.append((v["model"], v["version"], v["artifact"]["digest"]))
                    continue
                codes[str(err.get("code"))] += 1
                text = json.dumps(err).lower()
                if err.get("code") not in CONTRACT_CODES or "locked" in text or "busy" in text:
                    problems.append(f"{method} {params}: {err}")
        finally:
            conn.close()
            with lock:
                for k, v in lat.items():
                    result.latencies[k].extend(v)
                result.codes.update(codes)
                result.problems.extend(problems)
                result.registered.extend(registered)

    # one subscriber that never reads (it must not slow anyone down), one that does
    stalled = Conn(sock_path)
    stalled.call("events.subscribe", {"topics": ["version", "alias", "tag"]})
    listener = Conn(sock_path, timeout=5)
    listener.call("events.subscribe", {"topics": ["version.registered"]})

    def listen() -> None:
        assert listener.sock is not None
        while not stop.is_set():
            try:
                chunk = listener.sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            result.events_seen += chunk.count(b'"method":"event"')

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    threads.append(threading.Thread(target=listen, daemon=True))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    next_sample = 0.0
    while (now := time.monotonic() - t0) < seconds:
        if now >= next_sample:
            result.rss.append((now, rss_kib(pid)))
            next_sample += rss_every
            if progress is not None and len(result.rss) % 30 == 0:
                progress(f"{now:.0f} s, RSS {result.rss[-1][1] / 1024:.1f} MiB")
        time.sleep(min(0.2, max(0.0, next_sample - now)))
    stop.set()
    for t in threads:
        t.join(90)
        if t.is_alive():
            result.problems.append(f"{t.name} did not finish within 90 s of the end: a hung call")
    result.rss.append((time.monotonic() - t0, rss_kib(pid)))
    stalled.close()
    listener.close()
    return result


def check_after(sock_path: Path, db: Path, result: LoadResult) -> list[str]:
    """The state after a load run: nothing acknowledged missing, everything verifies."""
    problems = []
    conn = Conn(sock_path, timeout=300)
    versions: dict[tuple[str, str], str] = {}
    prod: Counter[str] = Counter()
    cursor = None
    while True:
        page = conn.call("versions.search", {"filter": "", "limit": 1000, **({"cursor": cursor} if cursor else {})})["result"]
        for v in page["items"]:
            versions[(v["model"], v["version"])] = v["digest"]
            prod[v["model"]] += v["stage"] == "production"
        cursor = page.get("next_cursor")
        if not cursor:
            break
    for model, version, digest in result.registered:
        if versions.get((model, version)) != digest:
            problems.append(f"acknowledged registration {model} {version} is {versions.get((model, version))}")
    problems += [f"{m} has {n} production versions" for m, n in prod.items() if n > 1]
    verify = conn.call("versions.verify")["result"]
    if not verify["ok"]:
        problems.append(f"versions.verify: {[i for i in verify['items'] if i['status'] != 'ok'][:5]}")
    chain = conn.call("audit.verify")["result"]
    if not chain["ok"]:
        problems.append(f"audit.verify: {chain}")
    conn.close()
    ro = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    state = ro.execute("PRAGMA integrity_check").fetchone()[0]
    ro.close()
    if state != "ok":
        problems.append(f"integrity_check: {state}")
    return problems


def test_fifty_clients_mixing_reads_and_writes_see_no_lock_and_lose_nothing(daemon, tmp_path):
    seconds = float(os.environ.get("REGD_LOAD_SECONDS", "15"))
    result = run_load(daemon.socket, daemon.proc.pid, tmp_path / "files", seconds=seconds)
    assert not result.problems, "\n".join(result.problems[:20])
    assert result.codes["ok"] > 100 * seconds / 15, result.codes  # the load was real
    assert all(result.latencies[m] for m in [*READS, *WRITES]), {m: len(v) for m, v in result.latencies.items()}
    assert result.registered and result.events_seen > 0
    assert not check_after(daemon.socket, daemon.data_dir / "registry.db", result)
    # the stalled subscriber and 50 clients later, a new client is served at once
    t0 = time.monotonic()
    assert daemon.client().status()["pid"] == daemon.proc.pid
    assert time.monotonic() - t0 < 5
