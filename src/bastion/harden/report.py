"""The hardening report: the model before and after under the ``assess`` ensemble, with trust checks up front.

Both models go through :func:`bastion.assess` with the same data, attacks, epsilons and seed:
the preset's white-box attacks plus Square, the black-box attack whose beating the gradient
attacks is the mark of gradient masking (on image inputs; Square needs them). A hardened model
that only masks gradients looks robust to gradient attacks, so the report leads with every trust
finding on the hardened model and says plainly when masking is suspected. ``report.json`` is the
single source: ``report.html`` is rendered from what it reads back as.

Example::

    report = compare(model, result, test, preset="quick", epsilons=[0.1, 0.2, 0.3])
    write_harden_report(report, "reports/harden")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from bastion.attacks.registry import ATTACKS
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.evaluation.assess import assess
from bastion.evaluation.plan import PRESETS
from bastion.evaluation.runner import Progress
from bastion.harden.interface import EpochStats, HardenConfig, HardenResult, Rejection
from bastion.harden.reject import class_view, rejection_rates
from bastion.harden.run import EVAL_EXAMPLES
from bastion.models.torch import TorchClassifier
from bastion.norms import get_norm
from bastion.report.jsonio import from_dict, read_json_file, to_dict, write_strict_json
from bastion.report.model import Assessment, Finding
from bastion.report.templating import report_environment

__all__ = [
    "HARDEN_FILES",
    "HARDEN_SCHEMA_VERSION",
    "MASKING_CHECKS",
    "EpsilonRow",
    "HardenReport",
    "compare",
    "flat_in_eps",
    "harden_from_dict",
    "harden_to_dict",
    "read_harden_json",
    "render_harden_html",
    "report_attacks",
    "report_epsilons",
    "write_harden_report",
]

HARDEN_SCHEMA_VERSION = "1.0"
HARDEN_FILES = {"json": "report.json", "html": "report.html"}
# Trust checks whose findings on the hardened model point at gradient masking rather than robustness.
MASKING_CHECKS = frozenset(
    {
        "black_box_beats_white_box",
        "flat_in_eps",
        "more_steps_weaker",
        "non_monotonic_epsilon",
        "probability_outputs",
        "randomised_outputs",
        "vanishing_gradients",
    }
)


@dataclass(frozen=True)
class EpsilonRow:
    """Worst-case robust accuracy over the ensemble at one epsilon, before and after hardening."""

    eps: float
    before: float
    after: float

    @property
    def change(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class HardenReport:
    """A hardening run and the evidence: both assessments, the training history, and the warnings."""

    method: str
    manifest: dict[str, Any]  # the hardened model's manifest (JSON values)
    history: tuple[EpochStats, ...]
    catastrophic_overfitting: bool
    rejection: Rejection | None
    before: Assessment
    after: Assessment
    warnings: tuple[Finding, ...]  # every trust finding on the hardened model, and the report's own
    elapsed: float
    schema_version: str = HARDEN_SCHEMA_VERSION

    @property
    def rows(self) -> tuple[EpsilonRow, ...]:
        before = {case.eps: case.robust_accuracy for case in self.before.worst_case}
        after = {case.eps: case.robust_accuracy for case in self.after.worst_case}
        return tuple(EpsilonRow(eps, before[eps], after[eps]) for eps in sorted(before.keys() & after.keys()))

    @property
    def masking_findings(self) -> tuple[Finding, ...]:
        """The warnings that point at gradient masking rather than robustness."""
        return tuple(f for f in self.warnings if f.check in MASKING_CHECKS and f.severity != "info")

    @property
    def masking_suspected(self) -> bool:
        return bool(self.masking_findings)


def compare(
    before: TorchClassifier,
    result: HardenResult,
    test: Dataset,
    *,
    preset: str = "standard",
    epsilons: Sequence[float] | None = None,
    n_examples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> HardenReport:
    """Assess ``before`` and the hardened model alike on ``test`` and gather the evidence.

    A reject-class model is assessed as its K-class classifier (the reject logit dropped), so
    that both columns mean the same; its rejection rates on ``test`` are reported beside.
    """
    norm = str(result.manifest["settings"]["norm"])
    eps = float(result.manifest["settings"]["eps"])
    chosen = tuple(epsilons) if epsilons else report_epsilons(test, norm, eps, before.bounds)
    attacks = report_attacks(preset, norm, before.input_shape)
    after_model = class_view(result.model) if result.rejection is not None else result.model
    options: dict[str, Any] = {
        "preset": preset,
        "norm": norm,
        "epsilons": chosen,
        "attacks": attacks,
        "n_examples": n_examples,
        "batch_size": batch_size,
        "seed": seed,
        "device": str(before.device),
        "progress": progress,
    }
    assessed_before = assess(before, test, **options)
    assessed_after = assess(after_model, test, **options)
    warnings = (*assessed_after.findings, *flat_in_eps(assessed_after), *_collapse(result))
    return HardenReport(
        method=str(result.manifest["method"]),
        manifest=result.manifest,
        history=result.history,
        catastrophic_overfitting=result.catastrophic_overfitting,
        rejection=None if result.rejection is None else _test_rejection(result, test, seed),
        before=assessed_before,
        after=assessed_after,
        warnings=tuple(warnings),
        elapsed=assessed_before.elapsed + assessed_after.elapsed,
    )


def report_attacks(preset: str, norm: str, input_shape: Sequence[int]) -> tuple[str, ...]:
    """The preset's white-box attacks for ``norm``, plus Square on image inputs (the masking check)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")
    name = get_norm(norm).name
    names = [p.name for p in PRESETS[preset] if not p.only_for and name in p.build().norms]
    if "square" not in names and name in ATTACKS["square"]().norms and len(input_shape) == 3:
        names.append("square")
    return tuple(names)


