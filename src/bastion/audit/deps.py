"""Known-vulnerable dependencies, found offline: installed or pinned packages matched against a local OSV database.

The packages come from the running environment (:func:`environment_packages`, read with
:mod:`importlib.metadata`) or from a requirements file (:func:`requirements_packages`, parsed
with :mod:`packaging`); only ``==``/``===`` pins give a version, and anything else is reported
as unpinned rather than guessed. :func:`audit_dependencies` matches each ``(name, version)``
against an :class:`~bastion.audit.osv.OsvDatabase` and returns one :class:`Finding` per advisory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from bastion.audit.osv import OsvDatabase
from bastion.errors import DataError, NotFoundError

__all__ = [
    "Finding",
    "RequirementsPackages",
    "audit_dependencies",
    "environment_packages",
    "requirements_packages",
]

logger = logging.getLogger(__name__)

# pip's per-requirement options that say nothing about the version: ``foo==1.0 --hash=sha256:...``
_TRAILING_OPTION = re.compile(r"\s+--?[A-Za-z][\w-]*(?:[=\s]\S+)?")
_INCLUDE_OPTIONS = ("-r", "--requirement")
_INCLUDE = re.compile(r"^(?:-r|--requirement)[=\s]*")


@dataclass(frozen=True)
class Finding:
    """One advisory that applies to one installed or pinned package version."""

    package: str  # PEP 503 normalised
    version: str
    id: str
    aliases: tuple[str, ...]
    fixed_versions: tuple[str, ...]
    summary: str
    severity: str | None


@dataclass(frozen=True)
class RequirementsPackages:
    """What a requirements file pins (``(name, version)`` pairs), and the requirements it leaves unpinned."""

    pinned: tuple[tuple[str, str], ...]
    unpinned: tuple[str, ...]  # each as written, e.g. "requests>=2" or "-e ./local"


def audit_dependencies(packages: Sequence[tuple[str, str]], db: OsvDatabase) -> list[Finding]:
    """Every advisory of ``db`` that affects one of ``packages``, sorted by package, version and id."""
    findings: list[Finding] = []
    for name, version in packages:
        for advisory in db.for_package(name):
            if advisory.affects(version):
                findings.append(
                    Finding(
                        package=canonicalize_name(name),
                        version=version,
                        id=advisory.id,
                        aliases=advisory.aliases,
                        fixed_versions=advisory.fixed_versions,
                        summary=advisory.summary,
                        severity=advisory.severity,
                    )
                )
    logger.info("%d findings for %d packages", len(findings), len(packages))
    return sorted(set(findings), key=lambda f: (f.package, f.version, f.id))


def environment_packages() -> list[tuple[str, str]]:
    """The distributions installed in the running interpreter, as sorted ``(normalised name, version)`` pairs."""
    found: set[tuple[str, str]] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:  # a broken install can leave a dist-info folder without metadata
            found.add((canonicalize_name(name), dist.version))
    return sorted(found)


def requirements_packages(path: str | Path) -> RequirementsPackages:
    """The pins of a pip requirements file (following ``-r`` includes); a line that does not parse is a DataError."""
    pinned: list[tuple[str, str]] = []
    unpinned: list[str] = []
    _read_requirements(Path(path), pinned, unpinned, seen=set())
    return RequirementsPackages(pinned=tuple(dict.fromkeys(pinned)), unpinned=tuple(unpinned))


def _read_requirements(path: Path, pinned: list[tuple[str, str]], unpinned: list[str], *, seen: set[Path]) -> None:
    if not path.is_file():
        raise NotFoundError(f"requirements file {path} does not exist")
    if path.resolve() in seen:
        return  # an include cycle: every line was already read once
    seen.add(path.resolve())
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: expected UTF-8 text, got undecodable bytes at offset {exc.start}") from exc
    for number, line in _logical_lines(text):
        where = f"{path}:{number}"
        if line.startswith(_INCLUDE_OPTIONS):
            target = _INCLUDE.sub("", line).strip()
            _read_requirements(path.parent / target, pinned, unpinned, seen=seen)
        elif line.startswith(("-e", "--editable")):
            unpinned.append(line)
        elif line.startswith("-"):
            logger.debug("%s: pip option %r ignored", where, line)
        else:
            _add_requirement(line, where, pinned, unpinned)


def _add_requirement(line: str, where: str, pinned: list[tuple[str, str]], unpinned: list[str]) -> None:
    text = _TRAILING_OPTION.sub("", line).strip()
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        raise DataError(f"{where}: cannot parse requirement {line!r}: {exc}") from exc
    if requirement.marker is not None and not requirement.marker.evaluate():
        logger.debug("%s: %r does not apply to this interpreter", where, text)
        return
    version = _pinned_version(requirement)
    if version is None:
        unpinned.append(text)
    else:
        pinned.append((canonicalize_name(requirement.name), version))


def _pinned_version(requirement: Requirement) -> str | None:
    """The one version an exact ``==``/``===`` pin allows; None for ranges, wildcards and URLs."""
    specs = list(requirement.specifier)
    if requirement.url or len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    return specs[0].version


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with comments dropped and ``\\`` continuations joined, each with its first physical line number."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        stripped = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if pending.strip():
        lines.append((start, pending.strip()))
    return lines
