"""The fuzzing report (``bastion fuzz``): value types, JSON round trip, the coverage-growth chart and the HTML page.

As for the poisoning report, ``report.json`` is the single source: ``report.html`` is rendered
from what that file reads back as, from ``templates/fuzz.html`` with autoescaping on and the
same Content-Security-Policy (no scripts, images only as data URIs). Reproducer files are
linked by their path relative to the report folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bastion.errors import DataError
from bastion.report.figures import data_uri, figure_png, finish_axes
from bastion.report.jsonio import read_json_file, write_strict_json
from bastion.report.templating import report_environment

__all__ = [
    "FINDING_CLASSES",
    "FUZZ_FILES",
    "FUZZ_SCHEMA_VERSION",
    "CoveragePoint",
    "FuzzFinding",
    "FuzzReport",
    "FuzzerRun",
    "ValiditySummary",
    "coverage_plot",
    "fuzz_from_dict",
    "fuzz_to_dict",
    "read_fuzz_json",
    "render_fuzz_html",
    "write_fuzz_report",
]

FUZZ_SCHEMA_VERSION = "1.0"
FUZZ_FILES = {"json": "report.json", "html": "report.html"}
# Finding classes of a model target, in the order the report lists them; pipeline kinds follow.
FINDING_CLASSES = ("changed_prediction", "non_finite", "exception", "disagreement", "confidence_collapse")


@dataclass(frozen=True)
class FuzzFinding:
    """One unique failure (the first of its kind), with where its reproducer was saved."""

    id: str  # F001, F002, ...
    kind: str  # one of FINDING_CLASSES, or a pipeline kind ("crash", "server-error", "hang", ...)
    fuzzer: str  # metamorphic, guided, pipeline or gateway
    target: str  # the model's name, a decoder, or "METHOD /path"
    message: str  # one line
    occurrences: int  # raw findings folded into this one (same kind, seed and labels, or same pipeline target)
    seed_index: int | None = None
    chain: tuple[tuple[str, float], ...] = ()  # the transformations (name, strength) that reproduce it
    original_label: int | None = None  # the model's label on the seed
    new_label: int | None = None
    reference_label: int | None = None
    confidence: float | None = None
    minimised: bool = False  # True when the saved reproducer is smaller than what the fuzzer found
    distance: float | None = None  # L-infinity distance of the saved input from its seed
    reproducer: str | None = None  # path relative to the report folder: .npy input or the pipeline's file
    image: str | None = None  # PNG of the saved input (images only)
    replay_seed: int | None = None  # torch.Generator seed that replays ``chain`` on the seed exactly


@dataclass(frozen=True)
class FuzzerRun:
    """What one fuzzer spent and found."""

    fuzzer: str
    inputs: int  # mutants generated (model) or inputs tried (pipeline)
    valid: int  # of those, inside the mutation limits (model fuzzers)
    queries: int  # rows the model evaluated
    findings: int  # raw findings, before folding into unique ones
    seconds: float


@dataclass(frozen=True)
class CoveragePoint:
    """The guided fuzzer's corpus after ``evaluations`` model evaluations."""

    evaluations: int
    corpus: int  # seeds plus the mutants kept for novel activations
    neuron_coverage: float


@dataclass(frozen=True)
class ValiditySummary:
    """The held-out oracle's verdict on the metamorphic mutants (see bastion.fuzz.validity)."""

    oracle: str
    strength: float
    linf: float
    changed_fraction: float
    valid: int
    kept: int
    raw_rate: float  # kept / valid
    seed_accuracy: float  # the oracle's accuracy on the unmutated seeds
    relative_rate: float  # raw_rate / seed_accuracy


