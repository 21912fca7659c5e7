"""The poisoning susceptibility report: value types, JSON round trip, curves as PNG, and a standalone HTML page.

``bastion poison`` writes ``report.json`` and renders ``report.html`` from what that file reads
back as, so the JSON is the single source (as for the robustness report). The page is rendered
from ``templates/poisoning.html`` with autoescaping on and the same Content-Security-Policy: no
scripts, images only as data URIs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bastion.errors import DataError
from bastion.report.figures import data_uri, figure_png, finish_axes
from bastion.report.jsonio import read_json_file, write_strict_json
from bastion.report.templating import report_environment

__all__ = [
    "POISONING_FILES",
    "POISONING_SCHEMA_VERSION",
    "DataSummary",
    "PoisonAttackSummary",
    "PoisonRun",
    "PoisoningReport",
    "poisoning_from_dict",
    "poisoning_plot",
    "poisoning_to_dict",
    "read_poisoning_json",
    "render_poisoning_html",
    "write_poisoning_json",
    "write_poisoning_report",
]

POISONING_SCHEMA_VERSION = "1.0"
# Kind of report -> file name inside the output folder.
POISONING_FILES = {"json": "report.json", "html": "report.html"}


@dataclass(frozen=True)
class DataSummary:
    """A dataset the assessment used."""

    name: str
    n_examples: int
    input_shape: tuple[int, ...]
    num_classes: int


@dataclass(frozen=True)
class PoisonAttackSummary:
    """One attack as configured: what it targets and what its success figure measures."""

    name: str
    description: str
    config: dict[str, Any]  # its hyper-parameters, as JSON values
    target_label: int | None  # the label the attacker wants
    targeted_class: int | None  # the class whose test accuracy it aims at
    success_metric: str | None  # what ``PoisonRun.attack_success`` measures; None for untargeted attacks


@dataclass(frozen=True)
class PoisonRun:
    """One retraining: an attack at a rate (rate 0 is the clean model, measured the same way)."""

    attack: str
    rate: float
    poisoned: int  # training examples changed or added
    added: bool  # True when the poisons were added to the training set
    clean_accuracy: float  # on the clean test set
    targeted_class_accuracy: float | None  # on the clean test inputs of the targeted class
    attack_success: float | None  # see PoisonAttackSummary.success_metric
    fit_seconds: float
    details: dict[str, float]  # attack-specific figures (e.g. feature distances)


@dataclass(frozen=True)
class PoisoningReport:
    """Clean accuracy and attack success against the poison rate, per attack, for one training recipe."""

    recipe: str
    train: DataSummary
    test: DataSummary
    rates: tuple[float, ...]
    seed: int
    epochs: int | None  # None: the recipe's own
    baseline_accuracy: float  # the clean model's test accuracy
    attacks: tuple[PoisonAttackSummary, ...]
    runs: tuple[PoisonRun, ...]
    elapsed: float
    schema_version: str = POISONING_SCHEMA_VERSION

    def curve(self, attack: str) -> tuple[PoisonRun, ...]:
        """The runs of ``attack``, by ascending rate."""
        return tuple(sorted((run for run in self.runs if run.attack == attack), key=lambda run: run.rate))


# -- JSON ------------------------------------------------------------------------------------------


def poisoning_to_dict(report: PoisoningReport) -> dict[str, Any]:
    """The report as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(report)))  # type: ignore[no-any-return]


def poisoning_from_dict(data: Any) -> PoisoningReport:
    """Rebuild a report from :func:`poisoning_to_dict`'s output."""
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object for the poisoning report, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != POISONING_SCHEMA_VERSION.split(".")[0]:
        raise DataError(
            f"poisoning report schema version {version!r} is not readable; expected {POISONING_SCHEMA_VERSION}"
        )
    try:
        return PoisoningReport(
            **{
                **data,
                "train": _data_summary(data["train"]),
                "test": _data_summary(data["test"]),
                "rates": tuple(data["rates"]),
                "attacks": tuple(PoisonAttackSummary(**item) for item in data["attacks"]),
                "runs": tuple(PoisonRun(**item) for item in data["runs"]),
            }
        )
    except (KeyError, TypeError) as error:
        raise DataError(f"not a poisoning report: {type(error).__name__}: {error}") from None


def _data_summary(data: dict[str, Any]) -> DataSummary:
    return DataSummary(**{**data, "input_shape": tuple(data["input_shape"])})


def write_poisoning_json(report: PoisoningReport, path: Path) -> Path:
    return write_strict_json(poisoning_to_dict(report), path, what="poisoning report")


def read_poisoning_json(path: str | Path) -> PoisoningReport:
    """Read a report written by :func:`write_poisoning_report`."""
    return poisoning_from_dict(read_json_file(path, what="poisoning report"))


# -- figure and page -------------------------------------------------------------------------------


def poisoning_plot(report: PoisoningReport) -> bytes:
    """Clean accuracy (and, beside it, attack success) against the poison rate, one line per attack, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    targeted = [attack.name for attack in report.attacks if attack.success_metric is not None]
    figure = Figure(figsize=(11.0 if targeted else 7.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, 2 if targeted else 1, squeeze=False)[0]
    colours = {attack.name: f"C{i % 10}" for i, attack in enumerate(report.attacks)}  # one colour per attack
    for attack in report.attacks:
        runs = report.curve(attack.name)
        xs, ys = [r.rate for r in runs], [r.clean_accuracy for r in runs]
        panels[0].plot(xs, ys, marker="o", color=colours[attack.name], label=attack.name)
    panels[0].axhline(report.baseline_accuracy, color="grey", linestyle=":", linewidth=1, label="clean model")
    panels[0].set(xlabel="poison rate", ylabel="clean test accuracy", title="Clean accuracy", ylim=(-0.02, 1.02))
    for name in targeted:
        points = [(r.rate, r.attack_success) for r in report.curve(name) if r.attack_success is not None]
        xs, ys = [rate for rate, _ in points], [success for _, success in points]
        panels[1].plot(xs, ys, marker="s", color=colours[name], label=name)
    if targeted:
        panels[1].set(xlabel="poison rate", ylabel="attack success", title="Attack success", ylim=(-0.02, 1.02))
    for axes in panels:
        axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        axes.xaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        finish_axes(axes)
    return figure_png(figure)


def render_poisoning_html(report: PoisoningReport) -> str:
    """The standalone poisoning page as a string."""
    return (
        _environment()
        .get_template("poisoning.html")
        .render(r=report, plot_uri=data_uri(poisoning_plot(report)) if report.runs else None)
    )


def write_poisoning_report(report: PoisoningReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, then report.html from what the JSON reads back as; returns ``json`` and ``html`` paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_poisoning_json(report, out / POISONING_FILES["json"])
    html_path = out / POISONING_FILES["html"]
    html_path.write_text(render_poisoning_html(read_poisoning_json(json_path)), encoding="utf-8")
    return {"json": json_path, "html": html_path}


@functools.cache
def _environment() -> jinja2.Environment:
    return report_environment(signed=_signed_points)


def _signed_points(value: float | None) -> str:
    """A change in accuracy in percentage points with its sign (``-3.1 pp``), or a dash."""
    return "–" if value is None else f"{100 * value:+.1f} pp"
