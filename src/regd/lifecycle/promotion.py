"""Stage changes as single transactions: check, promote, approve, archive, roll back.

Each function runs inside ``Catalog.write``: the stage change, the demotion of the previous
production version, the history rows and the audit rows commit together or not at all. A guard
refusal still commits its ``guard.failed`` audit row: the function returns an ``Outcome`` with
the error for the caller to raise after the commit, instead of raising (which would roll the
audit row back with everything else).
"""

from __future__ import annotations

from dataclasses import dataclass

from regd.config import StagePolicy
from regd.domain import GuardResult, Stage, Version
from regd.errors import GuardFailed, InvalidTransition, PermissionDenied
from regd.lifecycle import guards, stages
from regd.protocol import Approval, ApprovalsResult, CheckResult, PromoteResult, RollbackResult
from regd.store.catalog import AuditDraft, ReadTx, VersionRow, WriteTx


@dataclass
class Outcome:
    """A change's result, or the refusal to raise once its audit row is committed."""

    result: PromoteResult | None = None
    refusal: GuardFailed | None = None

    def unwrap(self) -> PromoteResult:
        if self.refusal is not None:
            raise self.refusal
        assert self.result is not None
        return self.result


def _context(
    r: ReadTx, row: VersionRow, policies: list[StagePolicy], production: VersionRow | None
) -> guards.GuardContext:
    """What the guards of ``policies`` look at, read only when one of them looks (each is a query)."""
    regression = any(p.max_regression for p in policies)
    prod = None
    if regression and production is not None and production.id != row.id:
        prod = guards.Baseline(production.version, r.metrics_of(production.id))  # not a whole version read
    approvers = (
        sorted({a for a, _, _ in r.approvals(row.id) if a != row.created_by}) if any(p.approvals for p in policies) else []
    )
    staged = row.stage == Stage.STAGING or (
        any("staged" in p.require for p in policies) and r.was_in_stage(row.id, Stage.STAGING)
    )
    return guards.GuardContext(production=prod, approvers=approvers, was_staged=staged)


def check(r: ReadTx, name: str, ref: str, stage: Stage, policies: list[StagePolicy]) -> CheckResult:
    """Run the guards for ``name:ref -> stage`` and change nothing (the transition is checked too)."""
    row, version, current = r.promotion_subject(name, ref)
    results: list[GuardResult] = []
    try:
        stages.check_transition(name, row.version, row.stage, stage)
        results.append(GuardResult(rule="transition", passed=True, detail=f"{row.stage.value} -> {stage.value}"))
    except InvalidTransition as exc:
        results.append(GuardResult(rule="transition", passed=False, detail=exc.message))
    results += guards.evaluate(policies, version, _context(r, row, policies, current))
    return CheckResult(name=name, version=row.version, stage=stage, passed=all(c.passed for c in results), checks=results)


def promote(
    tx: WriteTx,
    name: str,
    ref: str,
    stage: Stage,
    *,
    reason: str,
    actor: str,
    force: bool,
    policies: list[StagePolicy],
) -> Outcome:
    """Move a version to staging or production, archiving the production version it replaces."""
    if stage not in (Stage.STAGING, Stage.PRODUCTION):
        raise InvalidTransition(
            f"promote moves versions to staging or production, not {stage.value} (use archive)",
            {"allowed": ["staging", "production"]},
        )
    row, version, current = tx.promotion_subject(name, ref)
    stages.check_transition(name, row.version, row.stage, stage)
    checks = guards.evaluate(policies, version, _context(tx, row, policies, current))
    failed = [c for c in checks if not c.passed]
    if failed and not force:
        tx.append_audit(
            AuditDraft(actor=actor, action="guard.failed", model=name, version=row.version, from_=row.stage.value,
                       to=stage.value, reason=reason, details={"failed": [c.model_dump() for c in failed]})  # fmt: skip
        )
        return Outcome(
            refusal=GuardFailed(
                f"{name} {row.version} -> {stage.value} refused: {len(failed)} of {len(checks)} checks failed",
                {"checks": [c.model_dump() for c in checks], "name": name, "version": row.version},
            )
        )
    demoted = None
    if stage == Stage.PRODUCTION:
        if current is not None:
            tx.set_stage(current, Stage.ARCHIVED, action="demote", actor=actor, reason=f"replaced by {row.version}: {reason}")
            tx.append_audit(
                AuditDraft(actor=actor, action="version.stage", model=name, version=current.version,
                           from_=Stage.PRODUCTION.value, to=Stage.ARCHIVED.value, reason=reason,
                           details={"replaced_by": row.version, "action": "demote"})  # fmt: skip
            )
            demoted = current.version
    tx.set_stage(row, stage, action="force" if failed else "promote", actor=actor, reason=reason)
    rolled_back = row.rolled_back
    if stage == Stage.PRODUCTION and row.rolled_back:
        tx.mark_rolled_back(row.id, False)  # promoted again on purpose: no longer skipped by rollback
        rolled_back = False
    details: dict[str, object] = {"action": "promote", "checks": len(checks)}
    if demoted:
        details["demoted"] = demoted
    if failed:
        details["forced_past"] = [c.model_dump() for c in failed]
    tx.append_audit(
        AuditDraft(actor=actor, action="version.force" if failed else "version.stage", model=name, version=row.version,
                   from_=row.stage.value, to=stage.value, reason=reason, details=details)  # fmt: skip
    )
    return Outcome(
        result=PromoteResult(
            # the version read above with what this change made of it, not read a second time
            version=version.model_copy(update={"stage": stage, "rolled_back": rolled_back}),
            from_=row.stage, to=stage, demoted=demoted, checks=checks, forced=bool(failed),
        )  # fmt: skip
    )


