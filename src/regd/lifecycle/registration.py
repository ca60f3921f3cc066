"""Recording a prepared artifact as a new version: dedupe, numbering, audit, in one transaction."""

from __future__ import annotations

from regd.domain import Version
from regd.errors import NotFound
from regd.lifecycle import semver
from regd.store.catalog import AuditDraft, VersionDraft, WriteTx


def record(tx: WriteTx, draft: VersionDraft, actor: str) -> tuple[Version, bool]:
    """Insert ``draft`` unless its bytes are already a version of the model; say which it is."""
    model_id = tx.ensure_model(draft.name, actor)
    known = tx.row_by_digest(model_id, draft.digest)
    if known is not None:
        return tx.version(known.id), False
    if draft.pinned_version:
        try:
            tx.row(draft.name, draft.pinned_version)
            taken = True
        except NotFound:
            taken = False
        number = semver.check_pinned(draft.name, draft.pinned_version, taken)
    else:
        number = semver.next_version(tx.latest_row(model_id), draft.signature_digest)
    version_id = tx.insert_version(model_id, number, draft)
    version = tx.version(version_id)
    tx.append_audit(
        AuditDraft(
            actor=actor,
            action="version.registered",
            model=draft.name,
            version=version.version,
            details={
                "digest": draft.digest,
                "size": draft.size,
                "format": draft.format,
                "source": draft.source_path,
                "warnings": [w.code for w in draft.warnings],
            },
        )
    )
    for warning in draft.warnings:
        if warning.code == "sidecar_invalid":
            tx.append_audit(
                AuditDraft(actor=actor, action="sidecar.invalid", model=draft.name, version=version.version,
                           details={"message": warning.message})  # fmt: skip
            )
    return version, True
