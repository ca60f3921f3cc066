"""``models.list``, ``models.get``, ``models.deprecate``."""

from __future__ import annotations

from regd.api.methods import Call, handler
from regd.domain import Model
from regd.lifecycle import edits
from regd.protocol import DeprecateParams, ModelParams, ModelsListParams, Page


@handler("models.list")
async def models_list(call: Call, p: ModelsListParams) -> Page[Model]:
    tag = tuple(p.tag.split("=", 1)) if p.tag else None
    page = await call.daemon.catalog.read(
        lambda r: r.models(
            query=p.query, stage=p.stage, tag=tag, include_deprecated=p.include_deprecated,  # type: ignore[arg-type]
            limit=p.limit, cursor=p.cursor,
        )  # fmt: skip
    )
    return Page[Model](items=page.items, next_cursor=page.next_cursor)


@handler("models.get")
async def models_get(call: Call, p: ModelParams) -> Model:
    return await call.daemon.catalog.read(lambda r: r.model(p.name))


@handler("models.deprecate")
async def models_deprecate(call: Call, p: DeprecateParams) -> Model:
    return await call.daemon.catalog.write(lambda tx: edits.deprecate(tx, p.name, p.reason, call.actor))
