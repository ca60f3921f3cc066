"""Parse the machine-written lock formats (uv, Poetry, pixi, Pipfile, conda-lock) to {package: version}.

Each parser takes the file's name (for messages) and its bytes, reads them with the standard data parsers
(``tomllib``, ``json``, ``yaml.safe_load``: nothing in a lock is ever executed) and returns names
normalised per PEP 503. Anything that is not the shape the tool writes raises ``EnvLockError`` saying
which file, which package and what is wrong.

A name can be locked more than once (uv forks a resolution per Python version; conda-lock and pixi
list every platform); the versions are then kept side by side, ``"2.2.6 | 2.4.6"``, so a diff shows
the lock as it is instead of a guess at which platform counts.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import yaml

from regd.ingest.boundedio import MAX_YAML_FLOW_DEPTH, yaml_flow_depth_ok
from regd.ingest.urls import redact_url


class EnvLockError(ValueError):
    """A lock file regd cannot read or parse; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class ParsedLock:
    """A lock's format and the packages it pins, by PEP 503 name."""

    kind: str
    packages: dict[str, str] = field(default_factory=dict)


_SEPARATORS = re.compile(r"[-_.]+")
_OPERATOR_START = tuple("<>=!~")


def normalise_name(name: str) -> str:
    """Return the PEP 503 form of a package name: lowercase, runs of ``-_.`` as one ``-``."""
    return _SEPARATORS.sub("-", name.strip()).lower()


def add_package(packages: dict[str, str], name: str, version: str) -> None:
    """Record ``name`` at ``version``, keeping an exact pin over a range and distinct pins side by side."""
    key = normalise_name(name)
    old = packages.get(key)
    if not old:
        packages[key] = version
        return
    if not version or old == version:
        return
    old_exact, new_exact = _is_exact(old), _is_exact(version)
    if old_exact != new_exact:
        # `numpy>=1.20` in base.txt and `numpy==1.26.4` in prod.txt: the pin is what gets installed.
        packages[key] = old if old_exact else version
        return
    alternatives = old.split(" | ")
    if version not in alternatives:
        packages[key] = " | ".join([*alternatives, version])


def _is_exact(version: str) -> bool:
    return not version.startswith(_OPERATOR_START) and "," not in version


def decode_text(name: str, data: bytes) -> str:
    """Decode a text lock as UTF-8 (a BOM is allowed), or say where it is not."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EnvLockError(f"{name}: not UTF-8 text (bad byte at offset {exc.start})") from None


def load_toml(name: str, data: bytes) -> dict[str, Any]:
    """Parse TOML, turning a syntax error into an ``EnvLockError`` with its line and column."""
    try:
        return tomllib.loads(decode_text(name, data))
    except tomllib.TOMLDecodeError as exc:
        raise EnvLockError(f"{name}: invalid TOML: {exc}") from None


def load_yaml_mapping(name: str, data: bytes) -> dict[Any, Any]:
    """Parse YAML with the safe loader; python tags, syntax errors and non-mappings are refused."""
    text = decode_text(name, data)
    if not yaml_flow_depth_ok(text):
        raise EnvLockError(f"{name}: [ ] or {{ }} nested more than {MAX_YAML_FLOW_DEPTH} deep")
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "syntax error"
        raise EnvLockError(f"{name}: invalid YAML{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise EnvLockError(f"{name}: invalid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise EnvLockError(f"{name}: expected a mapping at the top, found {_type_name(doc)}")
    return doc


def version_text(value: Any) -> str | None:
    """Return a version field as text; YAML may hand back ``1.5`` or ``2024`` as numbers."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float):
        return str(value)
    return None


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def _package_list(name: str, doc: dict[Any, Any], key: str) -> list[Any]:
    entries = doc.get(key, [])
    if not isinstance(entries, list):
        raise EnvLockError(f"{name}: '{key}' should be a list, found {_type_name(entries)}")
    return entries


def _entry_name(name: str, index: int, entry: Any) -> str:
    if not isinstance(entry, dict):
        raise EnvLockError(f"{name}: package #{index} is {_type_name(entry)}, not a table")
    value = entry.get("name")
    if not isinstance(value, str) or not value.strip():
        raise EnvLockError(f"{name}: package #{index} has no name")
    return value


def parse_uv_lock(name: str, data: bytes) -> dict[str, str]:
    """Read uv.lock's ``[[package]]`` tables; a package without a version is described by its source."""
    doc = load_toml(name, data)
    packages: dict[str, str] = {}
    for index, entry in enumerate(_package_list(name, doc, "package"), 1):
        pkg = _entry_name(name, index, entry)
        version = version_text(entry.get("version"))
        if version is None:
            # Workspace members with a dynamic version are locked by source only (`{ editable = "." }`).
            version = _describe_source(entry.get("source"))
        add_package(packages, pkg, version)
    return packages


def _describe_source(source: Any) -> str:
    if not isinstance(source, dict):
        return ""
    for kind in ("editable", "virtual"):
        if kind in source:
            return kind
    for kind in ("git", "url", "path", "directory"):
        value = source.get(kind)
        if isinstance(value, str):
            return redact_url(value)
    return ""


