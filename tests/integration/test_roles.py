"""Shared mode: users map to roles; every method checks the caller's, as SO_PEERCRED reports it.

The second users are real Unix accounts, created by the test when it runs as root (skipped
otherwise). Their requests are made from forked children that drop to those uids, so the daemon
sees them exactly as it would see another person.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.modelfiles import write_safetensors

GROUP = "regdteam"
USERS = {"regdviewer": "viewer", "regdcontrib": "contributor", "regdapprover": "approver"}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd"),
    reason="role tests create Unix users: they need root and useradd (run the suite as root to include them)",
)


@pytest.fixture(scope="module")
def accounts():
    if subprocess.run(["getent", "group", GROUP], capture_output=True).returncode != 0:
        subprocess.run(["groupadd", GROUP], check=True)
    for user in [*USERS, "regdoutsider"]:
        if subprocess.run(["id", user], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user], check=True)
        if user != "regdoutsider":
            subprocess.run(["usermod", "-a", "-G", GROUP, user], check=True)
    return {u: pwd.getpwnam(u) for u in [*USERS, "regdoutsider"]}


def as_user(entry: pwd.struct_passwd, sock_path, method, params=None):
    """Make one request as another uid: fork, drop privileges, connect, answer through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the user, then speak JSON-RPC
        try:
            os.close(r)
            groups = os.getgrouplist(entry.pw_name, entry.pw_gid)
            os.setgroups(groups)
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(str(sock_path))
            except OSError as exc:
                os.write(w, json.dumps({"connect_error": exc.errno}).encode())
                os._exit(0)
            s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            os.write(w, buf)
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.fixture
def shared(daemon_factory, accounts):
    roles = ", ".join(f'{u} = "{r}"' for u, r in USERS.items())
    return daemon_factory(f'[api]\ngroup = "{GROUP}"\nroles = {{ {roles} }}\n')


@pytest.fixture
def public_dir():
    """A folder the other users can reach (pytest's tmp_path is root's alone)."""
    d = tempfile.mkdtemp(prefix="regd-roles-", dir="/tmp")
    os.chmod(d, 0o755)
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def model_file(path, seed=0):
    rng = np.random.default_rng(seed)
    f = write_safetensors(path, {"w": rng.standard_normal((3, 3)).astype(np.float32)})
    os.chmod(f, 0o644)
    return f


def test_socket_is_group_shared_and_outsiders_cannot_connect(shared, accounts):
    st = os.stat(shared.socket)
    assert oct(st.st_mode & 0o777) == "0o660" and grp.getgrgid(st.st_gid).gr_name == GROUP
    reply = as_user(accounts["regdoutsider"], shared.socket, "daemon.status")
    assert "connect_error" in reply


def test_each_role_gets_what_it_may_and_a_clear_refusal_otherwise(shared, accounts, public_dir):
    f = model_file(public_dir / "m.safetensors")
    viewer, contrib, approver = (accounts[u] for u in USERS)
    status = as_user(viewer, shared.socket, "daemon.status")["result"]
    assert (status["actor"], status["role"]) == ("regdviewer", "viewer")
    denied = as_user(viewer, shared.socket, "versions.register", {"path": str(f), "name": "m"})
    assert denied["error"]["code"] == -32004 and denied["error"]["data"]["role"] == "contributor"
    ok = as_user(contrib, shared.socket, "versions.register", {"path": str(f), "name": "m"})
    assert ok["result"]["version"]["created_by"] == "regdcontrib"
    to_prod = {"name": "m", "version": "1.0.0", "stage": "production", "reason": "ship it"}
    assert as_user(contrib, shared.socket, "versions.promote", to_prod)["error"]["code"] == -32004
    staged = as_user(contrib, shared.socket, "versions.promote", to_prod | {"stage": "staging"})
    assert staged["result"]["to"] == "staging"
    assert as_user(approver, shared.socket, "versions.approve", {"name": "m", "version": "1.0.0"})["result"]["approvals"]
    forced = as_user(approver, shared.socket, "versions.promote", to_prod | {"force": True})
    assert forced["error"]["code"] == -32004 and forced["error"]["data"]["role"] == "admin"
    assert as_user(approver, shared.socket, "versions.promote", to_prod)["result"]["to"] == "production"
    assert as_user(approver, shared.socket, "gc.run", {})["error"]["code"] == -32004
    actors = {e["actor"] for e in shared.client().call("audit.list")["items"]}
    assert {"regdcontrib", "regdapprover"} <= actors


def test_a_path_the_caller_cannot_read_is_refused(shared, accounts, public_dir):
    secret = model_file(public_dir / "secret.safetensors")
    os.chmod(secret, 0o600)  # root's alone: the daemon could read it, the contributor cannot
    reply = as_user(accounts["regdcontrib"], shared.socket, "versions.register", {"path": str(secret), "name": "m"})
    assert reply["error"]["code"] == -32004
    assert shared.client().call("models.list")["items"] == []
