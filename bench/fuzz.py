"""``python -m bench fuzz``: the hypothesis fuzzers of ``tests/hardening`` at scale (issue 8).

Runs ``test_fuzz_rpc.py`` and ``test_fuzz_formats.py`` under pytest with ``REGD_FUZZ_EXAMPLES`` raised
(2,500 per fuzzer: over 10,000 socket messages and 5,000 model files), each fuzzer appending its
figures to a ``REGD_FUZZ_REPORT`` file that this turns into the report: cases, answers by code,
round-trip latency beside the per-message deadline, and the known bugs the inputs hit (the strict
xfails in the test files pin each one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import ROOT, Section

FULL_EXAMPLES = 2500
QUICK_EXAMPLES = 200
FILES = ["tests/hardening/test_fuzz_rpc.py", "tests/hardening/test_fuzz_formats.py"]


def run(quick: bool) -> Section:
    examples = QUICK_EXAMPLES if quick else FULL_EXAMPLES
    report = Path(tempfile.mkstemp(prefix="regd-fuzz-", suffix=".jsonl")[1])
    env = dict(os.environ, REGD_FUZZ_EXAMPLES=str(examples), REGD_FUZZ_REPORT=str(report))
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *FILES, "-q", "-p", "no:cacheprovider", "-W", "ignore", "-rfEX"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    total = time.monotonic() - t0
    rows = [json.loads(line) for line in report.read_text().splitlines() if line.strip()]
    report.unlink(missing_ok=True)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output"
    print(f"bench fuzz: pytest: {summary}", file=sys.stderr)

    from tests.hardening.test_fuzz_rpc import DEADLINE

    rpc = [r for r in rows if "answers" in r]
    files = [r for r in rows if "formats" in r]
    codes: Counter[str] = Counter()
    known: Counter[str] = Counter()
    for r in rpc:
        codes.update(r["answers"])
        known.update(r["known_bugs"])
    lines = [
        "| fuzzer | cases | answers by code | round trip p50 · p99 · max | limit |",
        "|---|---|---|---|---|",
    ]
    for r in rpc:
        answers = ", ".join(f"{k} {v}" for k, v in sorted(r["answers"].items()))
        lines.append(
            f"| `{r['test']}` | {r['cases']:,} | {answers} | {r['p50_ms']:.1f} · {r['p99_ms']:.1f} · {r['max_ms']:.0f} ms "
            f"| answer within {DEADLINE:.0f} s |"
        )
    file_lines = ["| fuzzer | files | as detected | with format_error | slowest | peak allocation |", "|---|---|---|---|---|---|"]
    for r in files:
        formats = ", ".join(f"{k} {v}" for k, v in sorted(r["formats"].items()))
        file_lines.append(
            f"| `{r['test']}` | {r['cases']:,} | {formats} | {r['format_errors']:,} | "
            + (f"{r['slowest_ms']:.0f} ms | {r['peak_mib']:.1f} MiB |" if r["slowest_ms"] else "— (in the daemon) | — |")
        )
    n_rpc = sum(r["cases"] for r in rpc)
    n_files = sum(r["cases"] for r in files)
    failed = proc.returncode != 0
    body = [
        (
            f"{n_rpc:,} JSON-RPC messages over the real socket and {n_files:,} model files through the format readers "
            f"({examples:,} hypothesis examples per fuzzer), in {total / 60:.1f} min. pytest: `{summary}` "
            f"({'**failures below**' if failed else 'every check held'})."
        ),
        (
            "Socket fuzzers: messages generated from `regd.protocol.METHODS`' own JSON schemas, the same pushed past "
        "them (wrong types, huge and non-finite numbers, NUL bytes, deep nesting, unknown keys, params as arrays), "
        "hostile envelopes and batches, and raw bytes (invalid UTF-8, truncations, nesting bombs). Checks: every line "
        "back is strict JSON and a valid JSON-RPC response with a contract code (results validate against their "
        "models), a `daemon.status` probe after each message answers within the deadline, the daemon never dies, and "
        "afterwards `audit.verify` and `versions.verify` are ok."
        ),
        "\n".join(lines),
        (
            f"- -32603 answers outside the known bugs: {'see the failures below' if failed else '0'} (limit 0). "
            + (
                "Known-bug inputs sent: " + ", ".join(f"{k} {v}" for k, v in sorted(known.items()))
                + " (each pinned by a strict xfail in `tests/hardening/test_fuzz_rpc.py`)."
                if known else "No input was exempted: `KNOWN_BUGS` in `tests/hardening/test_fuzz_rpc.py` is empty."
            )
        ),
        (
            "Format fuzzers: mutated real files of every format (interesting integers at length fields, splices between "
        "formats, truncations) and headers built field by field (safetensors, GGUF, pickle opcodes, zip, protobuf). "
        "Checks: no exception, no `reader failed` safety-net warning, bounded time and allocation, sane tensor offsets."
        ),
        "\n".join(file_lines),
    ]
    if failed:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        body.append(f"Failures:\n\n```\n{tail}\n```")
    body.append("Reproduce: `python -m bench fuzz` (`--quick`: 200 examples per fuzzer); CI runs 300 per fuzzer.")
    figures = {"fuzz_rpc_cases": float(n_rpc), "fuzz_file_cases": float(n_files), "fuzz_failed": float(failed)}
    return Section("fuzz", "Fuzzing: the socket API and the format readers", "\n\n".join(body), figures)
