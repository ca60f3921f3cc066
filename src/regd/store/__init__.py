"""Persistence: the catalog (versions, stages, audit) and the blob store (the bytes).

Both sit behind small interfaces (``catalog.Catalog``, ``blobs.BlobStore``) chosen by URL, so a
team store is an addition here and nothing above this package changes.
"""

from __future__ import annotations

from pathlib import Path

from regd.store.blobs import BlobStore, LocalBlobStore
from regd.store.catalog import Catalog

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_catalog(url: str, data_dir: Path) -> Catalog:
    """The catalog for ``catalog = ...`` in the config: ``sqlite`` (default) or a database URL."""
    if url in ("", "sqlite"):
        from regd.store.sqlite import SQLiteCatalog

        return SQLiteCatalog(data_dir / "registry.db")
    if url.startswith("sqlite:///"):
        from regd.store.sqlite import SQLiteCatalog

        return SQLiteCatalog(Path(url.removeprefix("sqlite:///")))
    if url.startswith(POSTGRES_SCHEMES):
        from regd.store.postgres import PostgresCatalog

        return PostgresCatalog(url)
    raise ValueError(f"catalog = {url!r}: expected 'sqlite', 'sqlite:///path' or 'postgresql://user@host:5432/db'")


def open_blobs(url: str, data_dir: Path) -> BlobStore:
    """The blob store for ``objects = ...`` in the config: ``local`` (default) or ``s3://bucket/prefix``."""
    if url in ("", "local"):
        return LocalBlobStore(data_dir)
    if url.startswith("s3://"):
        from regd.store.s3blobs import S3BlobStore

        return S3BlobStore(url, cache=data_dir / "cache")
    raise ValueError(f"objects = {url!r}: expected 'local' or 's3://bucket/prefix'")
