"""``versions.diff`` and ``lineage.get``: what changed between two versions, and where one came from."""

from __future__ import annotations

import asyncio
from pathlib import Path

from regd.api.methods import Call, handler
from regd.diffmodel import Diff
from regd.domain import Role, Stage, Version
from regd.errors import InvalidParams, NotFound, PermissionDenied
from regd.ingest.probe import probe
from regd.lifecycle import diff, diff_files, guards
from regd.lifecycle.lineage import lineage
from regd.protocol import DiffParams, LineageParams, LineageResult, VersionRef
from regd.store.catalog import ReadTx


def _load(r: ReadTx, ref: VersionRef, side: str) -> Version:
    try:
        return r.version(r.row(ref.name, ref.version).id, tensors=True)
    except NotFound as exc:
        # say WHICH reference is unknown: "b: model 'fraud' has no version 9.9.9"
        raise NotFound(f"{side}: {exc.message}", {"side": side, "name": ref.name, "version": ref.version}) from None


@handler("versions.diff")
async def versions_diff(call: Call, p: DiffParams) -> Diff:
    if (p.b is None) == (p.b_path is None):
        raise InvalidParams("versions.diff takes b (a version reference) or b_path (a path on disk), exactly one")
    if p.b_path is not None and call.caller.role.rank < Role.CONTRIBUTOR.rank:
        # reading a path is reading it as the daemon's owner: the same trust as versions.register
        raise PermissionDenied(
            f"diffing against a path needs the contributor role; {call.caller.name} is {call.caller.role.value}",
            {"role": Role.CONTRIBUTOR.value, "actor": call.caller.name, "have": call.caller.role.value},
        )
    daemon = call.daemon

    def compare(a: Version, b: Version) -> Diff:
        # blocking (descriptor reads, a large tensor table): always called off the event loop
        lower = guards.lower_is_better(guards.policies_for(daemon.config.policy, b.model, Stage.PRODUCTION))
        descriptors = diff_files.read_descriptors(a, b, daemon.blobs) if diff_files.changed_descriptors(a, b) else None
        return diff.diff_versions(a, b, lower_is_better=lower, descriptors=descriptors, b_path=p.b_path)

    if p.b is not None:
        b_ref = p.b
        # one trip to a reader thread: load both sides and compare there (issue 6: <= 50 ms for 1 GiB versions)
        return await daemon.catalog.read(lambda r: compare(_load(r, p.a, "a"), _load(r, b_ref, "b")))
    assert p.b_path is not None
    a = await daemon.catalog.read(lambda r: _load(r, p.a, "a"))
    try:
        b = await probe(Path(p.b_path), daemon.blobs, name=a.model, actor=call.actor)
    except NotFound as exc:
        raise NotFound(f"b_path: {exc.message}", {"side": "b", "path": p.b_path}) from None
    except InvalidParams as exc:
        raise InvalidParams(f"b_path: {exc.message}", {"side": "b", "path": p.b_path}) from None
    return await asyncio.to_thread(compare, a, b)


@handler("lineage.get")
async def lineage_get(call: Call, p: LineageParams) -> LineageResult:
    deploy_dir, local_path = call.daemon.config.deploy_dir, call.daemon.blobs.local_path
    return await call.daemon.catalog.read(lambda r: lineage(r, p.name, p.version, deploy_dir=deploy_dir, local_path=local_path))
