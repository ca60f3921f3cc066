"""The crash harness: SIGKILL a busy daemon at a seeded random moment, restart it, check what survived.

One run (``crash_run``) starts a daemon watching a folder and drives three workers at once until the
kill: a dropper writing model files into the watched folder (directly, or write-then-rename), a
registrar calling ``versions.register`` on files elsewhere, and a lifecycle worker promoting, rolling
back, aliasing and tagging what the registrar got back. Every answer received before the kill is
logged client side. Then, after a SIGKILL at ``uniform(min_kill_s, max_kill_s)``:

* ``registry.db`` opened read-only, as the kill left it: ``PRAGMA integrity_check`` is ``ok`` and no
  model has two production rows;
* the daemon restarts, and every model file in the watched folder is exactly one version (by digest);
* every acknowledged registration, tag, alias move, promotion and rollback is there (in the state or,
  for changes a later one superseded, in the audit log);
* ``versions.verify`` is ok for every version (nothing partial), no temp is left in ``objects/tmp``,
  ``audit.verify`` is ok, and no model has more than one production version.

Importable on its own so that ``bench/crash.py`` runs it a hundred times; the tests run a handful.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
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

from tests.conftest import DaemonHandle, make_daemon

API_MODELS = ("alpha", "beta", "gamma")
"""Models the registrar registers into (through the API); the lifecycle worker works on them."""
DROP_MODEL = "dropped"
"""Files dropped under ``<root>/dropped/run-N/`` are versions of this model; others get their stem."""
CONTRACT_CODES = {-32700, -32600, -32601, -32602, -32001, -32002, -32003, -32004, -32005}
"""Every error code the socket API may answer; -32603 is an internal error, i.e. a bug."""


@dataclass(frozen=True)
class Plan:
    """One crash run's sizes; the seed fixes the files, the operations and the kill moment."""

    seed: int
    min_kill_s: float = 0.3
    max_kill_s: float = 3.0
    max_drops: int = 150
    max_registers: int = 150
    max_lifecycle: int = 400
    big_every: int = 6
    """One file in this many is a few MiB, so that kills land while bytes are copied and hashed."""
    big_bytes: tuple[int, int] = (1 << 20, 6 << 20)
    settle_ms: int = 100
    recover_timeout: float = 90.0


@dataclass
class Op:
    """One request of a worker, and its answer if one came back before the kill."""

    kind: str
    params: dict[str, Any]
    answered: bool = False
    result: Any = None
    error: dict[str, Any] | None = None


@dataclass
class Outcome:
    """What one run did and found; ``problems`` is empty when every check held."""

    seed: int
    kill_at: float = 0.0
    acked: Counter[str] = field(default_factory=Counter)
    in_flight: list[str] = field(default_factory=list)
    files: int = 0
    versions: int = 0
    start_s: float = 0.0
    """The first start, on an empty data dir: the peer of ``restart_s``."""
    restart_s: float = 0.0
    """Start after the SIGKILL until it answers (stale socket and lock, WAL recovery, temp cleanup)."""
    recover_s: float = 0.0
    """Restart to every dropped file registered and the ingest queue idle."""
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        acked = ", ".join(f"{k} {n}" for k, n in sorted(self.acked.items()))
        return (
            f"seed {self.seed}: killed at {self.kill_at:.2f} s; acknowledged {acked or 'nothing'}; "
            f"in flight {self.in_flight or 'nothing'}; {self.files} files, {self.versions} versions"
        )


class Lost(Exception):
    """The connection broke or timed out: the daemon died (or hung) with a request in flight."""


