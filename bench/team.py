"""``python -m bench team``: team scale (issue 9), a PostgreSQL catalog and an S3 bucket shared by daemons.

* Register and promote with 4 daemons on one PostgreSQL, all four working at once (each on its own
  model: they take different model locks and meet only on the audit chain's, at commit), beside one
  daemon on the embedded SQLite store doing the same, interleaved round by round. Target: p50 within
  3x of the embedded store.
* A 1 GiB upload through ``S3BlobStore.put_file`` (hash and copy into the local cache, then a multipart
  upload with per-part SHA-256 checksums) beside a plain ``upload_file`` of the same file with the same
  boto3 client, alternating. Target: within 1.5x.

The servers are throwaway ones on loopback: PostgreSQL 15 from ``initdb``/``pg_ctl`` (fsync on, as in
production; run as the user ``regdpg`` under root) and moto's S3 server in its own process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Section, daemon, median
from bench.fixtures import (
    Conn,
    Row,
    at_once,
    big_model,
    cpu_seconds,
    dist,
    small_model,
    table,
    touch_tail,
    within,
)
from tests.team.services import free_port, pg_bin, pg_run_as


@dataclass
class Plan:
    rounds: int = 150
    upload_bytes: int = 1 << 30
    upload_rounds: int = 3
    cpu_promotions: int = 200


FULL = Plan()
QUICK = Plan(rounds=30, upload_bytes=128 << 20, upload_rounds=2, cpu_promotions=30)
DAEMONS = 4


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server; the URL of an empty database on it."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("PostgreSQL is not installed (initdb, pg_ctl on PATH or in /usr/lib/postgresql/*/bin)")
    user = pg_run_as()
    root = Path(tempfile.mkdtemp(prefix="regd-bench-pg-", dir="/tmp"))  # reachable by that user
    if user:
        shutil.chown(root, user)
    port = free_port()
    subprocess.run([initdb, "-D", str(root / "db"), "-U", "regd", "--auth=trust", "-E", "UTF8"], check=True,
                   capture_output=True, user=user)  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=100"
    subprocess.run([pg_ctl, "-D", str(root / "db"), "-o", opts, "-l", str(root / "log"), "-w", "start"], check=True,
                   capture_output=True, user=user)  # fmt: skip
    try:
        import psycopg

        with psycopg.connect(f"postgresql://regd@127.0.0.1:{port}/postgres", autocommit=True) as c:
            c.execute("CREATE DATABASE bench")
        yield f"postgresql://regd@127.0.0.1:{port}/bench"
    finally:
        subprocess.run([pg_ctl, "-D", str(root / "db"), "-m", "fast", "stop"], capture_output=True, user=user, check=False)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server in a process of its own (not sharing this one's GIL); its endpoint."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto's S3 server did not start (pip install 'moto[server]')")
            time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(30)


def run(quick: bool) -> Section:
    plan = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="regd-bench-team-", dir="/var/tmp"))
    try:
        figures: dict[str, float] = {}
        with postgres() as url:
            catalog_rows, detail = _catalog(plan, work, url, figures)
        with s3_server() as endpoint:
            upload_rows = _upload(plan, work, endpoint, figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = f"""
{table(catalog_rows + upload_rows)}

{detail}

