"""``versions.verify``: rehash stored artifacts and report ok, missing, corrupt or changed."""

from __future__ import annotations

import asyncio

from regd.api.methods import Call, handler
from regd.protocol import VerifyParams, VerifyResult
from regd.store import integrity


@handler("versions.verify")
async def versions_verify(call: Call, p: VerifyParams) -> VerifyResult:
    d = call.daemon
    artifacts = await d.catalog.read(lambda r: r.artifacts(p.name, p.version if p.name else None))
    items = []
    for art in artifacts:
        # one artifact per thread hop: a large store verifies without starving other requests
        items.append(await asyncio.to_thread(integrity.verify_artifact, d.blobs, art))
    return VerifyResult(ok=all(i.status in ("ok", "pruned") for i in items), checked=len(items), items=items)
