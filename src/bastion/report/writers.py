"""Write every report file for an assessment, the HTML and JUnit views rendered from the JSON file."""

from __future__ import annotations

from pathlib import Path

from bastion.report.html import write_html
from bastion.report.jsonio import read_json, write_json
from bastion.report.junit import write_junit
from bastion.report.model import Assessment

__all__ = ["REPORT_FILES", "write_report"]

# Kind of report -> file name inside the output folder.
REPORT_FILES = {"json": "report.json", "html": "report.html", "junit": "junit.xml"}


def write_report(assessment: Assessment, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, then report.html and junit.xml from what that JSON reads back as.

    Rendering the views from the file rather than from ``assessment`` keeps the JSON the single
    source: whatever the HTML or JUnit shows can be recovered from report.json alone.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_json(assessment, out / REPORT_FILES["json"])
    stored = read_json(json_path)
    return {
        "json": json_path,
        "html": write_html(stored, out / REPORT_FILES["html"]),
        "junit": write_junit(stored, out / REPORT_FILES["junit"]),
    }