Reproduce with `python -m bench team` (`--quick` for a smoke run). Needs PostgreSQL 15 (`initdb`,
`pg_ctl`) and `pip install 'regd[team]' 'moto[server]'`. The PostgreSQL server runs with its defaults
(fsync on); the embedded store commits with `synchronous = FULL`. moto keeps objects in memory, so
the upload figures compare the client side (hashing, the cache copy, checksums), not a disk behind S3.
"""
    return Section("team", "Team scale: PostgreSQL catalog, S3 objects (issue 9)", body, figures)


# ----------------------------------------------------------------------------- catalog


def _catalog(plan: Plan, work: Path, url: str, figures: dict[str, float]) -> tuple[list[Row], str]:
    """Four contenders a round, in rotating order: the embedded daemon alone; one team daemon (taking
    turns) on the shared model while the other three idle; all four team daemons at once; four embedded
    daemons at once (the same load, nothing shared)."""
    models = work / "models"
    models.mkdir()
    team_keys = [f"team{k}" for k in range(DAEMONS)]
    solo_keys = [f"solo{k}" for k in range(DAEMONS)]  # embedded daemons, each on its own data dir
    keys = ["embedded", "turns", *team_keys, *solo_keys]
    files = {k: [models / f"{k}-{i}.safetensors" for i in range(plan.rounds)] for k in keys}
    for n, k in enumerate(keys):
        for i, path in enumerate(files[k]):
            small_model(path, seed=n * 100_000 + i)
    kinds = ("embedded", "turns", "all", "solo_all")
    samples = {op: {kind: [] for kind in kinds} for op in ("register", "promote")}  # type: dict[str, dict[str, list[float]]]
    with contextlib.ExitStack() as stack:
        embedded = stack.enter_context(daemon(base=work))
        team = [stack.enter_context(daemon(f'catalog = "{url}"', base=work)) for _ in range(DAEMONS)]
        solos = [stack.enter_context(daemon(base=work)) for _ in range(DAEMONS)]
        conns = {"embedded": Conn(embedded.socket), **{k: Conn(d.socket) for k, d in zip(team_keys, team, strict=True)},
                 **{k: Conn(d.socket) for k, d in zip(solo_keys, solos, strict=True)}}  # fmt: skip

        def request(model: str, op: str, i: int) -> tuple[str, dict[str, Any]]:
            if op == "register":
                return "versions.register", {"path": str(files[model][i]), "name": model}
            return "versions.promote", {"name": model, "version": f"1.{i}.0", "stage": "production", "reason": "bench"}

        def call(conn: str, model: str, op: str, i: int, out: list[float]) -> None:
            method, params = request(model, op, i)
            t0 = time.perf_counter()
            conns[conn].call(method, params)
            out.append(time.perf_counter() - t0)

        def all_at_once(op: str, i: int, keys: list[str] = team_keys, kind: str = "all") -> None:
            samples[op][kind].extend(at_once([(conns[k], *request(k, op, i)) for k in keys]))

        for op in ("register", "promote"):
            if op == "promote":
                _analyze(url)
            for i in range(plan.rounds):
                turns = [
                    lambda op=op, i=i: call("embedded", "embedded", op, i, samples[op]["embedded"]),
                    lambda op=op, i=i: call(team_keys[i % DAEMONS], "turns", op, i, samples[op]["turns"]),
                    lambda op=op, i=i: all_at_once(op, i),
                    lambda op=op, i=i: all_at_once(op, i, solo_keys, "solo_all"),
                ]
                shift = i % len(turns)
                for run_one in turns[shift:] + turns[:shift]:
                    run_one()
        cpu_row = _cpu_per_promotion(plan, models, url, {"embedded": embedded, "team": team[0]}, conns, figures)
        flush = _commit_flush(url, plan.cpu_promotions)
        checks = {k: c.call("audit.verify")["ok"] for k, c in conns.items()}
        for c in conns.values():
            c.close()
    if not all(checks.values()):
        raise RuntimeError(f"audit chain broken after the bench: {checks}")
    rows = []
    for op in ("register", "promote"):
        base = samples[op]["embedded"]
        row, ratio = within(f"{op}, {DAEMONS} daemons on one PostgreSQL, taking turns", samples[op]["turns"], base,
                            "one daemon, embedded SQLite", 3.0)  # fmt: skip
        rows.append(row)
        figures[f"team_{op}_ratio"] = ratio
        row, ratio = within(f"{op}, {DAEMONS} daemons on one PostgreSQL, all at once", samples[op]["all"], base,
                            "one daemon, embedded SQLite", 3.0)  # fmt: skip
        rows.append(row)
        figures[f"team_{op}_all_at_once_ratio"] = ratio
        figures[f"team_{op}_p50_ms"] = median(samples[op]["turns"]) * 1000
        same = median(samples[op]["all"]) / median(samples[op]["solo_all"])
        rows.append(Row(
            f"context: {op}, all at once, beside {DAEMONS} embedded daemons all at once (the same load on this machine)",
            dist(samples[op]["all"]), f"{DAEMONS} embedded daemons, separate data dirs: {dist(samples[op]['solo_all'])}",
            f"{same:.2f}× at the same load", "—", "(context)",
        ))  # fmt: skip
        figures[f"team_{op}_all_vs_embedded_all"] = same
    rows.append(cpu_row)
    rows.append(_floor_row(samples["promote"], figures, flush))
    detail = (
        f"Each of {plan.rounds} rounds per operation runs four contenders in rotating order: the embedded daemon; "
        f"one of the {DAEMONS} team daemons (they take turns) on a model they share, the other three idle (with no "
        "subscriber and no deploy_dir a daemon does not follow the others' changes); all four team daemons at the "
        "same moment, each on its own model (the bench sends the four calls from one thread before it reads any "
        f"answer); and {DAEMONS} embedded daemons (each on its own data dir: nothing shared) at the same moment: the "
        "same number of busy daemons on the same cores, so the context rows' ratio is what the shared catalog costs "
        "beyond the machine's load. Each write holds only its model's advisory lock, and the audit chain's for its "
        "commit message, so the four team daemons at once queue only there; they also share this machine's two "
        "cores with PostgreSQL and the bench's client: that row is the worst case of a team, not the common one. "
        "A promotion there is CPU-bound: it costs "
        f"{figures['team_promote_cpu_daemon_ms']:.2f} ms of a daemon's CPU and {figures['team_promote_cpu_pg_ms']:.2f} ms "
        "of PostgreSQL's (the CPU row), and four of them share two cores. The floor row adds up what four at once "
        "cannot avoid here, from parts measured in the same run: the four daemons' own work (four embedded daemons "
        "at once), PostgreSQL's CPU for the four, and the audit chain's queue (one chain for every daemon, each "
        "commit holding its lock through its WAL flush, so that no daemon sees a row a crash could still lose). "
        "A registration is a "
        "4 KiB safetensors file (local objects on both sides, so only the catalog differs); a promotion archives "
        "the previous production version in the same transaction. Between the registrations and the "
        "promotions the bench runs `ANALYZE`, as autovacuum would on a server up for more than the seconds "
        "this one has been (see `_analyze`)."
    )
    return rows, detail


def _cpu_per_promotion(plan: Plan, models: Path, url: str, daemons: dict[str, Any], conns: dict[str, Conn],
                       figures: dict[str, float]) -> Row:  # fmt: skip
    """What one promotion costs the machine's CPU: the embedded daemon's, and a team daemon's plus
    PostgreSQL's (all its processes), each promoting fresh versions one at a time (from /proc)."""
    n = plan.cpu_promotions
    conn_of = {"embedded": "embedded", "team": "team0"}
    spent: dict[str, float] = {}
    for kind, d in daemons.items():
        c = conns[conn_of[kind]]
        name = f"cpu-{kind}"
        for i in range(n + 1):
            path = models / f"{name}-{i}.safetensors"
            small_model(path, seed=900_000 + i)
            c.call("versions.register", {"path": str(path), "name": name})
        c.call("versions.promote", {"name": name, "version": "1.0.0", "stage": "production", "reason": "bench"})
        pids = [d.proc.pid, *(_postgres_pids(url) if kind == "team" else [])]
        before = {pid: cpu_seconds(pid) for pid in pids}
        for i in range(1, n + 1):
            c.call("versions.promote", {"name": name, "version": f"1.{i}.0", "stage": "production", "reason": "bench"})
        for pid in pids:
            key = f"{kind}:daemon" if pid == d.proc.pid else f"{kind}:pg"
            with contextlib.suppress(OSError):  # a PostgreSQL process that ended meanwhile
                spent[key] = spent.get(key, 0.0) + cpu_seconds(pid) - before[pid]
    ms = {k: v / n * 1000 for k, v in spent.items()}
    figures.update(team_promote_cpu_daemon_ms=ms["team:daemon"], team_promote_cpu_pg_ms=ms.get("team:pg", 0.0),
                   embedded_promote_cpu_ms=ms["embedded:daemon"])  # fmt: skip
    team_ms = ms["team:daemon"] + ms.get("team:pg", 0.0)
    return Row(
        f"context: CPU per promotion, one at a time ({n} in a row, from /proc)",
        f"team daemon {ms['team:daemon']:.2f} ms + PostgreSQL {ms.get('team:pg', 0.0):.2f} ms",
        f"embedded daemon: {ms['embedded:daemon']:.2f} ms",
        f"{team_ms / ms['embedded:daemon']:.2f}× the CPU", "—",
        f"(context: four at once on {os.cpu_count()} cores need ≥ {4 * team_ms / (os.cpu_count() or 1):.2f} ms of it each round)",
    )  # fmt: skip


