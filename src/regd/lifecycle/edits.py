"""Edits that are not stage changes: tags, aliases and deprecation, each audited."""

from __future__ import annotations

from regd.domain import Model, Version
from regd.protocol import ModelAliases
from regd.store.catalog import AuditDraft, WriteTx


def tag(tx: WriteTx, name: str, ref: str, set_: dict[str, str], remove: list[str], actor: str) -> Version:
    """Set and remove tags on one version."""
    row = tx.row(name, ref)
    before = tx.version(row.id).tags
    tx.set_tags(row.id, set_, remove)
    changed = {k: v for k, v in set_.items() if before.get(k) != v}
    removed = [k for k in remove if k in before]
    if changed or removed:
        tx.append_audit(
            AuditDraft(actor=actor, action="version.tagged", model=name, version=row.version,
                       details={"set": changed, "removed": removed})  # fmt: skip
        )
    return tx.version(row.id)


def set_alias(tx: WriteTx, name: str, alias: str, ref: str, actor: str, reason: str | None) -> ModelAliases:
    """Point ``alias`` at a version, recording the move in the alias history."""
    row = tx.row(name, ref)
    aliases = tx.aliases_of(row.model_id)  # before the move: it names the version the alias leaves
    previous = tx.set_alias(row.model_id, alias, row.id, actor, reason)
    if previous != row.id:
        tx.append_audit(
            AuditDraft(actor=actor, action="alias.set", model=name, version=row.version, from_=aliases.get(alias),
                       to=row.version, reason=reason, details={"alias": alias})  # fmt: skip
        )
    aliases[alias] = row.version
    return ModelAliases(name=name, aliases=dict(sorted(aliases.items())))


def delete_alias(tx: WriteTx, name: str, alias: str, actor: str, reason: str | None) -> ModelAliases:
    """Remove an alias (its history stays)."""
    model_id = tx.model_id(name)
    previous = tx.row_by_id(tx.delete_alias(model_id, alias, actor, reason)).version
    tx.append_audit(
        AuditDraft(actor=actor, action="alias.deleted", model=name, version=previous, from_=previous, reason=reason,
                   details={"alias": alias})  # fmt: skip
    )
    return ModelAliases(name=name, aliases=tx.aliases_of(model_id))


def deprecate(tx: WriteTx, name: str, reason: str, actor: str) -> Model:
    """Mark a model deprecated: hidden from lists by default, still fully readable."""
    model_id = tx.model_id(name)
    tx.deprecate(model_id, reason)
    tx.append_audit(AuditDraft(actor=actor, action="model.deprecated", model=name, reason=reason))
    return tx.model(name)
