"""``gc.plan`` and ``gc.run``: free blobs nothing needs; with ``keep_last``/``older_than_days``, prune old versions.

A pruned version keeps its row, history and lineage; only its bytes go. Versions that were ever
in production, are in staging, or carry an alias are never pruned.
"""

from __future__ import annotations

import asyncio
import time

from regd.api.methods import Call, handler
from regd.protocol import GcParams, GcResult
from regd.store import integrity
from regd.store.catalog import AuditDraft, ReadTx, StoredArtifact, WriteTx


async def _plan(call: Call, p: GcParams) -> tuple[list[StoredArtifact], integrity.Sweep]:
    d = call.daemon
    cutoff = None
    if p.older_than_days is not None:
        cutoff = int((time.time() - p.older_than_days * 86400) * 1_000_000)
    prune_versions = p.keep_last is not None or p.older_than_days is not None

    def gather(r: ReadTx) -> tuple[list[StoredArtifact], set[str], set[str]]:
        pruned = r.prunable(p.keep_last or 0, cutoff) if prune_versions else []
        referenced = r.referenced_digests() - integrity.digests_of(pruned)
        live_trees = r.live_trees() - {a.digest for a in pruned}
        # a digest a pruned version shares with a live one stays referenced
        referenced |= _still_needed(r, pruned)
        return pruned, referenced, live_trees

    pruned, referenced, live_trees = await d.catalog.read(gather)
    reasons = {dg: f"pruned {a.model}:{a.version}" for a in pruned for dg in integrity.digests_of([a])}
    sweep = await asyncio.to_thread(integrity.plan_sweep, d.blobs, referenced, live_trees, reasons)
    return pruned, sweep


def _still_needed(r: ReadTx, pruned: list[StoredArtifact]) -> set[str]:
    if not pruned:
        return set()
    pruned_ids = {a.version_id for a in pruned}
    live = [a for a in r.artifacts(None, None) if not a.pruned and a.version_id not in pruned_ids and a.store_mode == "copy"]
    return integrity.digests_of(live) & integrity.digests_of(pruned)


@handler("gc.plan")
async def gc_plan(call: Call, p: GcParams) -> GcResult:
    pruned, sweep = await _plan(call, p)
    return GcResult(dry_run=True, blobs=sweep.blobs, bytes=sweep.bytes, versions=[f"{a.model}:{a.version}" for a in pruned])


@handler("gc.run")
async def gc_run(call: Call, p: GcParams) -> GcResult:
    d = call.daemon
    async with d.registrar.blob_lock.exclusive():
        pruned, sweep = await _plan(call, p)

        def record(tx: WriteTx) -> None:
            for art in pruned:
                tx.mark_pruned(art.version_id)
            tx.append_audit(
                AuditDraft(
                    actor=call.actor,
                    action="gc.run",
                    details={
                        "blobs": len(sweep.blobs),
                        "bytes": sweep.bytes,
                        "pruned": [f"{a.model}:{a.version}" for a in pruned],
                        "keep_last": p.keep_last,
                        "older_than_days": p.older_than_days,
                    },
                )
            )

        if pruned or sweep.blobs or sweep.trees:
            # the catalog first: a crash before the deletes leaves orphans the next gc frees, never a dangling row
            await d.catalog.write(record)
            await asyncio.to_thread(integrity.run_sweep, d.blobs, sweep)
    return GcResult(dry_run=False, blobs=sweep.blobs, bytes=sweep.bytes, versions=[f"{a.model}:{a.version}" for a in pruned])
