"""Write every report file for an assessment, the HTML and JUnit views rendered from the JSON file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bastion.report.figures import is_image_shape, pattern_png
from bastion.report.html import write_html
from bastion.report.jsonio import read_json, write_json
from bastion.report.junit import write_junit
from bastion.report.model import Assessment

__all__ = ["REPORT_FILES", "with_pattern_files", "write_report"]

# Kind of report -> file name inside the output folder.
REPORT_FILES = {"json": "report.json", "html": "report.html", "junit": "junit.xml"}


def with_pattern_files(assessment: Assessment) -> Assessment:
    """The assessment with each universal pattern that is an image named ``<attack>.png`` in its ``png`` field."""
    universal = tuple(
        replace(run, png=f"{run.attack}.png" if is_image_shape(run.shape) else None) for run in assessment.universal
    )
    return replace(assessment, universal=universal)


def write_report(assessment: Assessment, out_dir: str | Path) -> dict[str, Path]:
    """Write the universal patterns as PNG, report.json, then report.html and junit.xml from what it reads back as.

    Rendering the views from the file rather than from ``assessment`` keeps the JSON the single
    source: whatever the HTML or JUnit shows can be recovered from report.json alone. Each universal
    pattern that is an image is drawn from its pixels in the report into the file that
    :func:`with_pattern_files` names (``patch.png``, ``universal-perturbation.png``). Returns what was
    written: ``json``, ``html``, ``junit`` and each pattern's attack name -> its path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assessment = with_pattern_files(assessment)
    patterns = {}
    for run in assessment.universal:
        if run.png is not None:
            patterns[run.attack] = out / run.png
            patterns[run.attack].write_bytes(pattern_png(run))
    json_path = write_json(assessment, out / REPORT_FILES["json"])
    stored = read_json(json_path)
    return {
        "json": json_path,
        "html": write_html(stored, out / REPORT_FILES["html"]),
        "junit": write_junit(stored, out / REPORT_FILES["junit"]),
        **patterns,
    }
