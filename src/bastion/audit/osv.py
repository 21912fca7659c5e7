"""An offline vulnerability database read from OSV JSON records in a folder or a zip, matched with PEP 440 rules.

OSV (https://ossf.github.io/osv-schema/) publishes one JSON record per advisory: an ``id``, its
``aliases``, and per affected package its ``ecosystem`` and ``name``, ``ranges`` of ``ECOSYSTEM``
events (``introduced``, ``fixed``, ``last_affected``, ``limit``) and an explicit ``versions`` list.
Only ``PyPI`` entries are kept; package names are normalised per PEP 503 and versions compared
with :mod:`packaging.version`, so ``1.4.1 < 1.4.2`` and ``1.10 > 1.9``. Nothing is fetched.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from bastion.errors import DataError, NotFoundError

__all__ = ["Advisory", "AffectedRange", "OsvDatabase"]

logger = logging.getLogger(__name__)

_ECOSYSTEM = "pypi"
_EVENT_KINDS = ("introduced", "fixed", "last_affected", "limit")
_MAX_RECORD_BYTES = 16 * 1024 * 1024  # the largest real OSV records are a few hundred KB


@dataclass(frozen=True)
class AffectedRange:
    """One ``ECOSYSTEM`` range: its events in the record's order, as ``(kind, version)`` pairs."""

    events: tuple[tuple[str, str], ...]

    def contains(self, version: Version) -> bool:
        """Whether ``version`` lies in the range (OSV's evaluation: sorted events, last one at or below wins)."""
        affected = False
        for kind, raw in sorted(self.events, key=_event_order):
            bound = _parse_event_version(raw)
            if kind == "introduced" and version >= bound:
                affected = True
            elif (kind in ("fixed", "limit") and version >= bound) or (kind == "last_affected" and version > bound):
                affected = False
        return affected

    @property
    def fixed(self) -> tuple[str, ...]:
        """The versions this range names as fixed."""
        return tuple(raw for kind, raw in self.events if kind == "fixed")


@dataclass(frozen=True)
class Advisory:
    """One OSV record's view of one PyPI package."""

    id: str
    package: str  # PEP 503 normalised
    aliases: tuple[str, ...]
    summary: str
    severity: str | None
    ranges: tuple[AffectedRange, ...]
    versions: tuple[str, ...]

    def affects(self, version: str) -> bool:
        """Whether ``version`` is listed explicitly or falls in one of the ranges."""
        parsed = _try_version(version)
        if parsed is None:
            return version in self.versions
        if any(_try_version(listed) == parsed for listed in self.versions):
            return True
        return any(r.contains(parsed) for r in self.ranges)

    @property
    def fixed_versions(self) -> tuple[str, ...]:
        """Every version a range of this advisory names as fixed, sorted, without repeats."""
        found = {v for r in self.ranges for v in r.fixed}
        return tuple(sorted(found, key=Version))


class OsvDatabase:
    """Advisories indexed by normalised package name; build one with :meth:`load`."""

    def __init__(self, advisories: Mapping[str, tuple[Advisory, ...]]) -> None:
        self.advisories = dict(advisories)

    @classmethod
    def load(cls, path: str | Path) -> OsvDatabase:
        """Read every ``*.json`` record under a folder or inside a ``.zip``; a malformed record is a DataError."""
        root = Path(path)
        if not root.exists():
            raise NotFoundError(f"vulnerability database {root} does not exist")
        index: dict[str, list[Advisory]] = {}
        count = 0
        for source, text in _records(root):
            for advisory in _parse_record(source, text):
                index.setdefault(advisory.package, []).append(advisory)
            count += 1
        logger.info("loaded %d OSV records (%d PyPI packages) from %s", count, len(index), root)
        return cls({name: tuple(items) for name, items in index.items()})

    def for_package(self, name: str) -> tuple[Advisory, ...]:
        """The advisories that name ``name`` (any spelling PEP 503 treats as the same)."""
        return self.advisories.get(canonicalize_name(name), ())

    def __len__(self) -> int:
        return sum(len(items) for items in self.advisories.values())


