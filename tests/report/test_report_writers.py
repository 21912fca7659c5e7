"""write_report: the three files, with HTML and JUnit rendered from what the JSON holds."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

from bastion.report import Assessment, read_json, write_report, writers


def test_writes_the_three_files(assessment: Assessment, tmp_path: Path) -> None:
    paths = write_report(assessment, tmp_path / "out")
    assert {key: path.name for key, path in paths.items()} == {
        "json": "report.json",
        "html": "report.html",
        "junit": "junit.xml",
    }
    assert read_json(paths["json"]) == assessment
    assert "digits-cnn" in paths["html"].read_text(encoding="utf-8")
    assert "bastion.assess" in paths["junit"].read_text(encoding="utf-8")


def test_views_are_rendered_from_the_json_file(assessment: Assessment, tmp_path: Path) -> None:
    stored: list[Assessment] = []

    def fake_read(path: Path) -> Assessment:
        restored = read_json(path)
        stored.append(restored)
        return restored

    with (
        mock.patch.object(writers, "read_json", fake_read),
        mock.patch.object(writers, "write_html") as html,
        mock.patch.object(writers, "write_junit") as junit,
    ):
        write_report(assessment, tmp_path)
    assert html.call_args.args[0] is stored[0]
    assert junit.call_args.args[0] is stored[0]
    assert json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))["model"]["name"] == "digits-cnn"