class RawConn:
    """One socket connection, no retries: after a kill an unanswered request stays unanswered."""

    def __init__(self, sock_path: Path, timeout: float = 60.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(str(sock_path))
        except OSError as exc:
            self.sock.close()
            raise Lost(str(exc)) from exc
        self.buf = b""
        self.ids = 0

    def call(self, op: Op, ops: list[Op]) -> Op:
        """Send ``op`` (logged in ``ops`` first), wait for its answer, and record it on the op."""
        self.ids += 1
        ops.append(op)
        msg = {"jsonrpc": "2.0", "id": self.ids, "method": op.kind, "params": op.params}
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
            while True:
                while b"\n" not in self.buf:
                    chunk = self.sock.recv(1 << 16)
                    if not chunk:
                        raise Lost("closed")
                    self.buf += chunk
                line, self.buf = self.buf.split(b"\n", 1)
                reply = json.loads(line)
                if reply.get("id") == self.ids:
                    break
        except OSError as exc:  # reset, broken pipe, timeout
            raise Lost(str(exc)) from exc
        op.answered = True
        op.result, op.error = reply.get("result"), reply.get("error")
        return op

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def write_model(path: Path, rng: random.Random, big: bool, big_bytes: tuple[int, int]) -> None:
    """A safetensors file with bytes of its own (regd dedupes by digest)."""
    from safetensors.numpy import save_file

    n = rng.randint(*big_bytes) // 4 if big else rng.randint(16, 2048)
    gen = np.random.default_rng(rng.getrandbits(64))
    save_file({"w": gen.standard_normal(n, dtype=np.float32)}, str(path), metadata={"nonce": str(rng.getrandbits(64))})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Workload:
    """The three workers of one run, stopped by ``stop`` (set right after the kill)."""

    def __init__(self, d: DaemonHandle, root: Path, src: Path, plan: Plan) -> None:
        self.d, self.root, self.src, self.plan = d, root, src, plan
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.known: list[tuple[str, str]] = []
        """(model, version) pairs the registrar got acknowledged: what the lifecycle worker acts on."""
        self.ops: dict[str, list[Op]] = {"registrar": [], "lifecycle": []}
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._guard, args=(fn,), name=fn.__name__, daemon=True)
            for fn in (self.dropper, self.registrar, self.lifecycle)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float = 60.0) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout)
            if t.is_alive():
                self.errors.append(f"worker {t.name} did not stop within {timeout} s")

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except Lost:
            pass
        except Exception as exc:  # noqa: BLE001 - a harness bug must fail the run, not vanish in a thread
            self.errors.append(f"worker {fn.__name__} crashed: {type(exc).__name__}: {exc}")

    def dropper(self) -> None:
        rng = random.Random(self.plan.seed * 3 + 1)
        for i in range(self.plan.max_drops):
            if self.stop.is_set():
                return
            big = i % self.plan.big_every == self.plan.big_every - 1
            if rng.random() < 0.5:
                final = self.root / f"d{i:03d}.safetensors"
            else:
                final = self.root / DROP_MODEL / f"run-{i:03d}" / "model.safetensors"
                final.parent.mkdir(parents=True, exist_ok=True)
            if rng.random() < 0.5:  # the atomic pattern: only the rename is seen
                tmp = final.with_name(final.name + ".tmp")
                write_model(tmp, rng, big, self.plan.big_bytes)
                os.rename(tmp, final)
            else:
                write_model(final, rng, big, self.plan.big_bytes)
            time.sleep(rng.uniform(0, 0.03))

    def registrar(self) -> None:
        rng = random.Random(self.plan.seed * 3 + 2)
        conn = RawConn(self.d.socket)
        try:
            for i in range(self.plan.max_registers):
                if self.stop.is_set():
                    return
                path = self.src / f"r{i:03d}.safetensors"
                write_model(path, rng, i % self.plan.big_every == 0, self.plan.big_bytes)
                name = rng.choice(API_MODELS)
                params = {"path": str(path), "name": name, "metadata": {"metrics": {"acc": round(rng.random(), 4)}}}
                op = conn.call(Op("versions.register", params), self.ops["registrar"])
                if op.error is None:
                    with self.lock:
                        self.known.append((name, op.result["version"]["version"]))
        finally:
            conn.close()

    def lifecycle(self) -> None:
        rng = random.Random(self.plan.seed * 3 + 3)
        conn = RawConn(self.d.socket)
        try:
            for i in range(self.plan.max_lifecycle):
                while not self.stop.is_set():
                    with self.lock:
                        known = list(self.known)
                    if known:
                        break
                    time.sleep(0.01)
                if self.stop.is_set():
                    return
                name, version = rng.choice(known)
                kind = rng.choices(["staging", "production", "rollback", "alias", "tag"], [2, 4, 2, 2, 2])[0]
                reason = f"crash run {self.plan.seed} op {i}"
                if kind in ("staging", "production"):
                    op = Op("versions.promote", {"name": name, "version": version, "stage": kind, "reason": reason})
                elif kind == "rollback":
                    op = Op("models.rollback", {"name": name, "reason": reason})
                elif kind == "alias":
                    alias = rng.choice(["champion", "challenger"])
                    op = Op("aliases.set", {"name": name, "alias": alias, "version": version, "reason": reason})
                else:
                    op = Op("versions.tag", {"name": name, "version": version, "set": {f"op{i}": str(self.plan.seed)}})
                conn.call(op, self.ops["lifecycle"])
                time.sleep(rng.uniform(0, 0.01))
        finally:
            conn.close()


