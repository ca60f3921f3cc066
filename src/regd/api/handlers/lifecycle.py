"""``versions.check``, ``versions.promote``, ``versions.approve``, ``versions.archive``,
``models.rollback``, ``models.history``: the governed changes and their timeline."""

from __future__ import annotations

from regd.api.methods import Call, handler, require_role
from regd.domain import Role, Stage, Version
from regd.lifecycle import guards, history, promotion
from regd.protocol import (
    ApprovalsResult,
    ApproveParams,
    ArchiveParams,
    CheckResult,
    HistoryResult,
    ModelParams,
    PromoteParams,
    PromoteResult,
    RollbackParams,
    RollbackResult,
    StageParams,
)


@handler("versions.check")
async def versions_check(call: Call, p: StageParams) -> CheckResult:
    policies = guards.policies_for(call.daemon.config.policy, p.name, p.stage)
    return await call.daemon.catalog.read(lambda r: promotion.check(r, p.name, p.version, p.stage, policies))


@handler("versions.promote")
async def versions_promote(call: Call, p: PromoteParams) -> PromoteResult:
    if p.stage == Stage.PRODUCTION:
        require_role(call, Role.APPROVER, "promoting to production")
    if p.force:
        require_role(call, Role.ADMIN, "force")
    policies = guards.policies_for(call.daemon.config.policy, p.name, p.stage)
    outcome = await call.daemon.catalog.write(
        lambda tx: promotion.promote(
            tx, p.name, p.version, p.stage, reason=p.reason, actor=call.actor, force=p.force, policies=policies
        )
    )
    return outcome.unwrap()


@handler("versions.approve")
async def versions_approve(call: Call, p: ApproveParams) -> ApprovalsResult:
    return await call.daemon.catalog.write(lambda tx: promotion.approve(tx, p.name, p.version, note=p.note, actor=call.actor))


@handler("versions.archive")
async def versions_archive(call: Call, p: ArchiveParams) -> Version:
    current = await call.daemon.catalog.read(lambda r: r.row(p.name, p.version))
    if current.stage == Stage.PRODUCTION:
        require_role(call, Role.APPROVER, "archiving the production version")
    return await call.daemon.catalog.write(lambda tx: promotion.archive(tx, p.name, p.version, reason=p.reason, actor=call.actor))


@handler("models.rollback")
async def models_rollback(call: Call, p: RollbackParams) -> RollbackResult:
    return await call.daemon.catalog.write(lambda tx: promotion.rollback(tx, p.name, p.to, reason=p.reason, actor=call.actor))


@handler("models.history")
async def models_history(call: Call, p: ModelParams) -> HistoryResult:
    return await call.daemon.catalog.read(lambda r: history.history(r, p.name))
