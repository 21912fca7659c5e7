"""Report value types and writers (JSON, HTML, JUnit, terminal)."""

from bastion.report.html import render_html, write_html
from bastion.report.jsonio import from_dict, read_json, to_dict, write_json
from bastion.report.junit import render_junit, write_junit
from bastion.report.model import (
    SCHEMA_VERSION,
    Assessment,
    AttackRun,
    ClassRow,
    DataInfo,
    Environment,
    ExampleImage,
    Finding,
    ModelInfo,
    Settings,
    Threshold,
    UniversalRun,
    WorstCase,
)
from bastion.report.terminal import print_summary
from bastion.report.writers import REPORT_FILES, write_report

__all__ = [
    "REPORT_FILES",
    "SCHEMA_VERSION",
    "Assessment",
    "AttackRun",
    "ClassRow",
    "DataInfo",
    "Environment",
    "ExampleImage",
    "Finding",
    "ModelInfo",
    "Settings",
    "Threshold",
    "UniversalRun",
    "WorstCase",
    "from_dict",
    "print_summary",
    "read_json",
    "render_html",
    "render_junit",
    "to_dict",
    "write_html",
    "write_json",
    "write_junit",
    "write_report",
]