def report_epsilons(data: Dataset, norm: str, eps: float, bounds: tuple[float, float]) -> tuple[float, ...]:
    """The data's customary radii and the training eps; without customary radii, eps/2, eps and 2 eps."""
    name = get_norm(norm).name
    customary = (data.epsilons or {}).get(name)
    if customary:
        return tuple(sorted({*customary, eps}))
    top = 2 * eps if name != "linf" else min(2 * eps, bounds[1] - bounds[0])
    return tuple(sorted({eps / 2, eps, top}))


def flat_in_eps(assessment: Assessment) -> list[Finding]:
    """Robust accuracy that does not fall from the smallest to the largest eps: the attacks may not be working."""
    cases = sorted(assessment.worst_case, key=lambda case: case.eps)
    if len(cases) < 2:
        return []
    low, high = cases[0], cases[-1]
    tolerance = max(1.0 / max(assessment.data.n_examples, 1), 0.005)
    if low.robust_accuracy > 0.05 and high.robust_accuracy >= low.robust_accuracy - tolerance:
        msg = (
            f"robust accuracy does not fall as eps grows: {low.robust_accuracy:.1%} at eps {low.eps:g}, "
            f"{high.robust_accuracy:.1%} at eps {high.eps:g}; a larger ball should always admit more attacks, "
            "so the attacks are likely blocked by gradient masking"
        )
        details = {"eps": [low.eps, high.eps], "robust_accuracy": [low.robust_accuracy, high.robust_accuracy]}
        return [Finding("flat_in_eps", "warning", msg, details)]
    return []


def _test_rejection(result: HardenResult, test: Dataset, seed: int) -> Rejection:
    """A reject-class model's rates on (a seeded sample of) the test set, with the training run's PGD."""
    settings = result.manifest["settings"]
    config = HardenConfig(
        eps=float(settings["eps"]), norm=str(settings["norm"]), seed=seed, eval_steps=int(settings["eval_steps"])
    )
    sample = test if len(test) <= EVAL_EXAMPLES else test.take(EVAL_EXAMPLES, seed=seed)
    return rejection_rates(result.model, sample.x, sample.y, config)


