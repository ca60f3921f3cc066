"""Persistence: the catalog (versions, stages, audit) and the blob store (the bytes).

Both sit behind small interfaces (``catalog.Catalog``, ``blobs.BlobStore``) chosen by URL, so a
team store is an addition here and nothing above this package changes.
"""

from __future__ import annotations

from pathlib import Path

from regd.store.blobs import BlobStore, LocalBlobStore
from regd.store.catalog import Catalog


def open_catalog(url: str, data_dir: Path) -> Catalog:
    """The catalog for ``catalog = ...`` in the config: ``sqlite`` (default) or a database URL."""
    if url in ("", "sqlite"):
        from regd.store.sqlite import SQLiteCatalog

        return SQLiteCatalog(data_dir / "registry.db")
    if url.startswith("sqlite:///"):
        from regd.store.sqlite import SQLiteCatalog

        return SQLiteCatalog(Path(url.removeprefix("sqlite:///")))
    raise ValueError(f"catalog = {url!r}: expected 'sqlite' or 'sqlite:///path'")


def open_blobs(url: str, data_dir: Path) -> BlobStore:
    """The blob store for ``objects = ...`` in the config: ``local`` (default)."""
    if url in ("", "local"):
        return LocalBlobStore(data_dir)
    raise ValueError(f"objects = {url!r}: expected 'local'")
