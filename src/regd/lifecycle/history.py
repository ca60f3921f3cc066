"""A model's timeline: every stage change and alias move, newest first."""

from __future__ import annotations

from regd.protocol import HistoryEntry, HistoryResult
from regd.store.catalog import ReadTx


def history(r: ReadTx, name: str) -> HistoryResult:
    """Merge the stage history and the alias history of ``name`` into one timeline."""
    model_id = r.model_id(name)
    items = [
        HistoryEntry(at=h.at, kind="stage", version=h.version, from_=h.from_stage.value, to=h.to_stage.value,
                     action=h.action, actor=h.actor, reason=h.reason)  # fmt: skip
        for h in r.stage_history(model_id)
    ] + [
        HistoryEntry(at=a.at, kind="alias", alias=a.alias, version=a.to_version or a.from_version,
                     from_=a.from_version, to=a.to_version, action="alias.set" if a.to_version else "alias.deleted",
                     actor=a.actor, reason=a.reason)  # fmt: skip
        for a in r.alias_history(model_id)
    ]
    # equal timestamps keep their order of insertion (stable sort), newest first overall
    items.sort(key=lambda e: e.at, reverse=True)
    return HistoryResult(name=name, items=items)
