"""``aliases.set`` and ``aliases.delete``."""

from __future__ import annotations

from regd.api.methods import Call, handler
from regd.lifecycle import edits
from regd.protocol import AliasDeleteParams, AliasSetParams, ModelAliases


@handler("aliases.set")
async def aliases_set(call: Call, p: AliasSetParams) -> ModelAliases:
    return await call.daemon.catalog.write(
        lambda tx: edits.set_alias(tx, p.name, p.alias, p.version, call.actor, p.reason)
    )


@handler("aliases.delete")
async def aliases_delete(call: Call, p: AliasDeleteParams) -> ModelAliases:
    return await call.daemon.catalog.write(lambda tx: edits.delete_alias(tx, p.name, p.alias, call.actor, p.reason))
