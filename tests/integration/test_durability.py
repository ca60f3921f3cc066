"""kill -9 between a registration and its answer: afterwards the version is complete, or absent."""

from __future__ import annotations

import json
import random
import socket
import sqlite3
import time

import pytest

from tests.waiting import wait_for


def send_register(sock_path, path, name):
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(sock_path))
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "versions.register",
                          "params": {"path": str(path), "name": name}}).encode() + b"\n")  # fmt: skip
    return s


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_sigkill_mid_registration_leaves_all_or_nothing(daemon_factory, tmp_path, seed):
    rng = random.Random(seed)
    d = daemon_factory()
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.write(rng.randbytes(1 << 20) * 96)  # 96 MiB: long enough to be killed part-way
    # warm up so the kill lands inside the register call, not in start-up
    d.client().status()
    s = send_register(d.socket, big, "big")
    time.sleep(rng.uniform(0.0, 0.6))
    d.kill()
    s.close()
    db = sqlite3.connect(d.data_dir / "registry.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    d.start()
    client = d.client()
    versions = client.call("versions.search", {"filter": "name = 'big'"})["items"]
    assert len(versions) in (0, 1)
    if versions:  # present means complete: the row and the bytes
        assert client.call("versions.verify", {"name": "big"})["ok"]
        assert client.call("audit.list", {"name": "big"})["items"][0]["action"] == "version.registered"
    else:
        assert client.call("audit.list")["items"] == []
    assert client.call("audit.verify")["ok"]
    # the registration can simply be made again, and then it is complete
    again = client.call("versions.register", {"path": str(big), "name": "big"})
    assert again["version"]["version"] == "1.0.0"
    assert client.call("versions.verify")["ok"]
    wait_for(lambda: client.call("gc.plan")["blobs"] == [], what="no orphan left after a clean registration")
