"""What follows a committed change: deploy pointers moved, ``on_change`` hooks run, webhooks sent.

Driven by the catalog's commit listener, so every stage change and alias move triggers them, by
whatever path it was made. They run in background tasks: a slow hook never delays the answer to
the change, and a failing one is audited and shown in ``regd status``, never undoes anything.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import TYPE_CHECKING

from regd.domain import Artifact, AuditEvent, Stage
from regd.lifecycle import deploy, guards, hooks
from regd.store.catalog import AuditDraft, ReadTx, StoredArtifact

if TYPE_CHECKING:
    from regd.api.daemon import Daemon

log = logging.getLogger(__name__)

_STAGE_ACTIONS = {"version.stage", "version.force", "version.archived", "version.rolled_back"}
_ALIAS_ACTIONS = {"alias.set", "alias.deleted"}


class Effects:
    """Schedules pointer syncs and hooks for committed audit rows."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.pending: set[asyncio.Task[None]] = set()

    def on_commit(self, rows: list[AuditEvent]) -> None:
        for row in rows:
            if row.model and (row.action in _STAGE_ACTIONS or row.action in _ALIAS_ACTIONS):
                self._spawn(self._after(row))

    def on_remote_commit(self, rows: list[AuditEvent]) -> None:
        """Another daemon's changes: move this host's pointers (its hooks ran where it was made)."""
        if self.daemon.config.deploy_dir is None:
            return
        models = dict.fromkeys(
            r.model for r in rows if r.model and (r.action in _STAGE_ACTIONS or r.action in _ALIAS_ACTIONS)
        )
        for model in models:  # one sync per model however many of its rows came (it reads the latest state)
            self._spawn(self._sync_quietly(model))

    async def _sync_quietly(self, model: str) -> None:
        try:
            await self.sync_pointers(model)
        except Exception:  # noqa: BLE001 - one model's failure must not cost the others their pointers
            log.exception("deploy pointers of %s could not follow another daemon's change", model)

    def _spawn(self, coro: object) -> None:
        task = self.daemon.spawn(coro, "effects")
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def settle(self) -> None:
        """Wait for scheduled effects (shutdown, tests)."""
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    async def _after(self, row: AuditEvent) -> None:
        try:
            await self._follow(row)
        except Exception:  # one row's failure must not cost the others their pointers and hooks
            log.exception("effects of audit row %s (%s %s) failed", row.id, row.action, row.model)

    async def _follow(self, row: AuditEvent) -> None:
        assert row.model is not None
        if self.daemon.config.deploy_dir is not None:
            await self.sync_pointers(row.model)
        if row.action not in _STAGE_ACTIONS:
            return
        if row.action == "version.rolled_back":
            # from/to hold versions here (the archived one, the restored one): production changed hands
            await self._run_hooks(row, Stage.PRODUCTION, Stage.PRODUCTION)
        elif row.to and row.to != Stage.ARCHIVED.value:
            await self._run_hooks(row, Stage(row.to), Stage(row.to))
        elif row.from_ in (Stage.PRODUCTION.value, Stage.STAGING.value):
            await self._run_hooks(row, Stage(row.from_), Stage.ARCHIVED)

    async def sync_pointers(self, model: str) -> None:
        """Make the model's pointers match the catalog (serialised per model: the last state wins)."""
        deploy_dir = self.daemon.config.deploy_dir
        if deploy_dir is None:
            return
        async with self._locks[model]:
            def gather(r: ReadTx) -> tuple[object, dict[str, StoredArtifact]]:
                m = r.model(model)
                wanted = {v for v in [m.production, *m.staging[:1], *m.aliases.values()] if v}
                # where each version's bytes are, and nothing more (not the whole version: this runs
                # between a promotion's reply and its pointer moving)
                return m, {v: r.artifacts(model, v)[0] for v in wanted}

            m, artifacts = await self.daemon.catalog.read(gather)
            try:
                paths = {v: await self.local_path(a) for v, a in artifacts.items()}
                changed = await asyncio.to_thread(deploy.sync, deploy_dir, model, deploy.desired_pointers(m, paths))  # type: ignore[arg-type]
            except OSError as exc:
                self.daemon.record_hook_failure(model, "deploy_pointer", str(exc))
                await self._audit(model, None, "hook.failed", {"kind": "deploy_pointer", "detail": str(exc)})
                return
            if changed:
                log.info("deploy pointers of %s moved: %s", model, ", ".join(changed))

    async def local_path(self, art: Artifact | StoredArtifact) -> str:
        """Where a version's bytes are on this host: the catalog's stored path is the registering
        host's, so a copy goes through the blob store (with S3: fetched into the local cache first)."""
        blobs = self.daemon.blobs
        if art.store_mode != "copy":
            return art.stored_path  # reference mode: the bytes stay where they were registered
        if not blobs.remote:
            return str(blobs.local_path(art.kind, art.digest))
        files = [(f.path, f.digest) for f in art.files]
        return str(await asyncio.to_thread(blobs.materialise, art.kind, art.digest, files))

    async def sync_all(self) -> None:
        """Repair every model's pointers (at start: a crash may have come between commit and swap)."""
        if self.daemon.config.deploy_dir is None:
            return
        cursor = None
        while True:
            page = await self.daemon.catalog.read(
                lambda r, c=cursor: r.models(query=None, stage=None, tag=None, include_deprecated=True, limit=500, cursor=c)
            )
            for m in page.items:
                await self.sync_pointers(m.name)
            cursor = page.next_cursor
            if not cursor:
                return

    async def _run_hooks(self, row: AuditEvent, stage: Stage, now: Stage) -> None:
        """Run the hooks of ``stage``'s policies; ``now`` is where the row's version is afterwards."""
        assert row.model is not None
        policies = guards.policies_for(self.daemon.config.policy, row.model, stage)
        if not any(p.on_change or p.webhooks for p in policies):
            return
        path = None
        if row.version:
            try:
                art = await self.daemon.catalog.read(lambda r: r.artifacts(row.model, row.version)[0])
                path = await self.local_path(art)
            except Exception:  # noqa: BLE001 - the hook still runs, without a path
                path = None
        facts = hooks.ChangeFacts(
            model=row.model, version=row.version, stage=now.value,
            path=path, actor=row.actor, reason=row.reason, event=row.action,
        )  # fmt: skip
        jobs = [hooks.run_command(p.on_change, facts, p.hook_timeout_s) for p in policies if p.on_change]
        jobs += [hooks.post_webhook(w, facts) for p in policies for w in p.webhooks]
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, BaseException):
                outcome = hooks.HookOutcome("hook", "?", False, f"{type(outcome).__name__}: {outcome}")
            if not outcome.ok:
                self.daemon.record_hook_failure(row.model, outcome.kind, f"{outcome.target}: {outcome.detail}")
            await self._audit(
                row.model, row.version, "hook.ok" if outcome.ok else "hook.failed",
                {"kind": outcome.kind, "target": outcome.target, "detail": outcome.detail, "for_audit_id": row.id},
            )  # fmt: skip

    async def _audit(self, model: str, version: str | None, action: str, details: dict[str, object]) -> None:
        await self.daemon.catalog.write(
            lambda tx: tx.append_audit(AuditDraft(actor="regd", action=action, model=model, version=version, details=details))
        )
