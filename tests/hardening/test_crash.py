"""SIGKILL at seeded random moments of a busy daemon: nothing acknowledged is lost, nothing is half there.

The harness is ``crashlib`` (the bench runs it a hundred times: ``python -m bench crash``). CI runs
``REGD_CRASH_RUNS`` seeds (default 4); a failing seed reproduces with ``REGD_CRASH_SEEDS=<seed>``.
"""

from __future__ import annotations

import os

import pytest

from tests.hardening.crashlib import Plan, crash_run


def _seeds() -> list[int]:
    if os.environ.get("REGD_CRASH_SEEDS"):
        return [int(s) for s in os.environ["REGD_CRASH_SEEDS"].split(",")]
    return [101 + i for i in range(int(os.environ.get("REGD_CRASH_RUNS", "4")))]


@pytest.mark.slow
@pytest.mark.parametrize("seed", _seeds())
def test_sigkill_during_drops_registrations_promotions_and_rollbacks_loses_nothing_acknowledged(tmp_path, seed):
    outcome = crash_run(tmp_path, Plan(seed=seed))
    assert outcome.ok, outcome.summary() + "\n" + "\n".join(outcome.problems)
    # the run must have exercised something, or it proves nothing
    assert outcome.files > 0 and sum(outcome.acked.values()) > 0, outcome.summary()


def test_a_kill_before_anything_was_acknowledged_still_recovers(tmp_path):
    """The earliest kill: the workers have barely begun (the first registration is still being hashed)."""
    outcome = crash_run(tmp_path, Plan(seed=7, min_kill_s=0.0, max_kill_s=0.05))
    assert outcome.ok, outcome.summary() + "\n" + "\n".join(outcome.problems)
