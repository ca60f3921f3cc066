"""``versions.verify``: rehash stored artifacts and report ok, missing, corrupt or changed."""

from __future__ import annotations

import asyncio

from regd.api.methods import Call, handler, require_role
from regd.domain import Role
from regd.protocol import VerifyParams, VerifyResult
from regd.store import integrity
from regd.store.catalog import AuditDraft


@handler("versions.verify")
async def versions_verify(call: Call, p: VerifyParams) -> VerifyResult:
    d = call.daemon
    if p.repair:
        require_role(call, Role.CONTRIBUTOR, "verify --repair")
    artifacts = await d.catalog.read(lambda r: r.artifacts(p.name, p.version if p.name else None))
    items = []
    for art in artifacts:
        # one artifact per thread hop: a large store verifies without starving other requests
        item = await asyncio.to_thread(integrity.verify_artifact, d.blobs, art)
        if p.repair and item.status in ("missing", "corrupt"):
            async with d.registrar.blob_lock.shared():
                item = await asyncio.to_thread(integrity.repair_artifact, d.blobs, art, item)
            if item.status == "repaired":
                await d.catalog.write(
                    lambda tx, i=item: tx.append_audit(
                        AuditDraft(actor=call.actor, action="blob.repaired", model=i.model, version=i.version,
                                   details={"digest": i.digest, "detail": i.detail})  # fmt: skip
                    )
                )
        items.append(item)
    return VerifyResult(ok=all(i.status in ("ok", "pruned", "repaired") for i in items), checked=len(items), items=items)
