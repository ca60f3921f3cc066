"""SIGKILL at seeded random moments of a busy daemon: nothing acknowledged is lost, nothing is half there.

The harness is ``crashlib`` (the bench runs it a hundred times: ``python -m bench crash``). CI runs
``REGD_CRASH_RUNS`` seeds (default 4); a failing seed reproduces with ``REGD_CRASH_SEEDS=<seed>``.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

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


def test_the_harness_notices_damage(tmp_path):
    """Its checks have teeth: a lost blob, an edited audit row and a lost acknowledged change are all reported."""

    def damage(data_dir: Path) -> None:
        blob = next(p for p in (data_dir / "objects" / "sha256").rglob("*") if p.is_file())
        blob.unlink()
        db = sqlite3.connect(data_dir / "registry.db")
        for (trigger,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit'").fetchall():
            db.execute(f"DROP TRIGGER {trigger}")  # the append-only guard: a tamperer would do the same
        db.execute("UPDATE audit SET reason = 'edited' WHERE id = (SELECT min(id) FROM audit)")
        db.execute("DELETE FROM tags")
        db.commit()
        db.close()

    outcome = crash_run(tmp_path, Plan(seed=5, min_kill_s=1.5, max_kill_s=2.0), sabotage=damage)
    text = "\n".join(outcome.problems)
    assert "versions.verify" in text and "audit.verify" in text, text
    if outcome.acked["versions.tag"]:
        assert "acknowledged tag" in text, text
