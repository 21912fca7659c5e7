"""The one place an :class:`~bastion.report.model.Assessment` turns into JSON and back.

``from_dict(to_dict(a)) == a`` holds exactly: tuples come back as tuples and nested value types
as their dataclasses. The free-form ``AttackRun.config`` and ``Finding.details`` dictionaries
are stored as given, so they should hold JSON values only (a tuple there comes back a list).

A file whose ``schema_version`` has another major version than :data:`SCHEMA_VERSION` is
refused; a newer minor version is read, and fields this version does not know are ignored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

from bastion.errors import DataError, NotFoundError
from bastion.report.model import SCHEMA_VERSION, Assessment

__all__ = ["from_dict", "read_json", "read_json_file", "to_dict", "write_json", "write_strict_json"]

logger = logging.getLogger(__name__)


def to_dict(assessment: Assessment) -> dict[str, Any]:
    """The assessment as plain JSON values (tuples become lists)."""
    return _jsonable(dataclasses.asdict(assessment))  # type: ignore[no-any-return]


def from_dict(data: dict[str, Any]) -> Assessment:
    """Rebuild an assessment from :func:`to_dict`'s output (or parsed JSON of it)."""
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object for the report, got {type(data).__name__}")
    _check_version(data.get("schema_version"))
    assessment: Assessment = _build(Assessment, data, "report")
    return assessment


def write_json(assessment: Assessment, path: str | Path) -> Path:
    """Write the assessment as indented, strict JSON (no NaN or Infinity) and return the path."""
    return write_strict_json(to_dict(assessment), path, what="report")


def read_json(path: str | Path) -> Assessment:
    """Read an assessment written by :func:`write_json`."""
    return from_dict(read_json_file(path, what="report"))


def write_strict_json(data: Any, path: str | Path, *, what: str) -> Path:
    """``data`` as indented JSON without NaN or Infinity (other readers reject them); the path written."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        raise DataError(f"the {what} holds a value JSON cannot carry: {exc}") from exc
    path = Path(path)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_json_file(path: str | Path, *, what: str) -> Any:
    """The JSON value in ``path``; NotFoundError or DataError naming the file and ``what`` was expected."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFoundError(f"no {what} at {path}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc


def _check_version(version: object) -> None:
    if not isinstance(version, str) or not version:
        raise DataError(f"the report has no schema_version string (got {version!r})")
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise DataError(
            f"report schema version {version} is not readable by this Bastion, "
            f"which reads schema version {SCHEMA_VERSION} (the major versions differ)"
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return value


def _build(cls: type[Any], data: Any, where: str) -> Any:
    """Construct dataclass ``cls`` from a JSON object, converting each field by its annotation."""
    if not isinstance(data, dict):
        raise DataError(f"expected an object at {where}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in fields(cls):
        if field.name in data:
            values[field.name] = _convert(hints[field.name], data[field.name], f"{where}.{field.name}")
        elif field.default is MISSING and field.default_factory is MISSING:
            raise DataError(f"the report lacks the field {where}.{field.name}")
    unknown = sorted(set(data) - {field.name for field in fields(cls)})
    if unknown:
        logger.debug("ignoring fields unknown to schema %s at %s: %s", SCHEMA_VERSION, where, unknown)
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Turn one JSON value into what annotation ``hint`` asks for (dataclass, tuple or as is)."""
    if is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and value is not None:
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if typing.get_origin(hint) is tuple:
        return _convert_tuple(typing.get_args(hint), value, where)
    return value


def _convert_tuple(args: tuple[Any, ...], value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise DataError(f"expected a list at {where}, got {type(value).__name__}")
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
        return tuple(_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if len(args) != len(value):
        raise DataError(f"expected {len(args)} items at {where}, got {len(value)}")
    return tuple(_convert(arg, item, f"{where}[{i}]") for i, (arg, item) in enumerate(zip(args, value, strict=True)))
