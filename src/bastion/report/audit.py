"""The audit report: ``report.json`` (own schema), a standalone HTML page, and the SARIF / CycloneDX files.

``bastion audit`` writes ``report.json`` and renders ``report.html`` from what that file reads
back as, so the JSON is the single source (as for the robustness and poisoning reports). The page
is rendered from ``templates/audit.html`` with autoescaping on and the same Content-Security-Policy:
no scripts. The attack-surface section is the ``_surface.html`` partial's (:mod:`bastion.audit.surface`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import jinja2

from bastion.audit.formats import write_format
from bastion.audit.outcome import AuditReport, audit_from_dict
from bastion.report.jsonio import read_json_file
from bastion.report.templating import report_environment

__all__ = ["AUDIT_FILES", "read_audit_json", "render_audit_html", "write_audit_report"]

# Kind of report -> file name inside the output folder (the extra formats add their own).
AUDIT_FILES = {"json": "report.json", "html": "report.html"}


def read_audit_json(path: str | Path) -> AuditReport:
    """Read a report written by :func:`write_audit_report`."""
    return audit_from_dict(read_json_file(path, what="audit report"))


def render_audit_html(report: AuditReport) -> str:
    """The standalone audit page as a string."""
    return _environment().get_template("audit.html").render(r=report)


def write_audit_report(report: AuditReport, out_dir: str | Path, *, formats: Sequence[str] = ()) -> dict[str, Path]:
    """Write report.json, report.html (from the JSON read back) and each of ``formats``; name -> path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_format(report, "json", out)}
    html_path = out / AUDIT_FILES["html"]
    html_path.write_text(render_audit_html(read_audit_json(paths["json"])), encoding="utf-8")
    paths["html"] = html_path
    for name in dict.fromkeys(formats):
        if name != "json":  # report.json is written above, first
            paths[name] = write_format(report, name, out)
    return paths


@functools.cache
def _environment() -> jinja2.Environment:
    return report_environment()
