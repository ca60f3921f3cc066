"""The stage machine: none, staging, production, archived, and which moves are legal.

    none ──► staging ──► production ──► archived
      │         │  ▲                       │
      │         ▼  └──── (re-validated) ───┘
      └──────► production      archived ──► production only by rollback

At most one production version per model: promoting one archives the previous one in the same
transaction (see ``promotion``).
"""

from __future__ import annotations

from regd.domain import Stage
from regd.errors import InvalidTransition

_ALLOWED: dict[Stage, tuple[Stage, ...]] = {
    Stage.NONE: (Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED),
    Stage.STAGING: (Stage.PRODUCTION, Stage.ARCHIVED),
    Stage.PRODUCTION: (Stage.ARCHIVED,),
    Stage.ARCHIVED: (Stage.STAGING,),
}


def allowed(current: Stage) -> tuple[Stage, ...]:
    """The stages a version in ``current`` may move to by promotion or archiving."""
    return _ALLOWED[current]


def check_transition(name: str, version: str, current: Stage, target: Stage) -> None:
    """Raise -32005 naming the legal targets when ``current -> target`` is not one of them."""
    if target in _ALLOWED[current]:
        return
    legal = [s.value for s in _ALLOWED[current]]
    if current == target:
        why = f"{name} {version} is already in {target.value}"
    elif current == Stage.ARCHIVED and target == Stage.PRODUCTION:
        why = f"{name} {version} is archived: it returns to production only by rollback (`regd rollback {name} --to {version}`)"
    else:
        why = f"{name} {version} cannot move from {current.value} to {target.value}"
    raise InvalidTransition(
        f"{why}; allowed from {current.value}: {', '.join(legal) or 'nothing'}",
        {"name": name, "version": version, "from": current.value, "to": target.value, "allowed": legal},
    )
