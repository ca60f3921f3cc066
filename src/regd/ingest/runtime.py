"""Facts about the machine versions are registered on: Python, OS, architecture, NVIDIA driver, CUDA, GPUs.

They do not change while the daemon runs, so they are gathered once per process (file reads in a thread,
``nvidia-smi`` as an async subprocess with a timeout) and every later call returns a copy.

``cuda`` is the highest CUDA version the installed driver supports, as ``nvidia-smi`` prints it: the
toolkit a training job used lives in its own environment (``torch.version.cuda``) and belongs in the
sidecar or the environment lock.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shlex
import shutil
from contextlib import suppress
from pathlib import Path
from typing import Any

from regd.domain import Runtime
from regd.ingest.boundedio import read_bounded

NVIDIA_SMI_TIMEOUT = 3.0
"""Seconds granted to each ``nvidia-smi`` call; a wedged driver makes it hang."""

_OS_RELEASE = (Path("/etc/os-release"), Path("/usr/lib/os-release"))
_NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")
_CUDA_VERSION = re.compile(r"CUDA Version:\s*([0-9][0-9.]*)")
_PROC_DRIVER = re.compile(r"Kernel Module\s+([0-9][0-9.]*)")

_cached: Runtime | None = None


async def runtime_facts() -> Runtime:
    """Return this machine's runtime facts, gathered on the first call."""
    global _cached
    if _cached is None:
        local, nvidia_smi = await asyncio.to_thread(_local_facts)
        gpu = await _nvidia_facts(nvidia_smi)
        if gpu.get("driver") is None:
            gpu["driver"] = local.pop("proc_driver", None)
        local.pop("proc_driver", None)
        _cached = Runtime(**local, **gpu)
    # a copy the caller may change (strings, and one list of them): not deep, which costs ~40 µs a registration
    return _cached.model_copy(update={"gpus": list(_cached.gpus)})


def clear_cache() -> None:
    """Forget the gathered facts (tests, or a driver upgraded under a running daemon)."""
    global _cached
    _cached = None


def _local_facts() -> tuple[dict[str, Any], str | None]:
    """Everything that needs only files and the interpreter; blocking, so run in a thread."""
    # platform.platform() reads the interpreter binary to find the libc version: not for the event loop.
    system = platform.platform()
    pretty = _os_pretty_name()
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "os": f"{pretty} ({system})" if pretty and pretty not in system else system,
        "machine": platform.machine() or None,
        "proc_driver": _proc_driver_version(),
    }
    return facts, shutil.which("nvidia-smi")


def _os_pretty_name() -> str | None:
    """PRETTY_NAME from os-release (``Debian GNU/Linux 12 (bookworm)``), if the system has one."""
    for path in _OS_RELEASE:
        try:
            text = read_bounded(path, 64 * 1024).decode("utf-8", "replace")
        except OSError:
            continue
        for line in text.splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "PRETTY_NAME":
                with suppress(ValueError):
                    words = shlex.split(value)
                    return " ".join(words) or None
        return None
    return None


def _proc_driver_version() -> str | None:
    try:
        text = read_bounded(_NVIDIA_PROC_VERSION, 64 * 1024).decode("utf-8", "replace")
    except OSError:
        return None
    match = _PROC_DRIVER.search(text)
    return match[1] if match else None


async def _nvidia_facts(nvidia_smi: str | None) -> dict[str, Any]:
    """Ask ``nvidia-smi`` for GPU names, the driver and the CUDA version it supports."""
    if nvidia_smi is None:
        return {}
    query, header = await asyncio.gather(
        _run(nvidia_smi, "--query-gpu=name,driver_version", "--format=csv,noheader"),
        _run(nvidia_smi),
    )
    facts: dict[str, Any] = {}
    gpus: list[str] = []
    for line in (query or "").splitlines():
        name, _, driver = line.rpartition(",")
        if name.strip():
            gpus.append(name.strip())
            facts.setdefault("driver", driver.strip() or None)
    if gpus:
        facts["gpus"] = gpus
    match = _CUDA_VERSION.search(header or "")
    if match:
        facts["cuda"] = match[1]
    return facts


async def _run(executable: str, *args: str) -> str | None:
    """Run a command for its output; None when it fails, cannot start or outlives the timeout."""
    try:
        proc = await asyncio.create_subprocess_exec(
            executable,
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "LC_ALL": "C"},
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=NVIDIA_SMI_TIMEOUT)
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:  # timed out or cancelled: do not leave it behind
            with suppress(ProcessLookupError):
                proc.kill()
            with suppress(ProcessLookupError):
                await proc.wait()
    if proc.returncode != 0:
        return None
    return out[: 1 << 20].decode("utf-8", "replace")
