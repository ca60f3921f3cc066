"""``daemon.status`` and ``rpc.discover``."""

from __future__ import annotations

import os
from typing import Any

from regd import __version__
from regd.api.methods import HANDLERS, Call, handler
from regd.config import ConfigError
from regd.errors import Conflict
from regd.protocol import Counts, DaemonStatus, NoParams, ReloadResult, openrpc_document

_discover_cache: dict[str, Any] = {}


@handler("daemon.status")
async def daemon_status(call: Call, _: NoParams) -> DaemonStatus:
    d = call.daemon
    models, versions = await d.catalog.read(lambda r: r.counts())
    return DaemonStatus(
        version=__version__,
        pid=os.getpid(),
        uptime_s=round(d.uptime_s, 3),
        data_dir=str(d.config.data_dir),
        socket=str(d.config.socket_path),
        catalog=d.catalog.url,
        objects=d.config.objects,
        store_mode=d.config.store.mode,
        config=str(d.config.source) if d.config.source else None,
        watches=d.registrar.watch_states(),
        counts=Counts(models=models, versions=versions),
        ingest=d.registrar.tracker.snapshot(),
        hook_failures=list(d.hook_failures),
        subscribers=d.bus.subscribers,
        actor=call.caller.name,
        role=call.caller.role,
    )


@handler("rpc.discover")
async def rpc_discover(call: Call, _: NoParams) -> dict[str, Any]:
    # the document only changes with the code: build it once per daemon
    if "doc" not in _discover_cache:
        _discover_cache["doc"] = openrpc_document(__version__, set(HANDLERS))
    return _discover_cache["doc"]


@handler("daemon.reload")
async def daemon_reload(call: Call, _: NoParams) -> ReloadResult:
    try:
        source = await call.daemon.reload()
    except ConfigError as exc:
        raise Conflict(f"config refused, the previous one stays in force: {exc}") from None
    return ReloadResult(source=source)
