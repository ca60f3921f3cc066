"""The errors regd raises and returns, each carrying its JSON-RPC code.

    RegdError                  -32603 (internal) unless a subclass says otherwise
    ├── NotFound               -32001  a model, version, alias, path or reference that does not exist
    ├── Conflict               -32002  a pinned version already taken, a daemon already running ...
    │   └── StorageError       -32002  the data dir cannot take the change: no space, read-only, no permission
    ├── GuardFailed            -32003  a promotion refused by policy; ``checks`` lists every result
    ├── PermissionDenied       -32004  the caller's role is not enough; ``role`` names the one needed
    ├── InvalidTransition      -32005  a stage change the state machine forbids; ``allowed`` lists the legal ones
    ├── InvalidParams          -32602  params that parse but make no sense (a bad filter, a bad path)
    └── Unreachable            (client side only) no daemon answers on the socket

This module is imported by the client, so it must stay free of pydantic and anything heavy: the
CLI's one-shot commands have a 150 ms budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RegdError(Exception):
    """Base of every error regd reports; ``code`` is the JSON-RPC error code."""

    code: ClassVar[int] = INTERNAL_ERROR

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        """Render as a JSON-RPC error object."""
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err

    @staticmethod
    def from_error(error: dict[str, Any]) -> RegdError:
        """Turn a JSON-RPC error object back into the matching class (the client's side)."""
        code = error.get("code", INTERNAL_ERROR)
        cls = _BY_CODE.get(code, RegdError)
        data = error.get("data")
        if cls is Conflict and isinstance(data, dict) and "storage" in data:
            cls = StorageError  # the same code; its data says the machine's storage refused
        exc = cls(str(error.get("message", "")), data)
        if exc.code != code:  # a code we have no class for (-32603, or a newer daemon's)
            exc.code = code  # type: ignore[misc]
        return exc


class NotFound(RegdError):
    """A model, version, alias or path that does not exist."""

    code = -32001


class Conflict(RegdError):
    """The change clashes with what is already there."""

    code = -32002


class StorageError(Conflict):
    """The data dir cannot take the change (no space left, read-only, permission denied); nothing was changed.

    ``data["storage"]`` says which (``no_space``, ``read_only``, ``permission_denied``, ``io_error``; with a
    PostgreSQL catalog also ``insufficient_resources`` and ``unreachable``) and ``data["path"]`` (or
    ``data["catalog"]``) where. A conflict with the state of the machine rather than a bug: it is refused
    with -32002 and succeeds once the condition is fixed.
    """


class GuardFailed(RegdError):
    """A policy refused the promotion; ``data["checks"]`` holds every guard result."""

    code = -32003

    @property
    def checks(self) -> list[dict[str, Any]]:
        return list((self.data or {}).get("checks", []))


class PermissionDenied(RegdError):
    """The caller's role does not allow this method."""

    code = -32004


class InvalidTransition(RegdError):
    """The stage machine forbids this change; ``data["allowed"]`` lists the legal targets."""

    code = -32005


class InvalidParams(RegdError):
    """Params that are well-formed JSON but unusable: a filter syntax error, a path we refuse."""

    code = INVALID_PARAMS


class InvalidRequest(RegdError):
    """A message that is not a valid JSON-RPC request."""

    code = INVALID_REQUEST


class MethodNotFound(RegdError):
    """No such method (or one of a later milestone)."""

    code = METHOD_NOT_FOUND


class ParseError(RegdError):
    """The message is not JSON."""

    code = PARSE_ERROR


class Unreachable(RegdError):
    """No daemon answers on the socket (client side; the CLI exits 3)."""

    code = INTERNAL_ERROR


_BY_CODE: dict[int, type[RegdError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        Conflict,
        GuardFailed,
        PermissionDenied,
        InvalidTransition,
        InvalidParams,
        InvalidRequest,
        MethodNotFound,
        ParseError,
    )
}
