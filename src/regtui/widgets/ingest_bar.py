"""The ingest queue as a progress bar: files pending, bytes hashed, rate (``daemon.status().ingest``)."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from regtui.fmt import size


def ingest_active(status: dict[str, Any] | None) -> bool:
    """Whether the daemon is hashing or has files waiting."""
    q = (status or {}).get("ingest") or {}
    return bool(q.get("pending") or q.get("active") or q.get("bytes_done", 0) < q.get("bytes_total", 0))


class IngestBar(Horizontal):
    """Shown only while the daemon ingests; follows the app's ``status``."""

    DEFAULT_CSS = """
    IngestBar { height: 1; display: none; background: $boost; }
    IngestBar.-active { display: block; }
    IngestBar > Label { width: auto; padding: 0 1; color: $text-accent; }
    IngestBar > #ingest-file { max-width: 25%; color: $text-muted; text-overflow: ellipsis; text-wrap: nowrap; }
    IngestBar > ProgressBar { width: 1fr; }
    IngestBar > ProgressBar > Bar { width: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Label("", id="ingest-label")
        yield ProgressBar(total=None, show_eta=False, id="ingest-progress")
        yield Label("", id="ingest-file")

    def on_mount(self) -> None:
        self.watch(self.app, "status", self.show_status, init=True)

    def show_status(self, status: dict[str, Any] | None) -> None:
        active = ingest_active(status)
        self.set_class(active, "-active")
        if not active or status is None:
            return
        q = status["ingest"]
        total, done = int(q.get("bytes_total", 0)), int(q.get("bytes_done", 0))
        parts = [f"ingest {q.get('pending', 0)} pending"]
        if total:
            parts.append(f"{size(done)}/{size(total)}")
        if q.get("rate_bytes_per_s"):
            parts.append(f"{size(q['rate_bytes_per_s'])}/s")
        self.query_one("#ingest-label", Label).update(" · ".join(parts))
        active_files = q.get("active") or []
        self.query_one("#ingest-file", Label).update(str(active_files[0]).rsplit("/", 1)[-1] if active_files else "")
        self.query_one("#ingest-progress", ProgressBar).update(total=total or None, progress=done)