@dataclass(frozen=True)
class FuzzReport:
    """A ``bastion fuzz`` run: options, what each fuzzer spent, unique findings, coverage growth, validity."""

    target: str  # model, pipeline or gateway
    subject: str  # the model's name, "bastion decoders" or the gateway's URL
    seeds: str | None  # the seed dataset's name (model targets)
    n_seeds: int
    options: dict[str, Any]  # FuzzOptions as JSON values
    runs: tuple[FuzzerRun, ...]
    findings: tuple[FuzzFinding, ...]
    coverage: tuple[CoveragePoint, ...]
    validity: ValiditySummary | None
    seconds: float
    schema_version: str = FUZZ_SCHEMA_VERSION

    @property
    def by_class(self) -> dict[str, int]:
        """Unique findings per class, the model classes first (zeros included for model targets)."""
        counts = Counter(finding.kind for finding in self.findings)
        known = {name: counts.get(name, 0) for name in FINDING_CLASSES} if self.target == "model" else {}
        return {**known, **{kind: n for kind, n in sorted(counts.items()) if kind not in known}}

    @property
    def queries(self) -> int:
        return sum(run.queries for run in self.runs)

    @property
    def inputs(self) -> int:
        return sum(run.inputs for run in self.runs)


# -- JSON ------------------------------------------------------------------------------------------


def fuzz_to_dict(report: FuzzReport) -> dict[str, Any]:
    """The report as plain JSON values, with the derived ``by_class``, ``inputs`` and ``queries``."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(report)))
    return {**data, "by_class": report.by_class, "inputs": report.inputs, "queries": report.queries}


def fuzz_from_dict(data: Any) -> FuzzReport:
    """Rebuild a report from :func:`fuzz_to_dict`'s output (the derived fields are recomputed)."""
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object for the fuzzing report, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != FUZZ_SCHEMA_VERSION.split(".")[0]:
        raise DataError(f"fuzzing report schema version {version!r} is not readable; expected {FUZZ_SCHEMA_VERSION}")
    fields = {field.name for field in dataclasses.fields(FuzzReport)}
    try:
        validity = data["validity"]
        return FuzzReport(
            **{
                **{key: value for key, value in data.items() if key in fields},
                "runs": tuple(FuzzerRun(**item) for item in data["runs"]),
                "findings": tuple(_finding(item) for item in data["findings"]),
                "coverage": tuple(CoveragePoint(**item) for item in data["coverage"]),
                "validity": None if validity is None else ValiditySummary(**validity),
            }
        )
    except (KeyError, TypeError) as error:
        raise DataError(f"not a fuzzing report: {type(error).__name__}: {error}") from None


def _finding(item: dict[str, Any]) -> FuzzFinding:
    return FuzzFinding(**{**item, "chain": tuple((str(name), float(s)) for name, s in item.get("chain", ()))})


def read_fuzz_json(path: str | Path) -> FuzzReport:
    """Read a report written by :func:`write_fuzz_report`."""
    return fuzz_from_dict(read_json_file(path, what="fuzzing report"))


# -- figure and page -------------------------------------------------------------------------------


def coverage_plot(report: FuzzReport) -> bytes:
    """The guided fuzzer's corpus size (and neuron coverage) against model evaluations spent, as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(7.0, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    xs = [point.evaluations for point in report.coverage]
    axes.plot(xs, [point.corpus for point in report.coverage], color="C0", label="corpus (novel activations)")
    axes.set(xlabel="model evaluations", ylabel="corpus size", title="Coverage growth")
    finish_axes(axes)
    neurons = axes.twinx()
    neurons.plot(xs, [p.neuron_coverage for p in report.coverage], color="C1", linestyle="--", label="neuron coverage")
    neurons.set(ylabel="neuron coverage", ylim=(-0.02, 1.02))
    neurons.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    lines = axes.get_lines() + neurons.get_lines()
    axes.legend(lines, [str(line.get_label()) for line in lines], loc="lower right", fontsize="small")
    return figure_png(figure)


def render_fuzz_html(report: FuzzReport) -> str:
    """The standalone fuzzing page as a string."""
    plot = data_uri(coverage_plot(report)) if len(report.coverage) > 1 else None
    return _environment().get_template("fuzz.html").render(r=report, plot_uri=plot)


def write_fuzz_report(report: FuzzReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, then report.html from what the JSON reads back as; returns ``json`` and ``html`` paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_strict_json(fuzz_to_dict(report), out / FUZZ_FILES["json"], what="fuzzing report")
    html_path = out / FUZZ_FILES["html"]
    html_path.write_text(render_fuzz_html(read_fuzz_json(json_path)), encoding="utf-8")
    return {"json": json_path, "html": html_path}


@functools.cache
def _environment() -> jinja2.Environment:
    return report_environment()
