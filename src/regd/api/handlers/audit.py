"""``audit.list``."""

from __future__ import annotations

from regd.api.methods import Call, handler
from regd.domain import AuditEvent
from regd.protocol import AuditListParams, AuditVerifyResult, NoParams, Page
from regd.store import auditchain


@handler("audit.list")
async def audit_list(call: Call, p: AuditListParams) -> Page[AuditEvent]:
    page = await call.daemon.catalog.read(
        lambda r: r.audit(
            model=p.name, version=p.version, actor=p.actor, action=p.action, since=p.since, limit=p.limit,
            cursor=p.cursor,
        )  # fmt: skip
    )
    return Page[AuditEvent](items=page.items, next_cursor=page.next_cursor)


@handler("audit.verify")
async def audit_verify(call: Call, _: NoParams) -> AuditVerifyResult:
    """Walk the chain in pages, recomputing every row's hash from its content and the hash before."""
    prev, rows, after = auditchain.GENESIS, 0, 0
    while True:
        page = await call.daemon.catalog.read(lambda r, a=after: r.audit_chain(a, 5000))
        if not page:
            return AuditVerifyResult(ok=True, rows=rows)
        for event in page:
            if event.prev_hash != prev:
                return AuditVerifyResult(
                    ok=False, rows=rows, first_broken=event.id,
                    detail=f"row {event.id} does not follow the row before it (a row was removed or reordered)",
                )  # fmt: skip
            expected = auditchain.row_hash(prev, auditchain.content_of_event(event))
            if event.hash != expected:
                return AuditVerifyResult(
                    ok=False, rows=rows, first_broken=event.id, detail=f"row {event.id} was edited after it was written"
                )
            prev = event.hash
            rows += 1
            after = event.id
