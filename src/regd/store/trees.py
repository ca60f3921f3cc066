"""Model directories: their digest, their manifest, and the read-only hard-linked tree users load.

The directory digest is defined as::

    manifest = "".join(sorted(f"{sha256}  {relpath}\\n" for relpath, sha256 in files)).encode("utf-8")
    dirdigest = sha256(manifest).hexdigest()

One line per file: the file's lowercase hex SHA-256, two spaces, its ``/``-separated path relative to
the model directory, a newline; lines sorted as Python sorts ``str`` (code point order, which is also
the byte order of their UTF-8). That is ``sha256sum``'s own output, so a user can check a directory
digest without regd (for names without a backslash, which sha256sum escapes)::

    cd model-dir && find . -type f -printf '%P\\0' | xargs -0 sha256sum | LC_ALL=C sort | sha256sum

The manifest is stored as a blob too, so its blob digest *is* the directory digest and a lost tree
can be rebuilt from the blobs alone.

Relpaths are refused when they could escape the tree or make two manifests read the same: absolute,
empty, with an empty, ``.`` or ``..`` component, with NUL or a newline, not valid UTF-8, duplicated, or
one file's path used as another's directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from regd.store.copying import fsync_dir

TMP_PREFIX = ".tmp-"
DIGEST_LEN = 64
_HEX = frozenset("0123456789abcdef")


def is_digest(name: object) -> bool:
    """Tell whether ``name`` is a SHA-256 hex digest as the store writes them (64 lowercase hex)."""
    return isinstance(name, str) and len(name) == DIGEST_LEN and _HEX.issuperset(name)


def check_digest(digest: str) -> str:
    """Return ``digest`` if it is 64 lowercase hex characters, else raise ValueError."""
    if not is_digest(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return digest


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it names a file safely inside a tree, else raise ValueError."""
    if not isinstance(relpath, str) or not relpath:
        raise ValueError(f"empty or non-string relpath: {relpath!r}")
    if "\0" in relpath or "\n" in relpath:
        raise ValueError(f"relpath contains NUL or a newline: {relpath!r}")
    if relpath.startswith("/"):
        raise ValueError(f"relpath is absolute: {relpath!r}")
    for part in relpath.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"relpath has an empty, '.' or '..' component: {relpath!r}")
    try:
        relpath.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"relpath is not valid UTF-8: {relpath!r}") from None
    return relpath


def _checked(files: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    entries = [(check_relpath(relpath), check_digest(digest)) for relpath, digest in files]
    paths = {relpath for relpath, _ in entries}
    if len(paths) != len(entries):
        raise ValueError("a relpath appears more than once")
    for relpath in paths:
        parts = relpath.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise ValueError(f"{'/'.join(parts[:i])!r} is both a file and the directory of {relpath!r}")
    return entries


def manifest(files: Iterable[tuple[str, str]]) -> bytes:
    """The directory manifest of ``[(relpath, sha256)]``: sorted ``<sha256>  <relpath>`` lines, UTF-8."""
    return "".join(sorted(f"{digest}  {relpath}\n" for relpath, digest in _checked(files))).encode("utf-8")


def tree_digest(files: Iterable[tuple[str, str]]) -> str:
    """The directory digest of ``[(relpath, sha256)]``: the SHA-256 of its manifest."""
    return hashlib.sha256(manifest(files)).hexdigest()


def build_tree(
    trees: Path, files: Sequence[tuple[str, str]], blob_path: Callable[[str], Path], dirdigest: str
) -> Path:
    """Make ``trees/<dirdigest>`` a read-only tree of hard links to the blobs; nothing if it exists.

    Built under ``trees/.tmp-*``, made durable, then renamed into place, so the stored path is either
    absent or complete.
    """
    final = trees / dirdigest
    if final.is_dir():
        return final
    entries = _checked(files)
    tmp = trees / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    os.mkdir(tmp, 0o755)
    try:
        dirs = {tmp}
        for relpath, digest in entries:
            dest = tmp / relpath
            for parent in reversed(dest.relative_to(tmp).parents[:-1]):
                if tmp / parent not in dirs:
                    os.mkdir(tmp / parent, 0o755)
                    dirs.add(tmp / parent)
            _link(blob_path(digest), dest, f"blob {digest} of {relpath!r} is not stored")
        # Deepest first: a directory made read-only can no longer take entries.
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            os.chmod(d, 0o555)
            fsync_dir(d)
        try:
            os.rename(tmp, final)
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            remove_tree(tmp)  # built meanwhile by someone else: same digest, same content
        fsync_dir(trees)
    except BaseException:
        if tmp.exists():
            remove_tree(tmp)
        raise
    return final


def _link(blob: Path, dest: Path, missing: str) -> None:
    try:
        os.link(blob, dest)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, missing, str(blob)) from None
    except OSError as e:
        if e.errno != errno.EMLINK:
            raise
        # ext4 allows 65000 links per inode: a file common to that many trees gets a copy.
        shutil.copyfile(blob, dest)
        os.chmod(dest, 0o444)
        fd = os.open(dest, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def delete_tree(trees: Path, dirdigest: str) -> bool:
    """Remove ``trees/<dirdigest>``; False if it was not there. The blobs stay."""
    final = trees / dirdigest
    doomed = trees / f"{TMP_PREFIX}del-{secrets.token_hex(8)}"
    try:
        # Renamed away first, so the stored path is either the whole tree or nothing.
        os.rename(final, doomed)
    except FileNotFoundError:
        return False
    fsync_dir(trees)
    remove_tree(doomed)
    return True


def remove_tree(tree: Path) -> None:
    """Delete a tree whose directories are read-only."""
    for dirpath, _, _ in os.walk(tree):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(tree)
