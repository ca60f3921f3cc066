"""``python -m bench load``: 50 concurrent clients, per-method latency, and a 10-minute memory soak (issue 8).

The driver is ``tests/hardening/test_load.run_load``: 50 threads, each on its own connection (one in
ten reconnecting for every call, as scripts do), mixing reads (``versions.get``, ``versions.search``,
``models.list``, ``models.get``, ``versions.list``) and writes (``versions.register`` of small distinct
files, ``versions.tag``, ``aliases.set``, ``versions.promote``, ``models.rollback``), plus one
``events.subscribe`` connection that never reads and one that does.

1. One client alone: each method's uncontended latency, the peer of the figures under load.
2. 50 clients: p50/p99 per method, throughput, and every answer's code (no -32603, no lock errors).
3. A fresh daemon under the same 50 clients for 10 minutes, its VmRSS sampled every 5 s: the slope
   after a warm-up, and in the second half alone (a leak keeps climbing; caches level off).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from bench.common import Section, daemon, median, ms, pct
from regd.store.sqlite import CACHE_KIB, READERS
from tests.hardening.test_load import READS, WRITES, LoadResult, check_after, run_load

FULL = {"solo": 20.0, "load": 60.0, "soak": 600.0, "rss_every": 5.0}
QUICK = {"solo": 5.0, "load": 15.0, "soak": 60.0, "rss_every": 2.0}
FLAT_MIB_PER_MIN = 0.5
"""A daemon whose RSS still climbs faster than this in the soak's second half is leaking."""
SQLITE_CACHES_MIB = (1 + READERS) * CACHE_KIB // 1024
"""What SQLite's page caches may legitimately take as the catalog grows: 1 writer + the readers, each capped."""


