"""Policy guards: the checks a version must pass before it may enter a stage.

Policies come from config, ``[policy."<model glob>".<stage>]``; every glob matching the model
applies. Each check yields a ``GuardResult`` (rule, passed, detail); a promotion is refused when
any fails, and the refusal lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from regd.config import StagePolicy
from regd.domain import GuardResult, Stage, Version


@dataclass(frozen=True)
class Baseline:
    """What ``max_regression`` compares a candidate with: the production version's number and metrics."""

    version: str
    metrics: dict[str, float]


@dataclass(frozen=True)
class GuardContext:
    """What the checks look at besides the version itself."""

    production: Baseline | None
    """The current production version (for ``max_regression``), if any other than the candidate."""
    approvers: list[str]
    """Distinct approvers of the candidate, registrant excluded."""
    was_staged: bool


def policies_for(policy_table: dict[str, dict[Stage, StagePolicy]], model: str, stage: Stage) -> list[StagePolicy]:
    """Every policy whose glob matches ``model`` for ``stage``."""
    return [stages[stage] for glob, stages in policy_table.items() if fnmatchcase(model, glob) and stage in stages]


def lower_is_better(policies: Iterable[StagePolicy]) -> set[str]:
    return {m for p in policies for m in p.lower_is_better}


def evaluate(policies: list[StagePolicy], version: Version, ctx: GuardContext) -> list[GuardResult]:
    """Run every check of every matching policy; nothing is changed."""
    results: list[GuardResult] = []
    lower = lower_is_better(policies)
    for policy in policies:
        results += _thresholds(policy, version)
        results += _regressions(policy, version, ctx.production, lower)
        if policy.approvals:
            n = len(ctx.approvers)
            results.append(
                GuardResult(
                    rule=f"approvals >= {policy.approvals}",
                    passed=n >= policy.approvals,
                    detail=f"{n} of {policy.approvals} ({', '.join(ctx.approvers) or 'none yet'}; the registrant's own does not count)",
                )
            )
        results += [_requirement(req, version, ctx) for req in policy.require]
    return results


def _thresholds(policy: StagePolicy, version: Version) -> list[GuardResult]:
    out = []
    for bound, limits in (("min", policy.min), ("max", policy.max)):
        for metric, limit in limits.items():
            value = version.metrics.get(metric)
            rule = f"{bound} {metric} {'>=' if bound == 'min' else '<='} {limit:g}"
            if value is None:
                out.append(GuardResult(rule=rule, passed=False, detail=f"{metric} is not recorded on this version"))
                continue
            ok = value >= limit if bound == "min" else value <= limit
            out.append(GuardResult(rule=rule, passed=ok, detail=f"{metric} = {value:g}"))
    return out


def _regressions(policy: StagePolicy, version: Version, production: Baseline | None, lower: set[str]) -> list[GuardResult]:
    out = []
    for metric, epsilon in policy.max_regression.items():
        rule = f"max_regression {metric} {epsilon:g}"
        if production is None:
            out.append(GuardResult(rule=rule, passed=True, detail="no production version to compare with"))
            continue
        new, old = version.metrics.get(metric), production.metrics.get(metric)
        if new is None:
            out.append(GuardResult(rule=rule, passed=False, detail=f"{metric} is not recorded on this version"))
            continue
        if old is None:
            out.append(GuardResult(rule=rule, passed=True, detail=f"production {production.version} has no {metric}"))
            continue
        worse_by = (new - old) if metric in lower else (old - new)
        ok = worse_by <= epsilon
        direction = "lower is better" if metric in lower else "higher is better"
        out.append(
            GuardResult(
                rule=rule, passed=ok,
                detail=f"{metric} {new:g} vs production {production.version} {old:g} ({direction}; worse by {max(worse_by, 0):g})",
            )  # fmt: skip
        )
    return out


def _requirement(req: str, v: Version, ctx: GuardContext) -> GuardResult:
    rule = f"require {req}"
    if req == "env_lock":
        return GuardResult(rule=rule, passed=v.env_lock is not None,
                           detail=f"{v.env_lock.kind} with {len(v.env_lock.packages)} packages" if v.env_lock else "no environment lock was found")  # fmt: skip
    if req == "signature":
        ok = v.signature is not None and not v.signature.is_empty()
        return GuardResult(rule=rule, passed=ok, detail="signature recorded" if ok else f"no signature could be read ({v.artifact.format})")
    if req in ("code_sha", "data_version"):
        value = getattr(v.lineage, req)
        return GuardResult(rule=rule, passed=bool(value), detail=str(value) if value else f"no {req} recorded")
    if req == "description":
        return GuardResult(rule=rule, passed=bool(v.description), detail="present" if v.description else "no description")
    if req == "safe_format":
        ok = not v.unsafe_imports
        return GuardResult(rule=rule, passed=ok,
                           detail=f"{v.artifact.format}: no unsafe pickle imports" if ok else "unsafe pickle imports: " + ", ".join(v.unsafe_imports[:10]))  # fmt: skip
    if req == "staged":
        return GuardResult(rule=rule, passed=ctx.was_staged,
                           detail="was in staging" if ctx.was_staged else "must be promoted to staging first")  # fmt: skip
    return GuardResult(rule=rule, passed=False, detail=f"unknown requirement {req!r}")
