"""Parse the dependency lists people write by hand: pip requirements files and conda ``environment.yml``.

Requirements files follow pip's own reading: ``\\`` joins lines, `` #`` starts a comment, options
(``--index-url``, ``--hash``, ``--pre`` ...) are skipped, ``-r other.txt`` is followed relative to the file
that names it (at most five deep, each file once, a cycle refused), ``-c`` constraints add no packages, a URL
include is never fetched. ``${VAR}`` is left as written: expanding it would copy the daemon's environment
into the catalog.

What a requirement records: ``name==1.2`` and ``name===1.2`` -> ``1.2``; any other specifier as written
(``>=1.2,<2``); a bare name -> ``""``; ``name @ url``, a bare URL or path -> that URL or path, credentials
removed; ``-e <local path>`` -> ``editable``, ``-e <vcs url>`` -> the URL.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from regd.ingest.boundedio import read_bounded
from regd.ingest.lockformats import EnvLockError, add_package, decode_text, load_yaml_mapping
from regd.ingest.urls import redact_url

MAX_INCLUDE_DEPTH = 5
"""How many ``-r`` levels below the first file are followed."""
MAX_INCLUDED_FILES = 64
MAX_LINE = 256 * 1024
"""Characters in one logical line; pip-compile's longest (a requirement and its hashes) are a few KiB."""

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_NAME = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<rest>.*)$")
_CLAUSE = re.compile(r"^(===|==|!=|~=|<=|>=|<|>)([A-Za-z0-9.*+!_-]+)$")
_ARCHIVES = (".whl", ".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".tgz")
_INCLUDE_OPTIONS = frozenset({"-r", "--requirement"})
_CONSTRAINT_OPTIONS = frozenset({"-c", "--constraint"})
_EDITABLE_OPTIONS = frozenset({"-e", "--editable"})


@dataclass
class _Includes:
    """What one parse has read so far, so that includes stay bounded in bytes, files and depth."""

    budget: int
    files: int = 0
    done: set[Path] = field(default_factory=set)


def parse_requirements(path: Path, data: bytes, *, limit: int) -> dict[str, str]:
    """Parse a requirements file and everything it includes; ``limit`` bounds the bytes of all of them."""
    packages: dict[str, str] = {}
    includes = _Includes(budget=limit - len(data))
    _parse_file(path, data, packages, includes, stack=(_identity(path),), names=(path.name,))
    return packages


def parse_environment_yml(path: Path, data: bytes, *, limit: int) -> dict[str, str]:
    """Parse a conda environment file: its conda specs and the requirement lines of its ``pip:`` list."""
    name = path.name
    doc = load_yaml_mapping(name, data)
    dependencies = doc.get("dependencies") or []
    if not isinstance(dependencies, list):
        raise EnvLockError(f"{name}: 'dependencies' should be a list")
    packages: dict[str, str] = {}
    includes = _Includes(budget=limit - len(data))
    for index, dep in enumerate(dependencies, 1):
        if isinstance(dep, str):
            pkg, version = _conda_spec(dep, f"{name}: dependency #{index}")
            add_package(packages, pkg, version)
        elif isinstance(dep, dict) and set(dep) == {"pip"}:
            pip = dep["pip"] or []
            if not isinstance(pip, list):
                raise EnvLockError(f"{name}: dependency #{index}: 'pip' should be a list")
            for item_number, item in enumerate(pip, 1):
                if not isinstance(item, str):
                    raise EnvLockError(f"{name}: pip item #{item_number} should be a string")
                if len(item) > MAX_LINE:
                    raise EnvLockError(f"{name}: pip item #{item_number} is longer than {MAX_LINE // 1024} KiB")
                line = _strip_comment(item).strip()
                if not line:
                    continue
                _parse_line(
                    line,
                    f"{name}: pip item #{item_number}",
                    path.parent,
                    packages,
                    includes,
                    stack=(_identity(path),),
                    names=(name,),
                )
        else:
            raise EnvLockError(f"{name}: dependency #{index} should be a conda spec or a 'pip:' list")
    return packages


def _identity(path: Path) -> Path:
    """The real file behind ``path``, so that a cycle through a symlink is still a cycle."""
    return Path(os.path.realpath(path))


def _parse_file(
    path: Path,
    data: bytes,
    packages: dict[str, str],
    includes: _Includes,
    stack: tuple[Path, ...],
    names: tuple[str, ...],
) -> None:
    origin = " -> ".join(names)
    text = decode_text(origin, data)
    for number, line in _logical_lines(text):
        if len(line) > MAX_LINE:
            raise EnvLockError(f"{origin} line {number}: longer than {MAX_LINE // 1024} KiB")
        line = _strip_comment(line).strip()
        if line:
            _parse_line(line, f"{origin} line {number}", path.parent, packages, includes, stack, names)


def _strip_comment(line: str) -> str:
    """Cut a `` #`` comment as pip's ``(^|\\s+)#.*$`` does, in linear time (that regex is quadratic on blanks)."""
    index = line.find("#")
    while index != -1:
        if index == 0 or line[index - 1].isspace():
            return line[:index]
        index = line.find("#", index + 1)
    return line


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join ``\\`` continuations as pip does, each joined line numbered by its first physical line."""
    lines: list[tuple[int, str]] = []
    pending: list[str] = []
    first = 0
    for number, line in enumerate(text.splitlines(), 1):
        is_comment = line.lstrip().startswith("#")
        if not line.endswith("\\") or is_comment:
            if is_comment:
                line = " " + line  # keep a comment after a continuation a comment
            if pending:
                pending.append(line)
                lines.append((first, "".join(pending)))
                pending = []
            else:
                lines.append((number, line))
        else:
            if not pending:
                first = number
            pending.append(line[:-1])
    if pending:
        lines.append((first, "".join(pending)))
    return lines


def _parse_line(
    line: str,
    where: str,
    base: Path,
    packages: dict[str, str],
    includes: _Includes,
    stack: tuple[Path, ...],
    names: tuple[str, ...],
) -> None:
    if not line.startswith("-"):
        # As pip does: the requirement ends at the first token that is an option (`--hash=...`).
        words: list[str] = []
        for token in line.split(" "):
            if token.startswith("-"):
                break
            words.append(token)
        pkg, version = _requirement(" ".join(words).strip(), where, base)
        add_package(packages, pkg, version)
        return
    try:
        tokens = shlex.split(line)
    except ValueError as exc:
        raise EnvLockError(f"{where}: {exc}") from None
    option, value = _option(tokens)
    if option in _INCLUDE_OPTIONS:
        if not value:
            raise EnvLockError(f"{where}: {option} needs a file name")
        _include(value, where, base, packages, includes, stack, names)
    elif option in _EDITABLE_OPTIONS:
        if not value:
            raise EnvLockError(f"{where}: {option} needs a path or URL")
        pkg, version = _editable(value, where, base)
        add_package(packages, pkg, version)
    elif option in _CONSTRAINT_OPTIONS:
        return  # a constraints file limits versions of packages named elsewhere; it adds none
    # Index, hash and build options say nothing about which versions are installed.


def _option(tokens: list[str]) -> tuple[str, str | None]:
    """Split ``--requirement=x``, ``--requirement x``, ``-rx`` and ``-r x`` into the option and its value."""
    first = tokens[0]
    following = tokens[1] if len(tokens) > 1 else None
    if first.startswith("--"):
        option, equals, value = first.partition("=")
        return option, value if equals else following
    return first[:2], first[2:] or following


def _include(
    target: str,
    where: str,
    base: Path,
    packages: dict[str, str],
    includes: _Includes,
    stack: tuple[Path, ...],
    names: tuple[str, ...],
) -> None:
    if _URL.match(target):
        return  # regd works offline: a remote requirements file is never fetched
    path = base / target
    identity = _identity(path)
    if identity in stack:
        cycle = " -> ".join([*names, Path(target).name])
        raise EnvLockError(f"{where}: include cycle: {cycle}")
    if len(stack) > MAX_INCLUDE_DEPTH:
        raise EnvLockError(f"{where}: includes nested more than {MAX_INCLUDE_DEPTH} deep")
    if identity in includes.done:
        return  # a diamond (two files including base.txt): its packages are already in
    if includes.files >= MAX_INCLUDED_FILES:
        raise EnvLockError(f"{where}: more than {MAX_INCLUDED_FILES} included files")
    try:
        data = read_bounded(path, max(includes.budget, 0))
    except OSError as exc:
        if exc.errno == errno.EFBIG:  # the budget shared by the file and its includes ran out
            raise EnvLockError(f"{where}: the file and its includes add up to more than the lock limit") from None
        raise EnvLockError(f"{where}: cannot read included {target}: {exc.strerror or exc}") from None
    includes.budget -= len(data)
    includes.files += 1
    _parse_file(path, data, packages, includes, (*stack, identity), (*names, path.name))
    includes.done.add(identity)


def _requirement(text: str, where: str, base: Path) -> tuple[str, str]:
    """Read one requirement: a PEP 508 line, or a bare URL or path."""
    if _is_location(text):
        location = text.split("; ", 1)[0].strip()
        return _name_of_location(location, where, base), redact_url(location)
    match = _NAME.match(text)
    if match is None:
        raise EnvLockError(f"{where}: not a requirement (expected a line like name==1.2)")
    name, rest = match["name"], match["rest"].strip()
    if rest.startswith("@"):
        url = re.split(r"\s;", rest[1:], maxsplit=1)[0].strip()  # PEP 508: whitespace before a URL's marker
        if not url:
            raise EnvLockError(f"{where}: {name} @ needs a URL")
        return name, redact_url(url)
    spec = rest.split(";", 1)[0].strip()
    if spec.startswith("(") and spec.endswith(")"):
        spec = spec[1:-1]
    spec = re.sub(r"\s+", "", spec)
    if not spec:
        return name, ""
    clauses = [_CLAUSE.match(clause) for clause in spec.split(",")]
    if not all(clauses):
        raise EnvLockError(f"{where}: cannot read the version specifier of {name}")
    if len(clauses) == 1:
        clause = clauses[0]
        assert clause is not None
        if clause[1] in ("==", "===") and "*" not in clause[2]:
            return name, clause[2]
    return name, spec


def _is_location(text: str) -> bool:
    head = text.split(";", 1)[0].strip()
    if _URL.match(head) or head.startswith((".", "/", "~")):
        return True
    return head.endswith(_ARCHIVES) and "@" not in head  # `torch @ https://.../torch.whl` is PEP 508


def _editable(value: str, where: str, base: Path) -> tuple[str, str]:
    if _URL.match(value):
        return _name_of_location(value, where, base), redact_url(value)
    path = value
    if value.endswith("]") and "[" in value:  # `-e .[dev]`: the extras are not part of the path
        path = value[: value.rindex("[")]
    egg = _egg(value)
    return egg or _name_of_location(path, where, base), "editable"


def _egg(location: str) -> str | None:
    fragment = location.partition("#")[2]
    for part in fragment.split("&"):
        key, _, value = part.partition("=")
        if key == "egg":
            match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", value)
            if match:
                return match[0]
    return None


def _name_of_location(location: str, where: str, base: Path) -> str:
    """Name a URL or path requirement: its ``#egg=``, its wheel or sdist file name, else its last component."""
    egg = _egg(location)
    if egg:
        return egg
    try:
        raw_path = urlsplit(location).path if _URL.match(location) else location.partition("#")[0]
    except ValueError:
        raise EnvLockError(f"{where}: cannot read the URL") from None
    if raw_path in ("", ".", "./") and not _URL.match(location):
        raw_path = str(_identity(base))
    filename = unquote(PurePosixPath(raw_path.rstrip("/")).name)
    if filename.endswith(".whl"):
        filename = filename.split("-")[0]
    else:
        for suffix in _ARCHIVES:
            if filename.endswith(suffix):
                filename = filename[: -len(suffix)].rpartition("-")[0] or filename[: -len(suffix)]
                break
    filename = filename.split("@")[0].removesuffix(".git")  # `repo.git@v1.0` in a VCS URL
    if filename in ("", ".", ".."):
        filename = _identity(base / raw_path).name
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", filename)
    if match is None:
        raise EnvLockError(f"{where}: cannot tell the package name of this URL or path (add #egg=name)")
    return match[0]


_CONDA_SPEC = re.compile(r"^(?:[^\s:]+::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)(?P<rest>.*)$")


def _conda_spec(spec: str, where: str) -> tuple[str, str]:
    """Read a conda match spec: ``numpy=1.26``, ``numpy==1.26``, ``numpy=1.26.4=py311_0``, ``python>=3.10``."""
    match = _CONDA_SPEC.match(spec.strip())
    if match is None:
        raise EnvLockError(f"{where}: not a conda package spec")
    name, rest = match["name"], match["rest"].strip()
    if not rest:
        return name, ""
    if rest.startswith("["):
        version = re.search(r"version\s*=\s*['\"]?([^'\",\]]+)", rest)
        return name, version[1].strip() if version else ""
    if rest.startswith("=="):
        return name, rest[2:].split("=")[0].strip()
    if rest.startswith("="):
        return name, rest[1:].split("=")[0].strip()  # `=1.26.4=py311_0`: the build string is not the version
    if rest.startswith(("<", ">", "!", "~")):
        return name, re.sub(r"\s+", "", rest)
    return name, rest.split()[0]  # the space form, `numpy 1.26.* py311_0`
