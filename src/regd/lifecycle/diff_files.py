"""Compare the files of two artifacts, and their descriptors (``config.json``, ``MLmodel``) key by key.

The format readers keep only a few facts of ``config.json`` in ``format_metadata``, so the whole
descriptor is read back from the stored blob (by digest), else from the stored tree or the original
path, and used only when its SHA-256 still matches what was registered. Reading is blocking:
``read_descriptors`` runs in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from regd.diffmodel import DescriptorDiff, FileChange, FilesDiff
from regd.domain import FileEntry, Version
from regd.lifecycle.diff_keys import key_diff
from regd.store.blobs import BlobStore

DESCRIPTORS = ("config.json", "adapter_config.json", "generation_config.json", "MLmodel")
"""Top-level files of a model directory compared key by key."""
MAX_DESCRIPTOR_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Descriptor:
    """A descriptor's parsed content, or why it has none."""

    content: dict[str, Any] | None = None
    note: str | None = None


DescriptorPair = tuple[Descriptor | None, Descriptor | None]
"""a's and b's; None where the side has no such file."""


class _NoAliasLoader(yaml.SafeLoader):
    """MLmodel never uses anchors; a file that does may be a billion-laughs bomb."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("YAML aliases are not accepted")
        return super().compose_node(parent, index)


def _entries(version: Version) -> dict[str, FileEntry]:
    return {f.path: f for f in version.artifact.files}


def changed_descriptors(a: Version, b: Version) -> list[str]:
    """The descriptor relpaths of either directory whose bytes differ between the sides."""
    if a.artifact.kind != "directory" and b.artifact.kind != "directory":
        return []
    ea, eb = _entries(a), _entries(b)
    out = []
    for name in DESCRIPTORS:
        fa, fb = ea.get(name), eb.get(name)
        if (fa or fb) and (fa is None or fb is None or fa.digest != fb.digest):
            out.append(name)
    return out


def read_descriptors(a: Version, b: Version, blobs: BlobStore) -> dict[str, DescriptorPair]:
    """Load every changed descriptor of both sides (blocking: call through ``asyncio.to_thread``)."""
    out: dict[str, DescriptorPair] = {}
    for name in changed_descriptors(a, b):
        pair = []
        for version in (a, b):
            entry = _entries(version).get(name)
            pair.append(load_descriptor(version, entry, blobs) if entry else None)
        out[name] = (pair[0], pair[1])
    return out


def load_descriptor(version: Version, entry: FileEntry, blobs: BlobStore) -> Descriptor:
    """Read one descriptor of ``version`` from wherever its registered bytes still are."""
    if entry.size > MAX_DESCRIPTOR_BYTES:
        return Descriptor(note=f"{entry.path} is {entry.size} bytes, over the {MAX_DESCRIPTOR_BYTES} compared")
    art = version.artifact
    candidates: list[Path] = []
    try:
        candidates.append(blobs.path(entry.digest))
    except ValueError:
        pass
    rel = PurePosixPath(entry.path)
    if art.kind == "directory" and not rel.is_absolute() and ".." not in rel.parts:
        candidates += [Path(art.stored_path) / rel, Path(art.source_path) / rel]
    for path in candidates:
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_DESCRIPTOR_BYTES + 1)
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() != entry.digest:
            continue  # changed on disk since registration (reference mode): not what was registered
        return _parse(entry.path, data)
    return Descriptor(note=f"the registered bytes of {entry.path} are gone (pruned, or changed on disk)")


def _parse(name: str, data: bytes) -> Descriptor:
    try:
        if name.endswith(".json"):
            doc = json.loads(data)
        else:
            doc = yaml.load(data, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        return Descriptor(note=f"{name} does not parse: {str(exc)[:200]}")
    if not isinstance(doc, dict):
        return Descriptor(note=f"{name} is not a mapping")
    return Descriptor(content=doc)


def files_diff(a: Version, b: Version, descriptors: dict[str, DescriptorPair] | None = None) -> FilesDiff:
    """Compare files by relative path and digest; two single files are paired whatever their names."""
    diff = FilesDiff()
    fa, fb = a.artifact.files, b.artifact.files
    if a.artifact.kind == "file" and b.artifact.kind == "file" and len(fa) == 1 and len(fb) == 1:
        x, y = fa[0], fb[0]
        if x.digest == y.digest:
            diff.unchanged = 1
        else:
            path = x.path if x.path == y.path else f"{x.path} -> {y.path}"
            diff.changed.append(FileChange(path=path, a_digest=x.digest, b_digest=y.digest, a_size=x.size, b_size=y.size))
        return diff
    ea, eb = _entries(a), _entries(b)
    for path in sorted(ea.keys() | eb.keys()):
        x, y = ea.get(path), eb.get(path)
        if x is None and y is not None:
            diff.added.append(y)
        elif y is None and x is not None:
            diff.removed.append(x)
        elif x is not None and y is not None:
            if x.digest == y.digest:
                diff.unchanged += 1
            else:
                diff.changed.append(FileChange(path=path, a_digest=x.digest, b_digest=y.digest, a_size=x.size, b_size=y.size))
    for name, (da, db) in (descriptors or {}).items():
        diff.descriptors.append(descriptor_diff(name, da, db))
    return diff


def descriptor_diff(name: str, a: Descriptor | None, b: Descriptor | None) -> DescriptorDiff:
    """Compare two loaded descriptors key by key (dotted keys); a missing side counts as empty."""
    notes = [f"{side}: {d.note}" for side, d in (("a", a), ("b", b)) if d is not None and d.note]
    if notes:
        return DescriptorDiff(path=name, note="; ".join(notes))
    return DescriptorDiff(path=name, keys=key_diff(a.content if a else {}, b.content if b else {}, nested=True))


def describe(diff: FilesDiff) -> str:
    """``files: 2 changed, 1 added`` for directories, or empty."""
    counts = [(len(diff.changed), "changed"), (len(diff.added), "added"), (len(diff.removed), "removed")]
    listed = [f"{n} {what}" for n, what in counts if n]
    return f"files: {', '.join(listed)}" if listed else ""
