"""``python -m bench <name> [--quick]``: run a benchmark and write its section of docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.common import write_section

BENCHES = ["core", "ingest", "lifecycle", "diff", "tui", "crash", "fuzz", "load", "team"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHES, "all"], help="which benchmark ('all' runs every one)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run (not for the report)")
    parser.add_argument("--no-write", action="store_true", help="print the section instead of updating docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = BENCHES if args.name == "all" else [args.name]
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"bench {name}: running", file=sys.stderr)
        t0 = time.monotonic()
        try:
            section = module.run(quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - one broken bench must not hide the others' results
            print(f"bench {name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        if args.no_write:
            print(section.body)
        else:
            print(f"bench {name}: {time.monotonic() - t0:.0f} s, written to {write_section(section)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
