"""``on_change`` commands and webhooks: told about every change, never in the way of one.

Both run after the change has committed, in tasks of their own, with timeouts; a hook that hangs
is killed, a webhook that fails is retried with backoff, and every outcome is returned for the
audit log. Nothing here can undo or delay a promotion.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import signal
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from regd.config import Webhook

OUTPUT_LIMIT = 2000


@dataclass(frozen=True)
class HookOutcome:
    kind: str  # on_change | webhook
    target: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class ChangeFacts:
    """What a hook is told: the REGD_* environment and the webhook's JSON body."""

    model: str
    version: str | None
    stage: str | None
    path: str | None
    actor: str
    reason: str | None
    event: str

    def env(self) -> dict[str, str]:
        return {
            "REGD_MODEL": self.model,
            "REGD_VERSION": self.version or "",
            "REGD_STAGE": self.stage or "",
            "REGD_PATH": self.path or "",
            "REGD_ACTOR": self.actor,
            "REGD_REASON": self.reason or "",
            "REGD_EVENT": self.event,
        }

    def body(self) -> dict[str, Any]:
        return {"event": self.event, "model": self.model, "version": self.version, "stage": self.stage,
                "path": self.path, "actor": self.actor, "reason": self.reason}  # fmt: skip


async def run_command(command: str, facts: ChangeFacts, timeout: float) -> HookOutcome:
    """Run an ``on_change`` shell command with the REGD_* environment; kill it at the timeout."""
    proc = await asyncio.create_subprocess_shell(
        command, env=os.environ | facts.env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: a shell's children too
        await proc.wait()
        return HookOutcome("on_change", command, False, f"timed out after {timeout:g} s and was killed")
    text = out.decode(errors="replace")[-OUTPUT_LIMIT:].strip()
    if proc.returncode != 0:
        return HookOutcome("on_change", command, False, f"exit {proc.returncode}: {text}")
    return HookOutcome("on_change", command, True, text or "ok")


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw body, as GitHub's webhooks sign theirs."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(hook: Webhook, facts: ChangeFacts, backoff: float = 1.0) -> HookOutcome:
    """POST the change as JSON, signed; retry with exponential backoff."""
    body = json.dumps(facts.body(), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "regd", "X-Regd-Event": facts.event}
    if hook.secret:
        headers["X-Regd-Signature"] = signature(hook.secret, body)
    last = ""
    for attempt in range(hook.retries + 1):
        if attempt:
            await asyncio.sleep(backoff * 2 ** (attempt - 1))
        try:
            status = await asyncio.to_thread(_post, hook.url, body, headers, hook.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any network failure is one more failed attempt
            last = f"{type(exc).__name__}: {exc}"
            continue
        if 200 <= status < 300:
            return HookOutcome("webhook", hook.url, True, f"HTTP {status} after {attempt + 1} attempt(s)")
        last = f"HTTP {status}"
        if 400 <= status < 500 and status not in (408, 429):
            break  # the receiver refuses this request: retrying will not change its mind
    return HookOutcome("webhook", hook.url, False, f"{last} after {attempt + 1} attempt(s)")


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - configured URL
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)