def db_integrity(db: Path) -> str:
    """The catalog exactly as the kill left it (read-only, no recovery write): ``ok`` or what is wrong.

    ``PRAGMA integrity_check``, and the one-production rule in the committed rows themselves.
    """
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        doubles = conn.execute(
            "SELECT model_id, COUNT(*) FROM versions WHERE stage = 'production' GROUP BY model_id HAVING COUNT(*) > 1"
        ).fetchall()
    finally:
        conn.close()
    state = "; ".join(str(r[0]) for r in rows)
    if doubles:
        state += f"; models with more than one production version: {doubles}"
    return state


def all_pages(client: Any, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.call(method, {**params, "limit": 1000, **({"cursor": cursor} if cursor else {})})
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def dropped_files(root: Path) -> dict[Path, str]:
    """Every model file in the watched folder (temporary names excluded), with its digest."""
    out = {}
    for path in sorted(root.rglob("*.safetensors")):
        if path.is_file() and not path.name.startswith("."):
            out[path] = sha256_file(path)
    return out


def check_after_restart(d: DaemonHandle, work: Workload, files: dict[Path, str], outcome: Outcome, plan: Plan) -> None:
    """Every check that needs the daemon back: registrations, acknowledged changes, verify, audit."""
    client = d.client(timeout=120)
    problems = outcome.problems
    want = Counter(files.values())
    t0 = time.monotonic()
    deadline = t0 + plan.recover_timeout
    versions: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        versions = all_pages(client, "versions.search", {"filter": ""})
        have = {v["digest"] for v in versions}
        status = client.status()["ingest"]
        if set(want) <= have and not status["pending"] and not status["active"]:
            break
        time.sleep(0.1)
    outcome.recover_s = time.monotonic() - t0
    time.sleep(plan.settle_ms / 1000 * 3)  # a late duplicate would show up now
    versions = all_pages(client, "versions.search", {"filter": ""})
    outcome.versions = len(versions)
    by_digest = Counter(v["digest"] for v in versions)
    for path, digest in files.items():
        if by_digest[digest] != 1:
            problems.append(f"dropped file {path.relative_to(work.root)} is {by_digest[digest]} versions, not 1")
    for digest, n in by_digest.items():
        if n > 1:
            problems.append(f"digest {digest[:12]} is {n} versions")

    index = {(v["model"], v["version"]): v for v in versions}
    # registrations: the answered ones are there, with the bytes they were answered for
    for op in work.ops["registrar"]:
        if op.answered and op.error is None:
            v = op.result["version"]
            got = index.get((v["model"], v["version"]))
            if got is None or got["digest"] != v["artifact"]["digest"]:
                problems.append(f"acknowledged registration {v['model']} {v['version']} lost (now {got})")
    for op in work.ops["registrar"] + work.ops["lifecycle"]:
        if op.answered and op.error is not None and op.error.get("code") not in CONTRACT_CODES:
            problems.append(f"{op.kind} {op.params} answered {op.error}")

    audit = all_pages(client, "audit.list", {})
    seen = Counter((a["action"], a.get("model"), a.get("version")) for a in audit)
    expected_prod: dict[str, str | None] = {}
    uncertain: set[str] = set()
    for op in work.ops["lifecycle"]:
        name = op.params["name"]
        if not op.answered:
            uncertain.add(name)  # sent, never answered: either outcome is correct
            continue
        if op.error is not None:
            continue
        if op.kind == "versions.tag":
            (key,) = op.params["set"]
            v = index.get((name, op.result["version"]))
            if v is None or v["tags"].get(key) != op.params["set"][key]:
                problems.append(f"acknowledged tag {key} on {name} {op.result['version']} lost")
        elif op.kind == "aliases.set":
            target = op.result["aliases"].get(op.params["alias"])
            if not seen[("alias.set", name, target)]:
                problems.append(f"acknowledged alias {name}@{op.params['alias']} -> {target} not in the audit log")
        elif op.kind == "versions.promote":
            v = op.result["version"]["version"]
            if not seen[("version.stage", name, v)]:
                problems.append(f"acknowledged promotion {name} {v} -> {op.params['stage']} not in the audit log")
            if op.params["stage"] == "production":
                expected_prod[name] = v
        elif op.kind == "models.rollback":
            v = op.result["restored"]["version"]
            if not seen[("version.rolled_back", name, v)]:
                problems.append(f"acknowledged rollback of {name} to {v} not in the audit log")
            expected_prod[name] = v
    aliases_final: dict[tuple[str, str], str] = {}
    for op in work.ops["lifecycle"]:
        if op.kind == "aliases.set" and op.answered and op.error is None:
            aliases_final[(op.params["name"], op.params["alias"])] = op.result["aliases"][op.params["alias"]]

    prod = defaultdict(list)
    for v in versions:
        if v["stage"] == "production":
            prod[v["model"]].append(v["version"])
    for name, vs in prod.items():
        if len(vs) > 1:
            problems.append(f"{name} has {len(vs)} production versions: {vs}")
    for name, v in expected_prod.items():
        if name not in uncertain and prod.get(name, [None])[0] != v:
            problems.append(f"{name}: production is {prod.get(name)}, the last acknowledged change made it {v}")
    for (name, alias), v in aliases_final.items():
        if name not in uncertain:
            model = client.call("models.get", {"name": name})
            if model["aliases"].get(alias) != v:
                problems.append(f"{name}@{alias} is {model['aliases'].get(alias)}, acknowledged {v}")

    verify = client.call("versions.verify")
    if not verify["ok"] or verify["checked"] != len(versions):
        bad = [i for i in verify["items"] if i["status"] != "ok"]
        problems.append(f"versions.verify: checked {verify['checked']} of {len(versions)}, not ok: {bad[:5]}")
    chain = client.call("audit.verify")
    if not chain["ok"]:
        problems.append(f"audit.verify: {chain}")
    leftovers = [p.name for p in (d.data_dir / "objects" / "tmp").iterdir()]
    if leftovers:
        problems.append(f"temps left in objects/tmp after the restart: {leftovers[:5]}")


def crash_run(base: Path, plan: Plan, sabotage: Callable[[Path], None] | None = None) -> Outcome:
    """One run in ``base`` (a fresh directory): start, load, kill, check, restart, check.

    ``sabotage(data_dir)`` runs between the kill and the restart: the harness's self-test uses it to
    damage the data dir and see the checks notice.
    """
    outcome = Outcome(seed=plan.seed)
    rng = random.Random(plan.seed)
    root, src = base / "runs", base / "src"
    root.mkdir(parents=True)
    src.mkdir()
    d = make_daemon(base, f'[[watch]]\npath = "{root}"\nsettle_ms = {plan.settle_ms}\ndir_settle_ms = 1000\n')
    t_run = time.monotonic()
    try:
        t0 = time.monotonic()
        d.start()
        outcome.start_s = time.monotonic() - t0
        work = Workload(d, root, src, plan)
        outcome.kill_at = rng.uniform(plan.min_kill_s, plan.max_kill_s)
        work.start()
        time.sleep(outcome.kill_at)
        d.kill()
        work.join()
        outcome.problems.extend(work.errors)
        for ops in work.ops.values():
            for op in ops:
                if op.answered:
                    outcome.acked[op.kind if op.error is None else f"{op.kind} (refused)"] += 1
                else:
                    outcome.in_flight.append(op.kind)

        state = db_integrity(d.data_dir / "registry.db")
        if state != "ok":
            outcome.problems.append(f"the catalog after the kill: {state}")

        if sabotage is not None:
            sabotage(d.data_dir)
        files = dropped_files(root)
        outcome.files = len(files)
        t0 = time.monotonic()
        d.start(wait=60)
        outcome.restart_s = time.monotonic() - t0
        check_after_restart(d, work, files, outcome, plan)
    except Exception as exc:  # noqa: BLE001 - a run that cannot finish is a failed run, with the daemon's log
        outcome.problems.append(f"run failed: {type(exc).__name__}: {exc}\n{d.log()[-2000:]}")
    finally:
        d.stop()
        shutil.rmtree(d.socket.parent, ignore_errors=True)
        outcome.wall_s = time.monotonic() - t_run
    return outcome
