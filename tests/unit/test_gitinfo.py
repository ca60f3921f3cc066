"""Git facts from real repositories made with ``git init`` in a temp directory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from regd.ingest.gitinfo import git_info

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_ENV = {
    **{key: value for key, value in os.environ.items() if not key.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], env=_ENV, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch ``main`` with one commit and a model in ``runs/``."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "train.py").write_text("print('train')\n")
    (root / "runs").mkdir()
    (root / "runs" / "model.safetensors").write_bytes(b"\0" * 16)
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


async def test_clean_repository(repo: Path) -> None:
    info = await git_info(repo / "runs" / "model.safetensors")
    assert info is not None
    assert info.commit == git(repo, "rev-parse", "HEAD")
    assert len(info.commit) == 40
    assert info.branch == "main"
    assert info.dirty is False  # an untracked model does not make the tree dirty
    assert info.remote is None
    assert info.repository == str(repo.resolve())


async def test_a_directory_artifact(repo: Path) -> None:
    info = await git_info(repo / "runs")
    assert info is not None and info.repository == str(repo.resolve())


async def test_dirty_when_a_tracked_file_changed(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    info = await git_info(repo / "runs" / "model.safetensors")
    assert info is not None and info.dirty is True


async def test_dirty_when_a_change_is_staged(repo: Path) -> None:
    (repo / "new.py").write_text("x = 1\n")
    git(repo, "add", "new.py")
    info = await git_info(repo)
    assert info is not None and info.dirty is True


async def test_status_takes_no_index_lock(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    index = repo / ".git" / "index"
    before = index.stat().st_mtime_ns
    time.sleep(0.01)
    info = await git_info(repo)
    assert info is not None and info.dirty is True
    assert not (repo / ".git" / "index.lock").exists()
    assert index.stat().st_mtime_ns == before  # GIT_OPTIONAL_LOCKS=0: the index is not refreshed on disk


async def test_detached_head_has_no_branch(repo: Path) -> None:
    (repo / "train.py").write_text("print('second')\n")
    git(repo, "commit", "-q", "-am", "second")
    first = git(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    info = await git_info(repo / "runs")
    assert info is not None
    assert info.commit == first
    assert info.branch is None
    assert info.dirty is False


async def test_other_branch(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature/lr-sweep")
    info = await git_info(repo)
    assert info is not None and info.branch == "feature/lr-sweep"


async def test_remote_credentials_are_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "upstream", "git@github.com:acme/models.git")
    git(repo, "remote", "add", "origin", "https://alice:ghp_secret@github.com/acme/fraud.git")
    info = await git_info(repo)
    assert info is not None
    assert info.remote == "https://github.com/acme/fraud.git"  # origin wins over the first remote
    assert "secret" not in info.model_dump_json()


async def test_a_token_as_user_name_is_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://ghp_token123@github.com/acme/fraud.git")
    info = await git_info(repo)
    assert info is not None and info.remote == "https://github.com/acme/fraud.git"


async def test_first_remote_when_there_is_no_origin(repo: Path) -> None:
    git(repo, "remote", "add", "upstream", "ssh://git@gitlab.example.com:2222/ml/fraud.git")
    info = await git_info(repo)
    assert info is not None and info.remote == "ssh://git@gitlab.example.com:2222/ml/fraud.git"


async def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "-b", "trunk")
    info = await git_info(tmp_path)
    assert info is not None
    assert info.commit is None
    assert info.branch == "trunk"
    assert info.repository == str(tmp_path.resolve())


async def test_not_a_repository(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    assert await git_info(tmp_path / "model.onnx") is None


async def test_missing_path(tmp_path: Path) -> None:
    assert await git_info(tmp_path / "gone" / "model.pt") is None


async def test_inherited_git_dir_is_ignored(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q", "-b", "other")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    info = await git_info(repo)
    assert info is not None and info.branch == "main"


async def test_git_not_installed(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert await git_info(repo) is None


@pytest.mark.timeout(20)
async def test_a_hanging_git_times_out_and_is_killed(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "slow-bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "git.pid"
    fake = bin_dir / "git"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    assert await git_info(repo, timeout=0.5) is None  # the fake git sleeps 30 s: None means it was cut off
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a repository owned by someone else needs root")
async def test_someone_elses_repository_is_read_but_not_status_checked(repo: Path) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    for path in [repo / ".git", *(repo / ".git").rglob("*")]:
        os.lchown(path, 65534, 65534)
    info = await git_info(repo)
    assert info is not None
    assert info.commit is not None and info.branch == "main"
    assert info.dirty is None  # its clean filters are not ours to run