def slope_mib_per_min(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of (seconds, KiB) samples, in MiB per minute."""
    if len(points) < 2:
        return float("nan")
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    cov = sum((t - mx) * (v - my) for t, v in points)
    return cov / var * 60 / 1024 if var else float("nan")


def catalog_mib(data_dir: Path) -> float:
    """registry.db and its WAL, in MiB."""
    return sum(p.stat().st_size for p in data_dir.glob("registry.db*") if p.is_file()) / (1 << 20)


def _phase(d, work: Path, name: str, seconds: float, clients: int, seed_catalog: bool, rss_every: float) -> LoadResult:  # type: ignore[no-untyped-def]
    def progress(text: str) -> None:
        print(f"bench load: {name}: {text}", file=sys.stderr)

    print(f"bench load: {name}: {clients} client(s) for {seconds:.0f} s", file=sys.stderr)
    result = run_load(d.socket, d.proc.pid, work / name, seconds=seconds, clients=clients, seed_catalog=seed_catalog,
                      rss_every=rss_every, progress=progress)  # fmt: skip
    result.problems += check_after(d.socket, d.data_dir / "registry.db", result)
    return result


def run(quick: bool) -> Section:
    plan = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="regd-bench-load-"))
    try:
        with daemon(base=work) as d:
            solo = _phase(d, work, "solo", plan["solo"], 1, True, plan["rss_every"])
            load = _phase(d, work, "load", plan["load"], 50, False, plan["rss_every"])
        with daemon(base=work) as d:
            soak = _phase(d, work, "soak", plan["soak"], 50, True, plan["rss_every"])
            db_mib = catalog_mib(d.data_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = ["| method | 50 clients: p50 · p99 (n) | 1 client: p50 · p99 (n) | p50 ratio |", "|---|---|---|---|"]
    for method in [*READS, *WRITES]:
        a, b = load.latencies.get(method, []), solo.latencies.get(method, [])
        if not a:
            continue
        ratio = f"{median(a) / median(b):.1f}×" if b else "—"
        solo_text = f"{ms(median(b))} · {ms(pct(b, 99))} ({len(b):,})" if b else "—"
        rows.append(f"| `{method}` | {ms(median(a))} · {ms(pct(a, 99))} ({len(a):,}) | {solo_text} | {ratio} |")
    every = [x for v in load.latencies.values() for x in v]

    warm = max(60.0, plan["soak"] * 0.1) if not quick else plan["soak"] * 0.2
    after_warm = [(t, v) for t, v in soak.rss if t >= warm]
    half = [(t, v) for t, v in soak.rss if t >= plan["soak"] / 2]
    slope_all, slope_half = slope_mib_per_min(after_warm), slope_mib_per_min(half)
    start, peak, end = soak.rss[0][1] / 1024, max(v for _, v in soak.rss) / 1024, soak.rss[-1][1] / 1024
    flat = slope_half <= FLAT_MIB_PER_MIN
    ceiling = start + SQLITE_CACHES_MIB + 16
    problems = solo.problems + load.problems + soak.problems
    codes = ", ".join(f"{k} {v:,}" for k, v in sorted(load.codes.items()))
    soak_codes = ", ".join(f"{k} {v:,}" for k, v in sorted(soak.codes.items()))
    verdicts = [
        "| figure | regd | limit | verdict |",
        "|---|---|---|---|",
        f"| -32603 or 'database is locked' answers, hung or dropped calls (all phases) | {len(problems)} | 0 | "
        + ("met" if not problems else "**NOT met**") + " |",
        f"| acknowledged registrations missing afterwards | 0 of {len(load.registered) + len(soak.registered):,} checked | 0 | "
        + ("met" if not problems else "see problems") + " |",
        (
            f"| soak RSS slope, second half | {slope_half:+.2f} MiB/min | ≤ {FLAT_MIB_PER_MIN} MiB/min | "
            + ("met (flat)" if flat else "**NOT met** (still climbing)") + " |"
        ),
        (
            f"| soak RSS peak | {peak:.1f} MiB | start {start:.1f} + SQLite page caches {SQLITE_CACHES_MIB} + 16 MiB "
            f"= {ceiling:.1f} MiB | " + ("met" if peak <= ceiling else "**NOT met**") + " |"
        ),
    ]
    body = [
        "\n".join(verdicts),
        (
            f"Under load: {load.calls:,} calls in {plan['load']:.0f} s from 50 clients ({load.calls / plan['load']:.0f}/s), "
            f"all methods p50 {ms(median(every))} · p99 {ms(pct(every, 99))}; answers: {codes} (-32005: a rollback with "
            "no earlier production version or a promotion the stage machine forbids, as the contract says); "
            f"{load.events_seen:,} registration events read by the live subscriber while another never read."
        ),
        "\n".join(rows),
        (
            f"Soak: a fresh daemon, 50 clients for {plan['soak'] / 60:.0f} min ({soak.calls:,} calls, "
            f"{len(soak.registered):,} registrations; answers: {soak_codes}). VmRSS {start:.1f} MiB at the start, "
            f"peak {peak:.1f} MiB, {end:.1f} MiB at the end; slope after a {warm:.0f} s warm-up {slope_all:+.2f} MiB/min, "
            f"in the second half {slope_half:+.2f} MiB/min; registry.db and its WAL grew to {db_mib:.1f} MiB (SQLite "
            f"caches up to {CACHE_KIB // 1024} MiB of it per connection, {1 + READERS} connections). Samples (s: MiB): "
            + ", ".join(f"{t:.0f}: {v / 1024:.1f}" for t, v in soak.rss[:: max(1, len(soak.rss) // 12)]) + "."
        ),
    ]
    if problems:
        body.append("Problems:\n\n" + "\n".join(f"- {p}" for p in problems[:30]))
    body.append("Reproduce: `python -m bench load` (`--quick`: 15 s under load, a 1-minute soak).")
    figures = {
        "load_calls_per_s": load.calls / plan["load"],
        "load_p99_ms": pct(every, 99) * 1000,
        "soak_slope_mib_per_min": slope_half,
        "load_problems": float(len(problems)),
    }
    return Section("load", "Load: 50 concurrent clients and a memory soak", "\n\n".join(body), figures)