def _commit_flush(url: str, n: int) -> float:
    """How long a commit on this PostgreSQL waits for its WAL flush (p50, seconds): a one-row commit
    made durable, less the same commit with ``synchronous_commit = off``, interleaved."""
    import psycopg

    taken: dict[str, list[float]] = {"on": [], "off": []}
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE bench_flush (n BIGINT)")
        try:
            for _ in range(n):
                for mode, out in taken.items():
                    t0 = time.perf_counter()
                    db.execute(f"BEGIN; SET LOCAL synchronous_commit = {mode}; INSERT INTO bench_flush VALUES (1); COMMIT")
                    out.append(time.perf_counter() - t0)
        finally:
            db.execute("DROP TABLE bench_flush")
    return max(0.0, median(taken["on"]) - median(taken["off"]))


def _floor_row(promote: dict[str, list[float]], figures: dict[str, float], flush: float) -> Row:
    """What four promotions at once cannot take less than here, added up from this run's parts:
    the same four daemons' work with nothing shared (four embedded daemons at once), PostgreSQL's
    CPU for four promotions on the same cores, and the audit chain's queue (each commit holds the
    chain's lock through its WAL flush, so of four arriving together the middle ones wait for one
    and two flushes: 1.5 on average). Not a measurement of regd: the least any daemon could do."""
    cores = os.cpu_count() or 1
    solo = median(promote["solo_all"]) * 1000
    server = DAEMONS * figures["team_promote_cpu_pg_ms"] / cores
    queue = 1.5 * flush * 1000
    floor = solo + server + queue
    limit = median(promote["embedded"]) * 1000
    figures.update(team_commit_flush_ms=flush * 1000, team_promote_all_at_once_floor_ms=floor)
    return Row(
        f"context: the least {DAEMONS} promotions at once can take on this machine (parts measured in this run)",
        f"{floor:.2f} ms = {DAEMONS} embedded daemons at once {solo:.2f} + PostgreSQL's CPU for {DAEMONS} on "
        f"{cores} cores {server:.2f} + the audit chain's queue {queue:.2f} (1.5 WAL flushes of {flush * 1000:.2f})",
        f"one daemon, embedded SQLite: p50 {limit:.2f} ms", f"{floor / limit:.2f}× the limit", "—",
        "(context: the floor of the all-at-once promote row)",
    )  # fmt: skip


