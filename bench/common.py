"""What every benchmark shares: a real daemon to measure, statistics, machine facts, the report.

Every figure is measured side by side with its limit or its peer in the same run, and reported
as medians and ratios: these machines are shared and noisy, so absolute times mean little alone.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "BENCHMARKS.md"


@dataclass
class Section:
    """One benchmark's part of docs/BENCHMARKS.md."""

    name: str
    title: str
    body: str
    """Markdown: tables of figures, each beside its limit or peer, and how to reproduce them."""
    figures: dict[str, float] = field(default_factory=dict)
    """Headline numbers (for `bench all`'s summary and the plot)."""
    attachments: dict[str, bytes] = field(default_factory=dict)
    """Files written beside the report (a plot), by name."""


@dataclass
class Daemon:
    """A ``regd serve`` subprocess on a throwaway data dir."""

    data_dir: Path
    socket: Path
    config: Path
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return dict(os.environ, REGD_SOCKET=str(self.socket), REGD_CONFIG=str(self.config))


@contextlib.contextmanager
def daemon(extra_config: str = "", base: Path | None = None) -> Iterator[Daemon]:
    """Start a daemon (waiting until it answers) and stop it afterwards."""
    from regd.client import Client
    from regd.errors import Unreachable

    tmp = Path(tempfile.mkdtemp(prefix="regd-bench-", dir=base))
    sock = Path(tempfile.mkdtemp(prefix="rb-", dir="/tmp")) / "regd.sock"
    config = tmp / "regd.toml"
    config.write_text(f'data_dir = "{tmp / "data"}"\nsocket = "{sock}"\nlog_level = "warning"\n{extra_config}\n')
    log = (tmp / "regd.log").open("wb")
    env = dict(os.environ, REGD_SOCKET=str(sock), REGD_CONFIG=str(config))
    proc = subprocess.Popen([sys.executable, "-m", "regd", "serve"], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with Client(sock, timeout=5) as c:
                    c.status()
                break
            except Unreachable:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp / "regd.log").read_text()) from None
                time.sleep(0.02)
        yield Daemon(tmp / "data", sock, config, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(sock.parent, ignore_errors=True)


def pct(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) of samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def ms(seconds: float) -> str:
    """Format seconds as milliseconds with sensible precision."""
    value = seconds * 1000
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def timed(fn, repeat: int) -> list[float]:  # type: ignore[no-untyped-def]
    """Run ``fn`` ``repeat`` times; the seconds each took."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def machine() -> str:
    """One paragraph of facts: CPU, cores, memory, disk, Python and the packages measured."""
    from importlib import metadata

    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    versions = []
    for pkg in ("regd", "mlflow-skinny", "mlflow", "textual", "pydantic", "aiosqlite"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{pkg} {metadata.version(pkg)}")
    import sqlite3

    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; {', '.join(versions)}"
    )


def write_section(section: Section) -> Path:
    """Replace (or append) this section of docs/BENCHMARKS.md, between its markers."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else _HEADER
    start, end = f"<!-- bench:{section.name} -->", f"<!-- /bench:{section.name} -->"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    block = (
        f"{start}\n## {section.title}\n\n_Measured {stamp} with `python -m bench {section.name}` on: {machine()}_\n\n"
        f"{section.body.strip()}\n{end}"
    )
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)
    for name, data in section.attachments.items():
        (REPORT.parent / name).write_bytes(data)
    return REPORT


_HEADER = """# regd benchmarks

Every figure here comes from `python -m bench ...` (regenerate everything with `python -m bench all`).
Each is measured side by side with its physical limit or with a peer (MLflow's Model Registry on
SQLite) in the same run, as medians and ratios: the machines are shared and noisy, so an absolute
time alone says little. Install the peers with `pip install '.[bench]'`.
"""
