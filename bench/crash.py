"""``python -m bench crash``: SIGKILL a busy daemon at seeded random moments, 100 times (issue 8).

Each run is ``tests/hardening/crashlib.crash_run``: a dropper, a registrar and a lifecycle worker
(promotions, rollbacks, aliases, tags) load the daemon; it is killed at a random moment; the catalog
is checked read-only as the kill left it, the daemon restarts, and every acknowledged change, every
dropped file (exactly once), ``versions.verify``, ``audit.verify`` and the one-production rule are
checked. The report gives the failures (the target is none), what was at stake, and the restart and
recovery times beside a clean start of the same daemon.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import Section, median, pct
from tests.hardening.crashlib import Outcome, Plan, crash_run

FULL_RUNS = 100
QUICK_RUNS = 8


def _s(samples: list[float]) -> str:
    return f"p50 {median(samples):.2f} s · p99 {pct(samples, 99):.2f} s · max {max(samples):.2f} s"


def run(quick: bool) -> Section:
    n = QUICK_RUNS if quick else FULL_RUNS
    work = Path(tempfile.mkdtemp(prefix="regd-bench-crash-"))
    outcomes: list[Outcome] = []
    t0 = time.monotonic()
    try:
        for i in range(n):
            seed = 1000 + i
            base = work / f"run-{seed}"
            outcome = crash_run(base, Plan(seed=seed))
            outcomes.append(outcome)
            state = "ok" if outcome.ok else "FAILED: " + "; ".join(outcome.problems)[:300]
            print(f"bench crash: {i + 1}/{n} {outcome.summary()}: {state}", file=sys.stderr)
            shutil.rmtree(base, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = time.monotonic() - t0

    failed = [o for o in outcomes if not o.ok]
    acked: Counter[str] = Counter()
    in_flight: Counter[str] = Counter()
    for o in outcomes:
        acked.update(o.acked)
        in_flight.update(o.in_flight)
    kills = [o.kill_at for o in outcomes]
    files = sum(o.files for o in outcomes)
    versions = sum(o.versions for o in outcomes)
    starts = [o.start_s for o in outcomes]
    restarts = [o.restart_s for o in outcomes if o.restart_s]
    recover = [o.recover_s for o in outcomes if o.recover_s]
    plan = Plan(seed=0)

    rows = [
        "| figure | regd | limit or peer | verdict |",
        "|---|---|---|---|",
        f"| runs with any failed check | {len(failed)} of {n} | 0 | {'met' if not failed else '**NOT met**'} |",
        (
            f"| acknowledged changes checked after the kill | {sum(v for k, v in acked.items() if 'refused' not in k):,} | "
            "every one present | " + ("met" if not failed else "see failures") + " |"
        ),
        (
            f"| dropped files checked (exactly one version each) | {files:,} | duplicates 0, missing 0 | "
            + ("met" if not failed else "see failures") + " |"
        ),
        (
            f"| restart after SIGKILL, to answering | {_s(restarts)} | clean start of the same daemon: {_s(starts)} | "
            f"{median(restarts) / median(starts):.2f}× a clean start |"
        ),
        f"| restart to every dropped file registered | {_s(recover)} | — | — |",
    ]
    acked_lines = ", ".join(f"{k} {v:,}" for k, v in sorted(acked.items()))
    flight_lines = ", ".join(f"{k} {v}" for k, v in sorted(in_flight.items())) or "none"
    body = [
        (
            "Every run: a daemon watching a folder, three workers at once (a dropper writing safetensors files "
            "into the watched folder, half of them write-then-rename and one in six a few MiB; a registrar calling "
            "`versions.register`; a lifecycle worker promoting, rolling back, aliasing and tagging), a SIGKILL at "
            f"`uniform({plan.min_kill_s}, {plan.max_kill_s})` s, `PRAGMA integrity_check` on the catalog opened read-only "
            "as the kill left it, a restart, then: every answered registration, tag, alias move, promotion and rollback "
            "present; every model file in the watched folder exactly one version (by digest); `versions.verify` ok for "
            "all (no partial version), no temp left in `objects/tmp`; `audit.verify` ok; at most one production version "
            "per model."
        ),
        "\n".join(rows),
        (
            f"- {n} runs in {total / 60:.1f} min; kill moments {min(kills):.2f}–{max(kills):.2f} s "
            f"(median {median(kills):.2f} s); {versions:,} versions checked after restarts."
        ),
        f"- Answers received before the kills: {acked_lines}.",
        f"- Requests in flight at the kills (either outcome is correct for them): {flight_lines}.",
    ]
    if failed:
        body.append("Failures:\n\n" + "\n".join(f"- seed {o.seed}: " + "; ".join(o.problems)[:500] for o in failed))
    body.append(
        "Reproduce: `python -m bench crash` (`--quick`: 8 runs); one seed: "
        "`REGD_CRASH_SEEDS=1042 pytest tests/hardening/test_crash.py`."
    )
    figures = {
        "crash_runs": float(n),
        "crash_failed": float(len(failed)),
        "crash_restart_p50_s": median(restarts),
        "crash_recover_p50_s": median(recover),
    }
    return Section("crash", "Crash safety: SIGKILL at random moments", "\n\n".join(body), figures)
