"""The method table: one handler per RPC method, named after it, and the dispatcher over them.

Handlers live in ``api/handlers/`` grouped by noun; each registers itself with ``@handler``.
Dispatch validates params against the protocol model, checks the caller's role, then calls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from regd.api.peercred import Caller
from regd.domain import Role
from regd.errors import MethodNotFound, PermissionDenied
from regd.protocol import METHODS
from regd.store.failures import storage_error

if TYPE_CHECKING:
    from regd.api.daemon import Daemon
    from regd.api.server import Connection

log = logging.getLogger(__name__)
P = TypeVar("P", bound=BaseModel)
Handler = Callable[["Call", Any], Awaitable[Any]]
HANDLERS: dict[str, Handler] = {}


@dataclass
class Call:
    """What a handler gets besides its params: the daemon's services and who is asking."""

    daemon: Daemon
    caller: Caller
    connection: Connection | None = None
    request_id: Any = None
    after_reply: list[Callable[[], None]] = field(default_factory=list)
    """Run once the reply is on the wire (a subscription must not notify before it is answered)."""

    @property
    def actor(self) -> str:
        return self.caller.name


def require_role(call: Call, role: Role, what: str) -> None:
    """Refuse (-32004, naming the role needed) when the caller's role is below ``role``."""
    if call.caller.role.rank < role.rank:
        raise PermissionDenied(
            f"{what} needs the {role.value} role; {call.caller.name} is {call.caller.role.value}",
            {"role": role.value, "actor": call.caller.name, "have": call.caller.role.value},
        )


def handler(name: str) -> Callable[[Callable[[Call, P], Awaitable[Any]]], Callable[[Call, P], Awaitable[Any]]]:
    """Register the handler of RPC method ``name`` (which must be in the protocol table)."""
    if name not in METHODS:
        raise KeyError(f"{name} is not in regd.protocol.METHODS")

    def register(fn: Callable[[Call, P], Awaitable[Any]]) -> Callable[[Call, P], Awaitable[Any]]:
        HANDLERS[name] = fn
        return fn

    return register


def load_handlers() -> dict[str, Handler]:
    """Import every handler module so that the table is complete."""
    from regd.api.handlers import (  # noqa: F401
        aliases,
        audit,
        daemon_status,
        diff,
        events,
        gc,
        lifecycle,
        models,
        verify,
        versions,
        watches,
    )

    return HANDLERS


def bind_params(method: str, raw: Any) -> BaseModel:
    """Validate params (by name, or by position in field order) against the method's model."""
    model = METHODS[method].params
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        names = list(model.model_fields)
        if len(raw) > len(names):
            from regd.errors import InvalidParams

            raise InvalidParams(f"{method} takes at most {len(names)} positional params ({', '.join(names)})")
        raw = dict(zip(names, raw, strict=False))
    return model.model_validate(raw)


async def dispatch(call: Call, method: str, raw_params: Any) -> Any:
    """Run one method for ``call``: unknown -> -32601, bad params -> -32602, weak role -> -32004."""
    fn = HANDLERS.get(method)
    if fn is None:
        raise MethodNotFound(f"no method {method!r}; rpc.discover lists them", {"method": method})
    require_role(call, METHODS[method].role, method)
    params = bind_params(method, raw_params)
    try:
        return await fn(call, params)
    except Exception as exc:
        # a full disk, a read-only data dir or an unreachable database is the machine's state, not a
        # bug: say so (-32002), not -32603; anything else goes on as it was raised
        catalog = call.daemon.catalog
        mapped = storage_error(exc, call.daemon.config.data_dir, getattr(catalog, "path", None), getattr(catalog, "url", None))
        if mapped is None:
            raise
        log.warning("%s refused: %s", method, mapped.message)
        raise mapped from exc