def _records(root: Path) -> Iterator[tuple[str, str]]:
    """Yield ``(name for errors, JSON text)`` for each record of a folder or a zip."""
    if root.is_dir():
        for file in sorted(root.rglob("*.json")):
            if file.stat().st_size > _MAX_RECORD_BYTES:
                raise DataError(f"OSV record {file} is larger than {_MAX_RECORD_BYTES} bytes")
            yield str(file), _decode(str(file), file.read_bytes())
        return
    if not zipfile.is_zipfile(root):
        raise DataError(f"vulnerability database {root} is neither a folder nor a zip of OSV JSON records")
    with zipfile.ZipFile(root) as archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.is_dir() or not info.filename.endswith(".json"):
                continue
            name = f"{root}:{info.filename}"
            if info.file_size > _MAX_RECORD_BYTES:
                raise DataError(f"OSV record {name} is larger than {_MAX_RECORD_BYTES} bytes")
            yield name, _decode(name, archive.read(info))


def _decode(source: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"OSV record {source} is not UTF-8 text: {exc}") from exc


def _parse_record(source: str, text: str) -> list[Advisory]:
    """The PyPI advisories of one record; anything off the OSV schema raises a DataError naming ``source``."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"OSV record {source} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise DataError(f"OSV record {source} has no string 'id'; expected an OSV advisory object")
    if record.get("withdrawn"):
        return []
    try:
        return [_advisory(record, entry) for entry in _pypi_entries(record)]
    except (KeyError, TypeError, ValueError, InvalidVersion) as exc:
        raise DataError(f"OSV record {source} ({record['id']}) is malformed: {exc!r}") from exc


def _pypi_entries(record: dict[str, Any]) -> Iterator[dict[str, Any]]:
    affected = record.get("affected", [])
    if not isinstance(affected, list):
        raise TypeError("'affected' must be a list")
    for entry in affected:
        package = entry["package"]
        if str(package["ecosystem"]).lower() == _ECOSYSTEM:
            yield entry


def _advisory(record: dict[str, Any], entry: dict[str, Any]) -> Advisory:
    ranges = tuple(_range(r) for r in entry.get("ranges", []) if r["type"] == "ECOSYSTEM")
    versions = tuple(_strings(entry.get("versions", []), "versions"))
    name = entry["package"]["name"]
    if not isinstance(name, str) or not name:
        raise TypeError(f"'package.name' must be a non-empty string, got {name!r}")
    return Advisory(
        id=record["id"],
        package=canonicalize_name(name),
        aliases=tuple(_strings(record.get("aliases", []), "aliases")),
        summary=str(record.get("summary") or record.get("details", "")).strip(),
        severity=_severity(record),
        ranges=ranges,
        versions=versions,
    )


def _range(raw: dict[str, Any]) -> AffectedRange:
    events: list[tuple[str, str]] = []
    for event in raw["events"]:
        if not isinstance(event, dict) or len(event) != 1:
            raise ValueError(f"a range event must hold exactly one key, got {event!r}")
        ((kind, version),) = event.items()
        if kind not in _EVENT_KINDS:
            raise ValueError(f"unknown range event {kind!r}; expected one of {_EVENT_KINDS}")
        _parse_event_version(str(version))  # refuse a bad version now, naming the file
        events.append((kind, str(version)))
    return AffectedRange(events=tuple(events))


def _strings(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"{field!r} must be a list of strings, got {value!r}")
    return list(value)


def _severity(record: dict[str, Any]) -> str | None:
    """GitHub's label (``database_specific.severity``, e.g. HIGH) when given, else the first CVSS vector."""
    specific = record.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("severity"), str):
        return str(specific["severity"]).upper()
    scores = record.get("severity")
    if isinstance(scores, list) and scores and isinstance(scores[0], dict) and "score" in scores[0]:
        return str(scores[0]["score"])
    return None


def _parse_event_version(raw: str) -> Version:
    # OSV writes "0" for "every version since the first"; Version("0") already sorts below all others.
    return Version(raw)


def _event_order(event: tuple[str, str]) -> tuple[Version, int]:
    # At one version, "introduced" applies before "fixed"/"limit" so a zero-width range stays empty.
    return _parse_event_version(event[1]), 0 if event[0] == "introduced" else 1


def _try_version(raw: str) -> Version | None:
    try:
        return Version(raw)
    except InvalidVersion:
        return None
