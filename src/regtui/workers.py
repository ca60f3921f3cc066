"""The one place a failed worker becomes a message on screen.

Every RPC runs in a worker started with ``exit_on_error=False``; Textual posts
``Worker.StateChanged`` to the node that started it (it does not bubble), so the app, the
screens and the widgets that start workers all mix this in.
"""

from __future__ import annotations

from textual.worker import Worker, WorkerState

from regtui.fmt import describe

QUIET_GROUPS = frozenset({"status"})
"""Background polls whose failures the live feed already reports (as one "connection lost")."""


class ReportsWorkerFailures:
    """Show a failed worker's error as a notification, never a traceback."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state != WorkerState.ERROR or worker.error is None or worker.group in QUIET_GROUPS:
            return
        self.app.notify(describe(worker.error), title="regd", severity="error", timeout=8)  # type: ignore[attr-defined]
