"""Pinned packages from lock files (Poetry, Pipenv, uv, PEP 751 ``pylock.toml``, PDM) and requirements files.

Each lock format pins every package of a resolved environment: ``poetry.lock``, ``uv.lock`` and
``pdm.lock`` are TOML with ``[[package]]`` tables (``name``, ``version``); ``Pipfile.lock`` is JSON
with ``default`` and ``develop`` maps of ``name -> {"version": "==1.2"}``; ``pylock.toml`` and
``pylock.<name>.toml`` (PEP 751, https://peps.python.org/pep-0751/) hold ``[[packages]]`` tables.
A package installed from a local folder or a VCS checkout has no version anyone can look up, and
is listed as unpinned. The format is chosen by the file's name; any other file is read as a pip
requirements file by :func:`~bastion.audit.deps.requirements_packages`.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from bastion.audit.deps import RequirementsPackages, requirements_packages
from bastion.errors import DataError, NotFoundError

__all__ = ["LOCK_FORMATS", "locate_package", "lock_format", "packages_from_file"]

_PYLOCK = re.compile(r"^pylock\.([^.]+\.)?toml$")
# Source kinds (uv, PEP 751) that point at local or VCS code rather than a published release.
_LOCAL_SOURCES = ("editable", "virtual", "directory", "path", "vcs", "git")


def packages_from_file(path: str | Path) -> RequirementsPackages:
    """The pins of a lock file (by its name) or of a requirements file; DataError naming the file when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"requirements or lock file {path} does not exist")
    kind = lock_format(path)
    if kind is None:
        return requirements_packages(path)
    pinned, unpinned = LOCK_FORMATS[kind](path)
    if not pinned and not unpinned:
        raise DataError(f"{path}: the {kind} file lists no packages")
    return RequirementsPackages(pinned=tuple(dict.fromkeys(pinned)), unpinned=tuple(unpinned))


def lock_format(path: Path) -> str | None:
    """The lock format a file name says (a key of :data:`LOCK_FORMATS`), or None for a requirements file."""
    name = path.name
    if _PYLOCK.match(name):
        return "pylock.toml"
    return name if name in LOCK_FORMATS else None


def locate_package(path: str | Path, name: str) -> int | None:
    """The first line of ``path`` that names package ``name`` (for SARIF locations), or None."""
    wanted = canonicalize_name(name)
    quoted = re.compile(r"""["']([A-Za-z0-9][A-Za-z0-9._-]*)["']""")
    bare = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for number, line in enumerate(lines, start=1):
        names = quoted.findall(line) if lock_format(Path(path)) else bare.findall(line)
        if any(canonicalize_name(found) == wanted for found in names):
            return number
    return None


Pins = tuple[list[tuple[str, str]], list[str]]


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid TOML: {exc}") from exc


def _tables(path: Path, data: dict[str, Any], key: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each ``[[key]]`` table with its place (``package[3]``) for error messages."""
    tables = data.get(key)
    if tables is None:
        return
    if not isinstance(tables, list):
        raise DataError(f"{path}: field {key!r} must be an array of tables, got {type(tables).__name__}")
    for index, table in enumerate(tables):
        if not isinstance(table, dict):
            raise DataError(f"{path}: {key}[{index}] must be a table, got {type(table).__name__}")
        yield f"{key}[{index}]", table


def _text(path: Path, table: dict[str, Any], where: str, field: str) -> str | None:
    value = table.get(field)
    if value is not None and not isinstance(value, str):
        raise DataError(f"{path}: {where}.{field} must be a string, got {value!r}")
    return value


def _name(path: Path, table: dict[str, Any], where: str) -> str:
    name = _text(path, table, where, "name")
    if not name:
        raise DataError(f"{path}: {where} has no 'name'; expected the package's name")
    return canonicalize_name(name)


def _package_tables(path: Path, key: str, local: Callable[[dict[str, Any]], bool]) -> Pins:
    """``[[key]]`` tables with ``name`` and ``version``; local or versionless ones are unpinned."""
    pinned: list[tuple[str, str]] = []
    unpinned: list[str] = []
    for where, table in _tables(path, _toml(path), key):
        name = _name(path, table, where)
        version = _text(path, table, where, "version")
        if version is None or local(table):
            unpinned.append(name if version is None else f"{name} {version} (local)")
        else:
            pinned.append((name, version))
    return pinned, unpinned


def _poetry(path: Path) -> Pins:
    def local(table: dict[str, Any]) -> bool:
        source = table.get("source")
        return isinstance(source, dict) and source.get("type") in ("directory", "file", "git")

    return _package_tables(path, "package", local)


def _uv(path: Path) -> Pins:
    def local(table: dict[str, Any]) -> bool:
        source = table.get("source")
        return isinstance(source, dict) and any(kind in source for kind in _LOCAL_SOURCES)

    return _package_tables(path, "package", local)


def _pdm(path: Path) -> Pins:
    return _package_tables(path, "package", lambda table: any(k in table for k in ("path", "editable", "git")))


def _pylock(path: Path) -> Pins:
    data = _toml(path)
    if "lock-version" not in data:
        raise DataError(f"{path}: no 'lock-version' field; expected a PEP 751 lock file")
    return _package_tables(path, "packages", lambda table: "directory" in table or "vcs" in table)


def _pipfile(path: Path) -> Pins:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'default' and 'develop', got {type(data).__name__}")
    pinned: list[tuple[str, str]] = []
    unpinned: list[str] = []
    for group in ("default", "develop"):
        entries = data.get(group, {})
        if not isinstance(entries, dict):
            raise DataError(f"{path}: field {group!r} must be an object, got {type(entries).__name__}")
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                raise DataError(f"{path}: {group}.{name} must be an object, got {entry!r}")
            version = _text(path, entry, f"{group}.{name}", "version")
            if version is None or not version.startswith("=="):
                unpinned.append(canonicalize_name(name))
            else:
                pinned.append((canonicalize_name(name), version.removeprefix("==")))
    return pinned, unpinned


# File name -> reader. Read by packages_from_file, the CLI help and docs/audit.md.
LOCK_FORMATS: dict[str, Callable[[Path], Pins]] = {
    "Pipfile.lock": _pipfile,
    "pdm.lock": _pdm,
    "poetry.lock": _poetry,
    "pylock.toml": _pylock,
    "uv.lock": _uv,
}
