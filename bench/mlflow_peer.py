"""The peer: MLflow's Model Registry on SQLite (``MlflowClient`` over its SQLAlchemy store), in-process.

Needs ``mlflow-skinny`` plus ``sqlalchemy`` and ``alembic`` (the SQL store's own dependencies, which
the skinny package leaves out): all in the ``[bench]`` extra. MLflow runs with its defaults, as a
user gets them: SQLite in rollback-journal mode at ``synchronous = FULL``.
"""

from __future__ import annotations

import logging
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any


def available() -> str | None:
    """None when the peer can run, else why not."""
    try:
        import alembic  # noqa: F401
        import mlflow  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install '.[bench]')"
    return None


def versions() -> str:
    from importlib import metadata

    out = []
    for pkg in ("mlflow-skinny", "mlflow", "sqlalchemy", "alembic"):
        try:
            out.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


class MlflowPeer:
    """An MLflow registry in ``directory/mlflow.db``."""

    def __init__(self, directory: Path) -> None:
        for name in ("mlflow", "alembic", "sqlalchemy"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module="mlflow")
        from mlflow import MlflowClient

        directory.mkdir(parents=True, exist_ok=True)
        self.db = directory / "mlflow.db"
        uri = f"sqlite:///{self.db}"
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    # the measured operations, named as MLflow names them

    def create_registered_model(self, name: str) -> None:
        self.client.create_registered_model(name)

    def create_model_version(self, name: str, source: str, tags: dict[str, str]) -> int:
        return int(self.client.create_model_version(name, source, tags=tags).version)

    def get_model_version_by_alias(self, name: str, alias: str) -> Any:
        return self.client.get_model_version_by_alias(name, alias)

    def set_registered_model_alias(self, name: str, alias: str, version: int) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def search_model_versions(self, filter_string: str, max_results: int = 100) -> list[Any]:
        return list(self.client.search_model_versions(filter_string, max_results=max_results))

    # filling

    def bulk_fill(self, names: list[str], per_model: int, tags_of: Callable[[int], dict[str, str]], source_of: Callable[[int], str]) -> float:
        """Fill MLflow's own tables by SQL, cloning rows its API wrote; returns the seconds it took.

        ``names[0]`` must already hold version 1 (made with ``create_model_version``): its rows are
        the template. Version ``v`` of model ``m`` is workload item ``k = v * len(names) + m``.
        """
        t0 = time.perf_counter()
        conn = sqlite3.connect(self.db, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA synchronous = OFF")  # the fill is not what is measured
            model_tpl = dict(conn.execute("SELECT * FROM registered_models WHERE name = ?", (names[0],)).fetchone())
            version_tpl = dict(conn.execute("SELECT * FROM model_versions WHERE name = ? AND version = 1", (names[0],)).fetchone())
            workspace = version_tpl.get("workspace", "default")
            conn.execute("BEGIN")
            now = int(time.time() * 1000)
            mcols = list(model_tpl)
            for name in names[1:]:
                row = dict(model_tpl, name=name, creation_time=now, last_updated_time=now)
                conn.execute(f"INSERT INTO registered_models ({','.join(mcols)}) VALUES ({','.join('?' * len(mcols))})",
                             [row[c] for c in mcols])  # fmt: skip
            vcols = list(version_tpl)
            vsql = f"INSERT INTO model_versions ({','.join(vcols)}) VALUES ({','.join('?' * len(vcols))})"
            tsql = "INSERT INTO model_version_tags (key, value, name, version, workspace) VALUES (?, ?, ?, ?, ?)"
            vrows: list[list[Any]] = []
            trows: list[tuple[Any, ...]] = []
            n = len(names)
            for v in range(per_model):
                for m, name in enumerate(names):
                    if m == 0 and v == 0:
                        continue
                    k = v * n + m
                    src = source_of(k)
                    row = dict(version_tpl, name=name, version=v + 1, creation_time=now + k, last_updated_time=now + k,
                               source=src, storage_location=src if "storage_location" in version_tpl else None)  # fmt: skip
                    vrows.append([row[c] for c in vcols])
                    trows.extend((key, value, name, v + 1, workspace) for key, value in tags_of(k).items())
                if len(vrows) >= 20_000:
                    conn.executemany(vsql, vrows)
                    conn.executemany(tsql, trows)
                    vrows, trows = [], []
            conn.executemany(vsql, vrows)
            conn.executemany(tsql, trows)
            conn.execute("UPDATE registered_models SET last_updated_time = ?", (now + n * per_model,))
            conn.execute("COMMIT")
        finally:
            conn.close()
        return time.perf_counter() - t0
