"""JSON-RPC 2.0 as the specification says it: requests, notifications, batches, and errors.

One place maps exceptions to codes: ``RegdError`` -> its code; pydantic ``ValidationError`` ->
-32602 with the error list in ``data``; anything else -> -32603, logged, the daemon still up.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from regd.domain import json_text
from regd.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    RegdError,
)

log = logging.getLogger(__name__)

_MISSING = object()
Dispatch = Callable[[str, Any, Any], Awaitable[Any]]
"""(method, params, request id) -> result; raises to answer an error."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads(raw: bytes | str) -> Any:
    """Parse strict JSON: Python's NaN, Infinity and numbers that overflow to infinity are refused.

    Accepting them would echo non-JSON back (an ``id`` of NaN) that jq, JavaScript or Go cannot read.
    """
    return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)


def _unicode_ok(value: str) -> bool:
    """False for a string holding a lone surrogate (``"\\ud800"``), which cannot be sent as UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)
# one encoder for every reply: json.dumps with options builds a new JSONEncoder per call


def _dumps(obj: Any) -> str:
    if type(obj) is int:  # the usual request id
        return str(obj)
    return _ENCODER.encode(obj)


def error_response(req_id: Any, code: int, message: str, data: Any = None) -> str:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return _dumps({"jsonrpc": "2.0", "id": req_id, "error": err})


class Rendered:
    """A result already rendered as JSON text (a page of cached summaries), sent as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def page_of_rendered(items: list[str], next_cursor: str | None) -> Rendered:
    """A ``Page`` whose items are JSON texts: the same bytes ``Page.model_dump_json()`` would give."""
    return Rendered(f'{{"items":[{",".join(items)}],"next_cursor":{_dumps(next_cursor)}}}')


def _body(value: Any) -> str:
    if type(value) is Rendered:
        return value.text
    if not isinstance(value, BaseModel):
        return _dumps(value)
    return json_text(value)


def result_response(req_id: Any, result: Any) -> str:
    return f'{{"jsonrpc":"2.0","id":{_dumps(req_id)},"result":{_body(result)}}}'


def notification(method: str, params: Any) -> str:
    return f'{{"jsonrpc":"2.0","method":{_dumps(method)},"params":{_body(params)}}}'


def validation_data(exc: ValidationError) -> list[dict[str, Any]]:
    """The pydantic error list, without echoing the (possibly huge or hostile) input back."""
    return json.loads(_dumps(exc.errors(include_url=False, include_input=False)))


def exception_to_error(req_id: Any, exc: BaseException) -> str:
    """Map any exception raised while handling a request to its JSON-RPC error."""
    if isinstance(exc, RegdError):
        return error_response(req_id, exc.code, exc.message, exc.data)
    if isinstance(exc, ValidationError):
        return error_response(req_id, INVALID_PARAMS, "invalid params", validation_data(exc))
    log.error("internal error handling request %r", req_id, exc_info=exc)
    return error_response(req_id, INTERNAL_ERROR, f"internal error: {type(exc).__name__}")


async def handle_message(raw: bytes, dispatch: Dispatch) -> str | None:
    """Answer one line: a request, a notification or a batch; None when nothing is owed."""
    try:
        msg = loads(raw)
    except (ValueError, RecursionError) as exc:
        return error_response(None, PARSE_ERROR, f"parse error: {exc}" if isinstance(exc, ValueError) else "parse error: too deeply nested")
    if isinstance(msg, list):
        if not msg:
            return error_response(None, INVALID_REQUEST, "invalid request: empty batch")
        answers = [a for a in [await _handle_one(m, dispatch) for m in msg] if a is not None]
        return f"[{','.join(answers)}]" if answers else None
    return await _handle_one(msg, dispatch)


async def _handle_one(msg: Any, dispatch: Dispatch) -> str | None:
    if not isinstance(msg, dict):
        return error_response(None, INVALID_REQUEST, "invalid request: expected an object")
    req_id = msg.get("id", _MISSING)
    id_ok = req_id is _MISSING or req_id is None or (isinstance(req_id, (str, int, float)) and not isinstance(req_id, bool))
    id_ok = id_ok and not (isinstance(req_id, str) and not _unicode_ok(req_id))  # it must be echoed as UTF-8
    reply_id = req_id if id_ok and req_id is not _MISSING else None
    problem = None
    if msg.get("jsonrpc") != "2.0":
        problem = 'invalid request: "jsonrpc" must be "2.0"'
    elif not isinstance(msg.get("method"), str):
        problem = 'invalid request: "method" must be a string'
    elif not id_ok:
        problem = 'invalid request: "id" must be a string (valid Unicode), a number or null'
    elif "params" in msg and not isinstance(msg["params"], (dict, list)):
        problem = 'invalid request: "params" must be an object or an array'
    elif set(msg) - {"jsonrpc", "method", "params", "id"}:
        problem = f"invalid request: unknown members {sorted(set(msg) - {'jsonrpc', 'method', 'params', 'id'})}"
    if problem:
        return error_response(reply_id, INVALID_REQUEST, problem)
    is_notification = req_id is _MISSING
    try:
        result = await dispatch(msg["method"], msg.get("params"), None if is_notification else req_id)
    except Exception as exc:  # every failure becomes an answer; the connection and daemon live on
        return None if is_notification else exception_to_error(req_id, exc)
    return None if is_notification else result_response(req_id, result)
