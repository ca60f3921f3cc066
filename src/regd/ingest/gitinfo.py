"""Ask git which repository, commit, branch and remote hold an artifact, without blocking or prompting.

Every call is a ``git`` subprocess under one overall timeout; on timeout or cancellation the process
group is killed. The environment forbids prompts (``GIT_TERMINAL_PROMPT=0``), lazy fetches in partial
clones and the optional index lock (``GIT_OPTIONAL_LOCKS=0``: ``status`` must never hold
``index.lock`` while the user commits), and drops any inherited ``GIT_DIR``-like variables, which
would point git at some other repository.

``-c safe.directory=*`` lets regd read repositories owned by another user (a shared cluster folder, a
container's bind mount). That also drops git's guard against running such a repository's configured
programs, so ``core.fsmonitor`` is forced off and the dirty check, the one command that may run a
configured clean filter, runs only in repositories whose ``.git`` the daemon's user owns; elsewhere
``dirty`` is None.
"""

from __future__ import annotations

import asyncio
import os
import signal
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from regd.domain import GitInfo
from regd.ingest.urls import redact_url

_MAX_OUTPUT = 64 * 1024
"""Bytes read from one git command; a dirty check in a huge tree stops reading at the first line."""

_GIT_CONFIG = ("-c", "safe.directory=*", "-c", "core.fsmonitor=false", "-c", "core.quotePath=false")


@dataclass(frozen=True, slots=True)
class _Result:
    returncode: int
    out: str
    truncated: bool = False


async def git_info(path: Path, timeout: float = 5.0) -> GitInfo | None:
    """Describe the git repository holding ``path`` (a file or a directory).

    Returns None when ``path`` is in no work tree, git is not installed, or git takes longer than
    ``timeout`` seconds in all.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _describe(path)
    except (TimeoutError, OSError):
        return None


async def describe(cwd: Path, timeout: float = 5.0) -> GitInfo | None:
    """``git_info`` for a directory that ``work_tree_dir`` found inside a work tree (no second look)."""
    try:
        async with asyncio.timeout(timeout):
            return await _describe_work_tree(cwd)
    except (TimeoutError, OSError):
        return None


def work_tree_dir(path: Path) -> Path | None:
    """The directory to ask git about when ``path`` lies in a work tree, else None; a few stats, blocking.

    The registration path runs it in the worker thread that already reads the artifact, so an
    artifact outside any repository (most of them) costs no thread hop and no subprocess.
    """
    cwd = _directory_of(path)
    if cwd is None or not _inside_a_work_tree(cwd):
        return None
    return cwd


async def _describe(path: Path) -> GitInfo | None:
    cwd = await asyncio.to_thread(work_tree_dir, path)
    if cwd is None:
        return None  # most artifacts live outside any repository: say so without spawning git
    return await _describe_work_tree(cwd)


async def _describe_work_tree(cwd: Path) -> GitInfo | None:
    top = await _git(cwd, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or not top.out.strip():
        return None
    repository = top.out.strip()
    owned = await asyncio.to_thread(_owned_by_us, Path(repository))
    async with asyncio.TaskGroup() as group:
        head = group.create_task(_git(cwd, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"))
        branch = group.create_task(_git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD"))
        remotes = group.create_task(_git(cwd, "config", "--get-regexp", r"^remote\..*\.url$"))
        status = (
            group.create_task(_git(cwd, "status", "--porcelain", "--untracked-files=no")) if owned else None
        )
    return GitInfo(
        commit=_line(head.result()),
        branch=_line(branch.result()),  # None when detached: symbolic-ref fails
        dirty=_dirty(status.result()) if status is not None else None,
        remote=_remote(remotes.result()),
        repository=repository,
    )


def _inside_a_work_tree(directory: Path) -> bool:
    """A cheap look for ``.git`` (a directory, or a file in worktrees and submodules) up the tree."""
    for d in (directory, *directory.parents):
        if os.path.lexists(d / ".git"):
            return True
    return False


def _directory_of(path: Path) -> Path | None:
    directory = path if path.is_dir() else path.parent
    return directory if directory.is_dir() else None


def _owned_by_us(repository: Path) -> bool:
    try:
        return (repository / ".git").stat().st_uid == os.geteuid()
    except OSError:
        return False


def _line(result: _Result | None) -> str | None:
    if result is None or result.returncode != 0:
        return None
    return result.out.strip() or None


def _dirty(result: _Result | None) -> bool | None:
    if result is None or (result.returncode != 0 and not result.truncated):
        return None
    return bool(result.out.strip())


def _remote(result: _Result | None) -> str | None:
    """Pick origin's URL, else the first remote's, from ``config --get-regexp`` lines."""
    if result is None or result.returncode != 0:
        return None
    urls: list[tuple[str, str]] = []
    for line in result.out.splitlines():
        key, _, url = line.partition(" ")
        if key.startswith("remote.") and key.endswith(".url") and url.strip():
            urls.append((key[len("remote.") : -len(".url")], url.strip()))
    if not urls:
        return None
    chosen = next((url for name, url in urls if name == "origin"), urls[0][1])
    return redact_url(chosen)


def _git_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_OPTIONAL_LOCKS="0",
        GIT_NO_LAZY_FETCH="1",
        LC_ALL="C",
    )
    return env


async def _git(cwd: Path, *args: str) -> _Result | None:
    """Run one git command in ``cwd``; None when git cannot be started."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(cwd),
            *_GIT_CONFIG,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=_git_env(),
            start_new_session=True,  # its own process group, so a kill also reaches what git spawned
        )
    except OSError:
        return None
    assert proc.stdout is not None
    try:
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_OUTPUT:
            chunk = await proc.stdout.read(_MAX_OUTPUT - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        truncated = size >= _MAX_OUTPUT
        if truncated:
            _kill(proc)
        returncode = await proc.wait()
    except BaseException:
        # Timeout or cancellation: never leave git running behind us.
        _kill(proc)
        with suppress(ProcessLookupError):
            await asyncio.shield(proc.wait())
        raise
    out = b"".join(chunks).decode("utf-8", "replace")
    return _Result(returncode=0 if truncated else returncode, out=out, truncated=truncated)


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return  # already reaped: its pid may belong to someone else by now
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(ProcessLookupError):
        proc.kill()