def _postgres_pids(url: str) -> list[int]:
    """The PostgreSQL server's processes: the postmaster (a backend's parent) and its children."""
    import psycopg

    with psycopg.connect(url) as db:
        (backend,) = db.execute("SELECT pg_backend_pid()").fetchone() or (0,)
    postmaster = _parent(backend)
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError):
                if _parent(int(entry.name)) == postmaster:
                    children.append(int(entry.name))
    return [postmaster, *children]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _analyze(url: str) -> None:
    """Give PostgreSQL its statistics of what the registrations wrote, as autovacuum does on any
    server that has been up a minute (this one has been up seconds): without them it guesses that a
    model has one version, and looks a version up through the model's index instead of its number's."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("ANALYZE")


# ----------------------------------------------------------------------------- upload


def _upload(plan: Plan, work: Path, endpoint: str, figures: dict[str, float]) -> list[Row]:
    import boto3

    from regd.store.s3blobs import S3BlobStore

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")  # fmt: skip
    bucket = f"bench-{secrets.token_hex(4)}"
    client.create_bucket(Bucket=bucket)
    store = S3BlobStore(f"s3://{bucket}/regd", work / "cache", client=client)
    src = work / "big.safetensors"
    size = big_model(src, plan.upload_bytes)
    plain: list[float] = []
    regd: list[float] = []
    for i in range(plan.upload_rounds):
        def put_plain(i: int = i) -> None:
            t0 = time.perf_counter()
            client.upload_file(str(src), bucket, f"plain/{i}")
            plain.append(time.perf_counter() - t0)
            client.delete_object(Bucket=bucket, Key=f"plain/{i}")

        def put_regd() -> None:
            touch_tail(src)  # new bytes, new digest: nothing is skipped as already stored
            t0 = time.perf_counter()
            got = store.put_file(src)
            regd.append(time.perf_counter() - t0)
            client.delete_object(Bucket=bucket, Key=store.key(got.digest))
            store.cache.delete(got.digest)

        for put in (put_plain, put_regd) if i % 2 == 0 else (put_regd, put_plain):
            put()
    label = f"{size / (1 << 30):.2f} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    row, ratio = within(f"{label} through `S3BlobStore.put_file` (hash + cache copy + checked multipart)", regd, plain,
                        "plain `upload_file`, same client", 1.5)  # fmt: skip
    figures["team_upload_ratio"] = ratio
    figures["team_upload_mib_s"] = size / (1 << 20) / median(regd)
    return [row]

