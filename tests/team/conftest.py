"""A throwaway PostgreSQL server and an S3-compatible server on loopback, for the team-scale tests.

PostgreSQL: ``initdb`` + ``pg_ctl`` in a temp dir on a free port (fsync off: a test database need not
survive a power cut). PostgreSQL refuses to run as root, so under root the server runs as the
system user ``regdpg``, created when missing. S3: moto's server mode (``moto[server]``) in a thread.
Both are started once per session; each test gets its own database and its own bucket. The tests
are skipped, saying why, only when the programs are absent.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.team.services import free_port, pg_bin, pg_run_as


@dataclass
class PgServer:
    port: int
    root: Path

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://regd@127.0.0.1:{self.port}/{db}"

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'regd[team]'")
    user = pg_run_as()
    root = Path(tempfile.mkdtemp(prefix="regd-pg-", dir="/tmp"))
    if user:
        shutil.chown(root, user)
    port = free_port()
    data = root / "db"
    subprocess.run([initdb, "-D", str(data), "-U", "regd", "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, user=user)  # fmt: skip
    opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=300")  # fmt: skip
    started = subprocess.run([pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start"],
                             capture_output=True, user=user)  # fmt: skip
    if started.returncode != 0:
        log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr.decode()}\n{log}")
    try:
        yield PgServer(port, root)
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, user=user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh database for this test."""
    return pg_server.create_database()


@dataclass
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip

    def create_bucket(self) -> str:
        name = f"regd-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    try:
        import boto3  # noqa: F401
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] and boto3 are not installed: pip install 'regd[team]' 'moto[server]'")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    s3 = S3Server(f"http://127.0.0.1:{port}")
    saved = {k: os.environ.get(k) for k in s3.env()}
    os.environ.update(s3.env())  # daemons started by the tests inherit it, as from a user's shell
    deadline = time.monotonic() + 10
    while True:
        try:
            s3.client().list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        yield s3
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A fresh bucket for this test."""
    return s3_server.create_bucket()
