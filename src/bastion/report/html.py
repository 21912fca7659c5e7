"""The assessment as one self-contained HTML page: inline CSS, images as data URIs, no scripts.

The page is rendered from ``templates/report.html`` with autoescaping on, so a model name or a
finding message is shown as text and never interpreted as markup. A Content-Security-Policy
in the page forbids scripts and every resource that is not a data URI.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bastion.report.figures import data_uri, example_thumbnails, is_image_shape, pattern_png, robustness_plot
from bastion.report.model import Assessment, ExampleImage, UniversalRun
from bastion.report.templating import report_environment
from bastion.report.views import (
    accuracy_table,
    class_columns,
    describe_threshold,
    epsilons,
    key_label,
    sorted_findings,
)

__all__ = ["render_html", "write_html"]


@dataclass(frozen=True)
class ExampleView:
    """One cell of the example grid, ready for the template."""

    title: str
    true_label: str
    clean_prediction: str
    adversarial_prediction: str
    clean_uri: str | None  # None when the input is not an image
    adversarial_uri: str | None
    perturbation_uri: str | None
    note: str  # what the perturbation thumbnail shows, or why there are no thumbnails


@dataclass(frozen=True)
class UniversalView:
    """One universal pattern with its figures, ready for the template."""

    run: UniversalRun
    title: str
    image_uri: str | None  # None when the pattern is not an image
    note: str  # what the picture shows


# Attack name -> section title of a universal pattern.
UNIVERSAL_TITLES = {"patch": "Adversarial patch", "universal-perturbation": "Universal perturbation"}


def render_html(assessment: Assessment) -> str:
    """The report page as a string."""
    return _environment().get_template("report.html").render(_context(assessment))


def write_html(assessment: Assessment, path: str | Path) -> Path:
    """Write the report page to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.write_text(render_html(assessment), encoding="utf-8")
    return path


@functools.cache
def _environment() -> jinja2.Environment:
    return report_environment(key_label=key_label, pairs=_pairs)


def _context(assessment: Assessment) -> dict[str, Any]:
    has_curves = bool(assessment.runs or assessment.worst_case)
    return {
        "a": assessment,
        "verdict": _verdict(assessment),
        "plot_uri": data_uri(robustness_plot(assessment)) if has_curves else None,
        "epsilons": epsilons(assessment),
        "accuracy_rows": accuracy_table(assessment),
        "class_columns": class_columns(assessment),
        "examples": [_example_view(assessment, example) for example in assessment.examples],
        "findings": sorted_findings(assessment),
        "thresholds": [(threshold, describe_threshold(threshold)) for threshold in assessment.thresholds],
        "universal": [_universal_view(run) for run in assessment.universal],
    }


def _verdict(assessment: Assessment) -> str:
    if not assessment.thresholds:
        return "no thresholds"
    return "passed" if assessment.passed else "failed"


def _example_view(assessment: Assessment, example: ExampleImage) -> ExampleView:
    labels = {
        "true_label": _class_name(assessment, example.label),
        "clean_prediction": _class_name(assessment, example.clean_prediction),
        "adversarial_prediction": _class_name(assessment, example.adversarial_prediction),
    }
    title = f"#{example.index} · {example.attack} at eps={example.eps:g}"
    if not is_image_shape(example.shape):
        return ExampleView(
            title,
            **labels,
            clean_uri=None,
            adversarial_uri=None,
            perturbation_uri=None,
            note=f"input of shape {example.shape} is not an image",
        )
    thumbs = example_thumbnails(example)
    return ExampleView(
        title,
        **labels,
        clean_uri=data_uri(thumbs.clean),
        adversarial_uri=data_uri(thumbs.adversarial),
        perturbation_uri=data_uri(thumbs.perturbation),
        note=f"|adv − clean| magnified ×{255 / thumbs.max_change:.3g}" if thumbs.max_change else "no change",
    )


def _universal_view(run: UniversalRun) -> UniversalView:
    title = UNIVERSAL_TITLES.get(run.attack, run.attack)
    if not is_image_shape(run.shape):
        return UniversalView(run, title, None, f"a pattern of shape {run.shape} is not an image")
    low, high = run.pixel_range
    note = f"black = {low:.3g}, white = {high:.3g}"
    if run.attack == "universal-perturbation":
        note += "; mid-grey = no change"
    return UniversalView(run, title, data_uri(pattern_png(run)), note)


def _class_name(assessment: Assessment, label: int) -> str:
    names = assessment.data.class_names
    name = names[label] if 0 <= label < len(names) else ""
    return f"{label} ({name})" if name and name != str(label) else str(label)


def _pairs(mapping: dict[str, Any]) -> str:
    """``key=value, ...`` for a small configuration or details dictionary."""
    return ", ".join(f"{key}={value}" for key, value in mapping.items())
