"""Checking stored bytes against the catalog (``verify``) and freeing what nothing needs (``gc``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from regd.protocol import GcItem, VerifyItem
from regd.store.blobs import BlobStore, SourceChanged
from regd.store.catalog import StoredArtifact


def verify_artifact(blobs: BlobStore, art: StoredArtifact) -> VerifyItem:
    """Rehash one version's bytes: ``ok``, ``missing``, ``corrupt``, ``changed`` (reference mode) or ``pruned``."""
    item = VerifyItem(model=art.model, version=art.version, digest=art.digest, path=art.stored_path, status="ok")
    if art.pruned:
        return item.model_copy(update={"status": "pruned", "detail": "bytes freed by gc"})
    if art.store_mode == "reference":
        return _verify_reference(blobs, art, item)
    # the catalog's stored path is the registering host's: this host's copy is the store's to say
    local = blobs.local_path(art.kind, art.digest)
    item = item.model_copy(update={"path": str(local)})
    if art.kind == "directory":
        # a remote store's tree is a cache, built here only once someone loads the version
        check_links = not blobs.remote or local.is_dir()
        problems = []
        for f in art.files:
            state = blobs.verify(f.digest)
            if state != "ok":
                problems.append((state, f.path))
            elif check_links and not (local / f.path).is_file():
                problems.append(("missing", f"{f.path} (tree link)"))
        if problems:
            status = "corrupt" if any(s == "corrupt" for s, _ in problems) else "missing"
            detail = ", ".join(f"{p} {s}" for s, p in problems[:10])
            return item.model_copy(update={"status": status, "detail": detail})
        return item
    state = blobs.verify(art.digest)
    return item if state == "ok" else item.model_copy(update={"status": state, "detail": f"blob {state}"})


def repair_artifact(blobs: BlobStore, art: StoredArtifact, item: VerifyItem) -> VerifyItem:
    """Re-store the missing or corrupt blobs of a copy-mode version from its original files, when
    they still hash to the recorded digests; otherwise say why not."""
    if item.status not in ("missing", "corrupt") or art.store_mode != "copy":
        return item
    source = Path(art.source_path)
    wanted = [(source / f.path, f.digest) for f in art.files] if art.kind == "directory" else [(source, art.digest)]
    damaged = [(path, digest) for path, digest in wanted if blobs.verify(digest) != "ok"]

    def refuse(why: str) -> VerifyItem:
        return item.model_copy(update={"detail": f"{item.detail}; cannot repair: {why}"})

    # hash every original first (storing nothing): a damaged copy, nearly all good bytes and perhaps the
    # only ones left, goes only once a good one is certain to take its place
    for path, digest in damaged:
        try:
            got = blobs.put_file(path, copy=False)
        except (OSError, SourceChanged, ValueError) as exc:
            return refuse(f"{path}: {exc}")
        if got.digest != digest:
            return refuse(f"{path} has changed since it was registered")
    fixed = 0
    for path, digest in damaged:
        try:
            # swapped in over the damaged copy only once durable: a full disk or a source changing
            # mid-copy leaves the damaged copy where it was (perhaps the only bytes left)
            got = blobs.put_file(path, replace=True)
        except (OSError, SourceChanged, ValueError) as exc:
            return refuse(f"{path}: {exc}")
        if got.digest != digest:  # it changed between the check and the copy
            if not got.existed:
                blobs.delete(got.digest)  # stored only just now, for nothing: no orphan left
            return refuse(f"{path} changed while it was being repaired")
        fixed += 1
    if art.kind == "directory":
        blobs.delete_tree(art.digest)
        blobs.build_tree([(f.path, f.digest) for f in art.files])
    return item.model_copy(update={"status": "repaired", "detail": f"re-stored {fixed} blob(s) from {source}"})


def _verify_reference(blobs: BlobStore, art: StoredArtifact, item: VerifyItem) -> VerifyItem:
    # reference mode keeps no copy: rehash the original where it lies
    root = Path(art.source_path)
    files = art.files if art.kind == "directory" else [f.model_copy(update={"path": ""}) for f in art.files]
    for f in files:
        path = root / f.path if f.path else root
        try:
            got = blobs.put_file(path, copy=False).digest
        except FileNotFoundError:
            return item.model_copy(update={"status": "missing", "detail": f"{path} is gone"})
        except (OSError, SourceChanged, ValueError) as exc:
            return item.model_copy(update={"status": "changed", "detail": f"{path}: {exc}"})
        if got != f.digest:
            return item.model_copy(update={"status": "changed", "detail": f"{path} no longer matches its digest"})
    return item


@dataclass
class Sweep:
    """What a garbage collection frees: blobs and trees no live version needs."""

    blobs: list[GcItem]
    trees: list[str]

    @property
    def bytes(self) -> int:
        return sum(b.size for b in self.blobs)


def plan_sweep(blobs: BlobStore, referenced: set[str], live_trees: set[str], reasons: dict[str, str]) -> Sweep:
    """Every stored blob outside ``referenced`` and every tree outside ``live_trees``."""
    items = []
    for digest in blobs.digests():
        if digest in referenced:
            continue
        size = blobs.size(digest)  # not a path: with S3 that would download every orphan to stat it
        if size is None:
            continue
        items.append(GcItem(digest=digest, size=size, reason=reasons.get(digest, "orphan")))
    stale_trees = [d for d in blobs.tree_digests() if d not in live_trees]
    return Sweep(items, stale_trees)


def run_sweep(blobs: BlobStore, sweep: Sweep) -> None:
    """Delete the trees first (their hard links hold the blobs' space), then the blobs."""
    for digest in sweep.trees:
        blobs.delete_tree(digest)
    for item in sweep.blobs:
        blobs.delete(item.digest)


def digests_of(artifacts: Iterable[StoredArtifact]) -> set[str]:
    """The blobs a set of versions holds: the file, or a directory's manifest and files."""
    out: set[str] = set()
    for art in artifacts:
        out.add(art.digest)
        out.update(f.digest for f in art.files)
    return out