def parse_poetry_lock(name: str, data: bytes) -> dict[str, str]:
    """Read poetry.lock's ``[[package]]`` tables (every entry carries a version)."""
    doc = load_toml(name, data)
    packages: dict[str, str] = {}
    for index, entry in enumerate(_package_list(name, doc, "package"), 1):
        pkg = _entry_name(name, index, entry)
        version = version_text(entry.get("version"))
        if version is None:
            raise EnvLockError(f"{name}: package #{index} ({pkg}) has no version")
        add_package(packages, pkg, version)
    return packages


def parse_pipfile_lock(name: str, data: bytes) -> dict[str, str]:
    """Read Pipfile.lock's ``default`` and ``develop`` sections (``"version": "==1.2"``)."""
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as exc:
        raise EnvLockError(f"{name}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise EnvLockError(f"{name}: invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvLockError(f"{name}: expected a JSON object, found {_type_name(doc)}")
    packages: dict[str, str] = {}
    for section in ("default", "develop"):
        entries = doc.get(section, {})
        if not isinstance(entries, dict):
            raise EnvLockError(f"{name}: '{section}' should be an object, found {_type_name(entries)}")
        for pkg, entry in entries.items():
            if not isinstance(entry, dict):
                raise EnvLockError(f"{name}: {section}.{pkg} should be an object, found {_type_name(entry)}")
            add_package(packages, pkg, _pipfile_version(entry))
    return packages


def _pipfile_version(entry: dict[str, Any]) -> str:
    version = entry.get("version")
    if isinstance(version, str) and version.strip() not in ("", "*"):
        spec = version.strip()
        for operator in ("===", "=="):
            if spec.startswith(operator) and "," not in spec:
                return spec[len(operator) :].strip()
        return spec
    if entry.get("editable"):
        return "editable"
    for kind in ("git", "hg", "svn", "bzr"):
        if isinstance(entry.get(kind), str):
            ref = entry.get("ref")
            url = redact_url(entry[kind])
            return f"{url}@{ref}" if isinstance(ref, str) and ref else url
    for kind in ("file", "path"):
        if isinstance(entry.get(kind), str):
            return redact_url(entry[kind])
    return ""


def parse_pixi_lock(name: str, data: bytes) -> dict[str, str]:
    """Read pixi.lock: v4+ ``packages`` (conda entries named by URL in v6) or the older ``package`` list."""
    doc = load_yaml_mapping(name, data)
    key = "packages" if "packages" in doc else "package"
    packages: dict[str, str] = {}
    for index, entry in enumerate(_package_list(name, doc, key), 1):
        if not isinstance(entry, dict):
            raise EnvLockError(f"{name}: package #{index} is {_type_name(entry)}, not a mapping")
        pkg, version = entry.get("name"), version_text(entry.get("version"))
        if not isinstance(pkg, str) or not pkg.strip() or version is None:
            # v6 leaves out whatever the file name already says: `numpy-2.4.3-py313hf6604e3_0.conda`.
            is_pypi = "pypi" in entry or entry.get("kind") == "pypi" or entry.get("manager") == "pypi"
            location = entry.get("conda") or entry.get("pypi") or entry.get("url")
            guessed = _name_version_from_location(location, pypi=is_pypi)
            if guessed is None:
                raise EnvLockError(f"{name}: package #{index} has no name and version, and its URL does not tell them")
            pkg = pkg if isinstance(pkg, str) and pkg.strip() else guessed[0]
            version = version if version is not None else guessed[1]
        add_package(packages, pkg, version)
    return packages


_CONDA_SUFFIXES = (".conda", ".tar.bz2")
_SDIST_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".zip", ".tgz")


def _name_version_from_location(location: Any, *, pypi: bool) -> tuple[str, str] | None:
    """Split a package file name (``numpy-2.4.3-py313hf6604e3_0.conda``, a wheel, an sdist) into name, version."""
    if not isinstance(location, str):
        return None
    try:
        path = urlsplit(location).path
    except ValueError:
        return None
    filename = unquote(PurePosixPath(path).name)
    if not pypi:
        for suffix in _CONDA_SUFFIXES:
            if filename.endswith(suffix):
                parts = filename[: -len(suffix)].rsplit("-", 2)
                return (parts[0], parts[1]) if len(parts) == 3 and all(parts) else None
        return None
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (parts[0], parts[1]) if len(parts) >= 5 and parts[0] and parts[1] else None
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            stem, _, version = filename[: -len(suffix)].rpartition("-")
            return (stem, version) if stem and version else None
    return None


def parse_conda_lock(name: str, data: bytes) -> dict[str, str]:
    """Read conda-lock.yml's ``package`` list (one entry per package and platform)."""
    doc = load_yaml_mapping(name, data)
    packages: dict[str, str] = {}
    for index, entry in enumerate(_package_list(name, doc, "package"), 1):
        pkg = _entry_name(name, index, entry)
        version = version_text(entry.get("version"))
        if version is None:
            raise EnvLockError(f"{name}: package #{index} ({pkg}) has no version")
        add_package(packages, pkg, version)
    return packages
