"""``versions.list``, ``versions.get``, ``versions.search``, ``versions.register``, ``versions.tag``."""

from __future__ import annotations

import asyncio

from regd.api import jsonrpc
from regd.api.methods import Call, handler
from regd.domain import Version
from regd.errors import NotFound
from regd.lifecycle import edits
from regd.protocol import (
    RegisterParams,
    RegisterResult,
    SearchParams,
    TagParams,
    VersionGetParams,
    VersionsListParams,
)
from regd.store.blobs import BlobStore


@handler("versions.list")
async def versions_list(call: Call, p: VersionsListParams) -> jsonrpc.Rendered:
    """A ``Page[VersionSummary]``, its items rendered by the catalog (see ``store/summary_cache.py``)."""
    page = await call.daemon.catalog.read(
        lambda r: r.versions_json(p.name, stage=p.stage, newest_first=p.order == "newest", limit=p.limit, cursor=p.cursor)
    )
    return jsonrpc.page_of_rendered(page.items, page.next_cursor)


@handler("versions.get")
async def versions_get(call: Call, p: VersionGetParams) -> Version:
    version = await call.daemon.catalog.read(lambda r: r.version(r.row(p.name, p.version).id, tensors=p.tensors))
    return await _local(call.daemon.blobs, version, fetch=p.fetch)


async def _local(blobs: BlobStore, version: Version, *, fetch: bool) -> Version:
    """The version with ``stored_path`` on this host: with a team store the catalog holds the path on
    the host that registered it, and the bytes are here only once fetched into the local cache."""
    art = version.artifact
    if not blobs.remote or art.store_mode != "copy":
        return version
    if fetch:
        if any(w.code == "pruned" for w in version.warnings):
            raise NotFound(f"{version.model} {version.version}: its bytes were freed by gc",
                           {"name": version.model, "version": version.version})  # fmt: skip
        files = [(f.path, f.digest) for f in art.files]
        try:
            path = await asyncio.to_thread(blobs.materialise, art.kind, art.digest, files)
        except FileNotFoundError as exc:
            raise NotFound(f"{version.model} {version.version}: {exc}",
                           {"name": version.model, "version": version.version}) from None  # fmt: skip
    else:
        path = blobs.local_path(art.kind, art.digest)
    return version.model_copy(update={"artifact": art.model_copy(update={"stored_path": str(path)})})


@handler("versions.search")
async def versions_search(call: Call, p: SearchParams) -> jsonrpc.Rendered:
    """A ``Page[VersionSummary]``, its items rendered by the catalog (see ``store/summary_cache.py``)."""
    page = await call.daemon.catalog.read(lambda r: r.search_json(p.filter, p.order_by, p.limit, p.cursor))
    return jsonrpc.page_of_rendered(page.items, page.next_cursor)


@handler("versions.register")
async def versions_register(call: Call, p: RegisterParams) -> RegisterResult:
    explicit = p.metadata.model_dump(exclude_none=True) if p.metadata else None
    on_progress = None
    conn, req_id = call.connection, call.request_id
    if p.progress and conn is not None and req_id is not None:
        loop = asyncio.get_running_loop()
        last = [0.0]

        def on_progress(done: int, total: int) -> None:
            # called from the hashing thread: hop to the loop, and at most a few updates a second
            now = loop.time()
            if now - last[0] < 0.1 and done < total:
                return
            last[0] = now
            line = jsonrpc.notification("progress", {"id": req_id, "done": done, "total": total})
            loop.call_soon_threadsafe(lambda: conn.spawn(conn.send(line)))

    version, created = await call.daemon.registrar.register(
        p.path, actor=call.actor, name=p.name, explicit=explicit, on_progress=on_progress, caller=call.caller
    )
    return RegisterResult(version=version, created=created)


@handler("versions.tag")
async def versions_tag(call: Call, p: TagParams) -> Version:
    return await call.daemon.catalog.write(
        lambda tx: edits.tag(tx, p.name, p.version, dict(p.set or {}), list(p.remove or []), call.actor)
    )
