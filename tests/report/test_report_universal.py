"""Universal patterns in the report: JSON round trip (and 1.0 files), the HTML section, the PNG, JUnit, terminal."""

from __future__ import annotations

import dataclasses
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console

from bastion.report import (
    Assessment,
    UniversalRun,
    from_dict,
    print_summary,
    read_json,
    render_html,
    render_junit,
    to_dict,
    write_report,
)
from bastion.report.figures import pattern_png


def _patch(**changes: object) -> UniversalRun:
    run = UniversalRun(
        attack="patch",
        config={"size": 0.5, "steps": 300, "scale": [0.8, 1.2], "target": None, "train_share": 0.5, "seed": 0},
        n_train=100,
        n_holdout=100,
        train_success=0.61,
        holdout_success=0.583,
        holdout_target_success=None,
        baseline_success=0.12,
        queries=38_400,
        gradients=38_400,
        elapsed=12.5,
        shape=(1, 4, 4),
        pixels=tuple(range(0, 256, 16)),
        pixel_range=(0.0, 1.0),
    )
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


def _perturbation() -> UniversalRun:
    return _patch(
        attack="universal-perturbation",
        config={"norm": "linf", "eps": 0.2, "epochs": 5},
        shape=(1, 8, 8),
        pixels=tuple(128 + (i % 3 - 1) * 127 for i in range(64)),
        pixel_range=(-0.2, 0.2),
        holdout_target_success=0.375,
    )


@pytest.fixture
def with_patterns(assessment: Assessment) -> Assessment:
    return dataclasses.replace(assessment, universal=(_patch(), _perturbation()))


def _section(page: str) -> str:
    start = page.index('<section id="universal">')
    return page[start : page.index("</section>", start)]


def test_round_trip_is_exact(with_patterns: Assessment, tmp_path: Path) -> None:
    data = to_dict(with_patterns)
    assert data == json.loads(json.dumps(data))
    restored = from_dict(data)
    assert restored == with_patterns
    assert isinstance(restored.universal[0].shape, tuple) and isinstance(restored.universal[0].pixel_range, tuple)


def test_a_1_0_report_without_patterns_still_reads(assessment: Assessment) -> None:
    data = to_dict(assessment) | {"schema_version": "1.0"}
    del data["universal"]
    assert from_dict(data) == dataclasses.replace(assessment, schema_version="1.0")


def test_html_shows_each_pattern_with_its_held_out_figures(with_patterns: Assessment) -> None:
    section = _section(render_html(with_patterns))
    assert "<h3>Adversarial patch</h3>" in section and "<h3>Universal perturbation</h3>" in section
    assert section.count('src="data:image/png;base64,') == 2
    assert "58.3%" in section and "12.0%" in section  # held-out fooling rate and the random baseline
    assert section.count("held-out target success") == 1 and "37.5%" in section  # only the targeted one
    assert "100 for training, 100 held out" in section
    assert "size=0.5, steps=300" in section
    assert "mid-grey = no change" in section
    assert section.count("not saved") == 2


def test_a_pattern_that_is_not_an_image_is_listed_without_a_picture(assessment: Assessment) -> None:
    tabular = _patch(attack="universal-perturbation", shape=(30,), pixels=(128,) * 30, pixel_range=(-0.1, 0.1))
    section = _section(render_html(dataclasses.replace(assessment, universal=(tabular,))))
    assert "data:image/png" not in section
    assert "a pattern of shape (30,) is not an image" in section


def test_no_patterns_no_section(assessment: Assessment) -> None:
    assert 'id="universal"' not in render_html(assessment)


def test_write_report_saves_each_image_pattern_as_png_and_records_it(with_patterns: Assessment, tmp_path: Path) -> None:
    written = write_report(with_patterns, tmp_path)
    assert written["patch"] == tmp_path / "patch.png"
    assert written["universal-perturbation"] == tmp_path / "universal-perturbation.png"
    stored = read_json(written["json"])
    assert [run.png for run in stored.universal] == ["patch.png", "universal-perturbation.png"]
    assert stored == dataclasses.replace(
        with_patterns,
        universal=tuple(
            dataclasses.replace(run, png=name)
            for run, name in zip(with_patterns.universal, ["patch.png", "universal-perturbation.png"], strict=True)
        ),
    )
    with Image.open(written["patch"]) as image:
        assert image.size == (256, 256) and image.mode == "L"
        # Nearest-neighbour enlargement: each pattern pixel becomes a 64x64 block of the same grey.
        assert image.getpixel((0, 0)) == 0 and image.getpixel((255, 255)) == 240
        assert image.getpixel((64, 0)) == 16
    assert "patch.png" in _section(written["html"].read_text(encoding="utf-8"))


def test_pattern_png_is_the_saved_file(with_patterns: Assessment, tmp_path: Path) -> None:
    written = write_report(with_patterns, tmp_path)
    assert written["patch"].read_bytes() == pattern_png(with_patterns.universal[0])


def test_junit_and_terminal_list_each_pattern(with_patterns: Assessment) -> None:
    root = ET.fromstring(render_junit(with_patterns).split("\n", 1)[1])
    cases = [c for c in root.iter("testcase") if c.get("classname") == "bastion.assess.universal"]
    assert [c.get("name") for c in cases] == ["patch", "universal-perturbation"]
    properties = {p.get("name"): p.get("value") for p in cases[0].iter("property")}
    assert properties["holdout_success"] == "0.583" and properties["config.size"] == "0.5"
    buffer = io.StringIO()
    print_summary(with_patterns, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "patch: fools 58.3% of 100 held-out inputs (random pattern 12.0%; trained on 100)" in text
    assert "target hit 37.5%" in text