def _collapse(result: HardenResult) -> list[Finding]:
    if not result.catastrophic_overfitting:
        return []
    restored = result.manifest.get("restored_epoch")
    msg = (
        "catastrophic overfitting: PGD accuracy collapsed while FGSM accuracy stayed high; training stopped "
        f"and the weights of epoch {restored} were restored"
    )
    return [Finding("catastrophic_overfitting", "warning", msg, {"restored_epoch": restored})]


# -- JSON ------------------------------------------------------------------------------------------


def harden_to_dict(report: HardenReport) -> dict[str, Any]:
    """The report as plain JSON values."""
    data = {
        "schema_version": report.schema_version,
        "method": report.method,
        "manifest": report.manifest,
        "history": [dataclasses.asdict(stats) for stats in report.history],
        "catastrophic_overfitting": report.catastrophic_overfitting,
        "rejection": None if report.rejection is None else dataclasses.asdict(report.rejection),
        "before": to_dict(report.before),
        "after": to_dict(report.after),
        "warnings": [dataclasses.asdict(finding) for finding in report.warnings],
        "elapsed": report.elapsed,
        # Derived, for readers of the JSON alone (ignored when read back): the before/after table.
        "masking_suspected": report.masking_suspected,
        "comparison": [{"eps": row.eps, "before": row.before, "after": row.after} for row in report.rows],
    }
    return json.loads(json.dumps(data))  # type: ignore[no-any-return]


def harden_from_dict(data: Any) -> HardenReport:
    """Rebuild a report from :func:`harden_to_dict`'s output."""
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object for the hardening report, got {type(data).__name__}")
    version = data.get("schema_version")
    if not isinstance(version, str) or version.split(".")[0] != HARDEN_SCHEMA_VERSION.split(".")[0]:
        raise DataError(
            f"hardening report schema version {version!r} is not readable; expected {HARDEN_SCHEMA_VERSION}"
        )
    try:
        rejection = data["rejection"]
        return HardenReport(
            method=data["method"],
            manifest=data["manifest"],
            history=tuple(EpochStats(**stats) for stats in data["history"]),
            catastrophic_overfitting=data["catastrophic_overfitting"],
            rejection=None if rejection is None else Rejection(**rejection),
            before=from_dict(data["before"]),
            after=from_dict(data["after"]),
            warnings=tuple(Finding(**finding) for finding in data["warnings"]),
            elapsed=data["elapsed"],
            schema_version=version,
        )
    except (KeyError, TypeError) as error:
        raise DataError(f"not a hardening report: {type(error).__name__}: {error}") from None


def read_harden_json(path: str | Path) -> HardenReport:
    """Read a report written by :func:`write_harden_report`."""
    return harden_from_dict(read_json_file(path, what="hardening report"))


# -- page ------------------------------------------------------------------------------------------


def render_harden_html(report: HardenReport) -> str:
    """The standalone hardening page as a string."""
    return _environment().get_template("harden.html").render(r=report)


def write_harden_report(report: HardenReport, out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, then report.html from what the JSON reads back as; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / HARDEN_FILES["json"]
    write_strict_json(harden_to_dict(report), json_path, what="hardening report")
    html_path = out / HARDEN_FILES["html"]
    html_path.write_text(render_harden_html(read_harden_json(json_path)), encoding="utf-8")
    return {"json": json_path, "html": html_path}


@functools.cache
def _environment() -> jinja2.Environment:
    return report_environment(signed=_signed_points, seconds=_seconds)


def _signed_points(value: float | None) -> str:
    """A change in accuracy in percentage points with its sign (``+31.2 pp``), or a dash."""
    return "–" if value is None or math.isnan(value) else f"{100 * value:+.1f} pp"


def _seconds(value: float) -> str:
    return f"{value:.1f}"
