"""JSON round trip of an assessment and the schema-version guard."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bastion.errors import DataError, NotFoundError
from bastion.report import SCHEMA_VERSION, Assessment, from_dict, read_json, to_dict, write_json


def test_round_trip_through_a_file_is_exact(assessment: Assessment, tmp_path: Path) -> None:
    path = write_json(assessment, tmp_path / "report.json")
    restored = read_json(path)
    assert restored == assessment
    assert isinstance(restored.runs, tuple)
    assert isinstance(restored.examples[0].clean, tuple)
    assert restored.model.bounds == (0.0, 1.0)


def test_to_dict_is_plain_json(assessment: Assessment) -> None:
    data = to_dict(assessment)
    assert data == json.loads(json.dumps(data))
    assert data["schema_version"] == SCHEMA_VERSION
    assert from_dict(data) == assessment


def test_a_newer_minor_version_with_unknown_fields_is_read(assessment: Assessment) -> None:
    major = SCHEMA_VERSION.split(".")[0]
    data = to_dict(assessment) | {"schema_version": f"{major}.99", "later_field": 1}
    assert from_dict(data) == dataclasses.replace(assessment, schema_version=f"{major}.99")


def test_another_major_version_is_refused_naming_both(assessment: Assessment, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text(json.dumps(to_dict(assessment) | {"schema_version": "99.0"}), encoding="utf-8")
    with pytest.raises(DataError, match=rf"99\.0.*{SCHEMA_VERSION}"):
        read_json(path)


def test_a_missing_field_is_named(assessment: Assessment) -> None:
    data = to_dict(assessment)
    del data["model"]["num_classes"]
    with pytest.raises(DataError, match=r"report\.model\.num_classes"):
        from_dict(data)


def test_a_missing_version_or_a_bad_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="schema_version"):
        from_dict({})
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        read_json(tmp_path / "bad.json")
    with pytest.raises(NotFoundError, match="no report"):
        read_json(tmp_path / "absent.json")


def test_nan_is_refused_rather_than_written_as_invalid_json(assessment: Assessment, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="JSON cannot carry"):
        write_json(dataclasses.replace(assessment, clean_accuracy=float("nan")), tmp_path / "r.json")
