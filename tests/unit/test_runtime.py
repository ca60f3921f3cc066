"""Runtime facts: the interpreter and OS as they are, NVIDIA facts from a stand-in ``nvidia-smi``."""

from __future__ import annotations

import os
import platform
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from regd.ingest import runtime
from regd.ingest.runtime import clear_cache, runtime_facts


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


def fake_nvidia_smi(bin_dir: Path, script: str) -> None:
    """Put an ``nvidia-smi`` first on PATH: regd does not own the driver, so the test stands in for it."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def only_on_path(monkeypatch: pytest.MonkeyPatch, bin_dir: Path) -> None:
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin")


async def test_interpreter_and_os(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_on_path(monkeypatch, tmp_path)  # no nvidia-smi here, whatever the machine has
    facts = await runtime_facts()
    assert facts.python == platform.python_version()
    assert facts.machine == platform.machine()
    assert facts.os is not None and platform.system() in facts.os
    if Path("/etc/os-release").exists():
        pretty = next(
            (line.split("=", 1)[1].strip('"') for line in Path("/etc/os-release").read_text().splitlines()
             if line.startswith("PRETTY_NAME=")),
            None,
        )
        if pretty:
            assert facts.os.startswith(pretty)
    if not Path("/proc/driver/nvidia/version").exists():
        assert facts.gpus == [] and facts.cuda is None and facts.driver is None


async def test_facts_are_gathered_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    fake_nvidia_smi(tmp_path / "bin", f'echo x >> {calls}\necho "NVIDIA L4, 550.54.15"\n')
    only_on_path(monkeypatch, tmp_path / "bin")
    first = await runtime_facts()
    first.gpus.append("tampered")  # a caller's copy, not the cache
    second = await runtime_facts()
    assert second.gpus == ["NVIDIA L4"]
    assert len(calls.read_text().splitlines()) == 2  # the query and the header, once


NVIDIA_SMI = r"""
case "$1" in
  --query-gpu=name,driver_version)
    printf 'NVIDIA A100-SXM4-80GB, 535.104.05\nNVIDIA A100-SXM4-80GB, 535.104.05\n' ;;
  "")
    cat <<'EOF'
Tue Oct  1 12:00:00 2024
+---------------------------------------------------------------------------------------+
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|-----------------------------------------+----------------------+----------------------+
EOF
    ;;
  *) exit 2 ;;
esac
"""


async def test_gpus_driver_and_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", NVIDIA_SMI)
    only_on_path(monkeypatch, tmp_path / "bin")
    facts = await runtime_facts()
    assert facts.gpus == ["NVIDIA A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB"]
    assert facts.driver == "535.104.05"
    assert facts.cuda == "12.2"


async def test_a_failing_nvidia_smi_gives_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(
        tmp_path / "bin",
        "echo \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\"\nexit 9\n",
    )
    only_on_path(monkeypatch, tmp_path / "bin")
    facts = await runtime_facts()
    assert facts.gpus == [] and facts.cuda is None
    assert facts.python == platform.python_version()


@pytest.mark.timeout(20)
async def test_a_hanging_nvidia_smi_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_nvidia_smi(tmp_path / "bin", "exec sleep 30\n")
    only_on_path(monkeypatch, tmp_path / "bin")
    monkeypatch.setattr(runtime, "NVIDIA_SMI_TIMEOUT", 0.3)
    facts = await runtime_facts()  # the fake sleeps 30 s: returning at all means it was cut off
    assert facts.gpus == [] and facts.cuda is None