def archive(tx: WriteTx, name: str, ref: str, *, reason: str, actor: str) -> Version:
    """Archive a version (a production version leaves the model without one)."""
    row = tx.row(name, ref)
    stages.check_transition(name, row.version, row.stage, Stage.ARCHIVED)
    tx.set_stage(row, Stage.ARCHIVED, action="archive", actor=actor, reason=reason)
    tx.append_audit(
        AuditDraft(actor=actor, action="version.archived", model=name, version=row.version, from_=row.stage.value,
                   to=Stage.ARCHIVED.value, reason=reason)  # fmt: skip
    )
    return tx.version(row.id)


def approve(tx: WriteTx, name: str, ref: str, *, note: str | None, actor: str) -> ApprovalsResult:
    """Record ``actor``'s approval of a version; the registrant cannot approve their own."""
    row = tx.row(name, ref)
    if actor == row.created_by:
        raise PermissionDenied(
            f"{actor} registered {name} {row.version} and cannot approve it: approvals must come from someone else",
            {"role": "approver", "actor": actor, "registrant": row.created_by},
        )
    if tx.add_approval(row.id, actor, note):
        tx.append_audit(
            AuditDraft(actor=actor, action="version.approved", model=name, version=row.version, reason=note)
        )
    return ApprovalsResult(
        name=name,
        version=row.version,
        approvals=[Approval(approver=a, at=at, note=n) for a, at, n in tx.approvals(row.id)],
    )


def rollback(tx: WriteTx, name: str, to: str | None, *, reason: str, actor: str) -> RollbackResult:
    """Put back the previous production version (from the stage history) and archive the current one."""
    model_id = tx.model_id(name)
    current = tx.production_row(model_id)
    history = tx.production_history(model_id)  # only the moves into production, not the whole history
    ever_production = [vid for vid, _, _ in history]
    if to is not None:
        target = tx.row(name, to)
        if target.id not in ever_production:
            raise InvalidTransition(
                f"{name} {target.version} was never in production: rollback only returns to earlier production versions",
                {"name": name, "version": target.version, "allowed": _previous_versions(history, current)},
            )
        if current is not None and target.id == current.id:
            raise InvalidTransition(f"{name} {target.version} is already in production", {"allowed": []})
    else:
        target_id = _previous_production(history, current)
        if target_id is None:
            raise InvalidTransition(
                f"{name} has no earlier production version to roll back to", {"name": name, "allowed": []}
            )
        target = tx.row_by_id(target_id)
    archived = None
    if current is not None:
        tx.set_stage(current, Stage.ARCHIVED, action="rolled_back", actor=actor, reason=reason)
        tx.mark_rolled_back(current.id)
        archived = current.version
    tx.set_stage(target, Stage.PRODUCTION, action="rollback", actor=actor, reason=reason)
    tx.append_audit(
        AuditDraft(actor=actor, action="version.rolled_back", model=name, version=target.version, from_=archived,
                   to=target.version, reason=reason, details={"archived": archived, "restored": target.version})  # fmt: skip
    )
    return RollbackResult(restored=tx.version(target.id), archived=tx.version(current.id) if current is not None else None)


def _previous_production(history: list[tuple[int, str, bool]], current: VersionRow | None) -> int | None:
    """The version in production before the current one, skipping versions rolled back as bad."""
    for version_id, _, rolled_back in reversed(history):
        if current is not None and version_id == current.id:
            continue
        if not rolled_back:
            return version_id
    return None


def _previous_versions(history: list[tuple[int, str, bool]], current: VersionRow | None) -> list[str]:
    seen: list[str] = []
    for version_id, version, _ in reversed(history):
        if current is not None and version_id == current.id:
            continue
        if version not in seen:
            seen.append(version)
    return seen
