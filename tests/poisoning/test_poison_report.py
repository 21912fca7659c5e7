"""The poisoning report: JSON round trip, the standalone page (curves, table, escaping) and its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import DataError, NotFoundError
from bastion.report.poisoning import (
    DataSummary,
    PoisonAttackSummary,
    PoisoningReport,
    PoisonRun,
    poisoning_from_dict,
    poisoning_to_dict,
    read_poisoning_json,
    render_poisoning_html,
    write_poisoning_report,
)


def run(attack: str, rate: float, accuracy: float, success: float | None = None) -> PoisonRun:
    return PoisonRun(
        attack=attack, rate=rate, poisoned=round(rate * 1000), added=success is not None, clean_accuracy=accuracy,
        targeted_class_accuracy=None, attack_success=success, fit_seconds=1.5, details={"feature_distance": 0.5},
    )  # fmt: skip


@pytest.fixture
def report() -> PoisoningReport:
    data = DataSummary(name="digits-train", n_examples=1000, input_shape=(1, 8, 8), num_classes=10)
    return PoisoningReport(
        recipe="<script>alert(1)</script>",
        train=data,
        test=DataSummary(name="digits-test", n_examples=360, input_shape=(1, 8, 8), num_classes=10),
        rates=(0.05, 0.1),
        seed=0,
        epochs=3,
        baseline_accuracy=0.97,
        attacks=(
            PoisonAttackSummary("label-flip", "Random flips.", {}, None, None, None),
            PoisonAttackSummary("backdoor", "BadNets.", {"size": 3, "corner": "bottom-right"}, 1, None, "to 1"),
        ),
        runs=(
            run("label-flip", 0.1, 0.95),
            run("label-flip", 0.0, 0.97),
            run("label-flip", 0.05, 0.96),
            run("backdoor", 0.0, 0.97, 0.01),
            run("backdoor", 0.05, 0.97, 0.99),
            run("backdoor", 0.1, 0.96, 1.0),
        ),
        elapsed=12.0,
    )


def test_json_round_trip_is_exact(report: PoisoningReport, tmp_path: Path) -> None:
    assert poisoning_from_dict(json.loads(json.dumps(poisoning_to_dict(report)))) == report
    paths = write_poisoning_report(report, tmp_path / "out")
    assert read_poisoning_json(paths["json"]) == report
    assert [r.rate for r in report.curve("label-flip")] == [0.0, 0.05, 0.1]


def test_the_page_shows_curves_and_table_and_escapes_text(report: PoisoningReport, tmp_path: Path) -> None:
    paths = write_poisoning_report(report, tmp_path)
    html = paths["html"].read_text(encoding="utf-8")
    assert html == render_poisoning_html(report)
    assert html.count("data:image/png;base64,") == 1 and "default-src 'none'" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "-2.0 pp" in html and "99.0%" in html and "corner" in html


def test_bad_files_are_clear_errors(report: PoisoningReport, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no poisoning report at"):
        read_poisoning_json(tmp_path / "missing.json")
    data = poisoning_to_dict(report)
    with pytest.raises(DataError, match=r"schema version '2\.0' is not readable"):
        poisoning_from_dict({**data, "schema_version": "2.0"})
    del data["runs"]
    with pytest.raises(DataError, match="not a poisoning report: KeyError"):
        poisoning_from_dict(data)
