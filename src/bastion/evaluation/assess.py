"""``bastion.assess``: load the model and data, run the plan, check the figures, build (and write) the report."""

from __future__ import annotations

import datetime as dt
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

import bastion
from bastion.attacks.registry import ATTACKS
from bastion.data.dataset import Dataset
from bastion.data.loaders import load_data
from bastion.engine import get_engine
from bastion.errors import ConfigError, DataError
from bastion.evaluation import checks, metrics
from bastion.evaluation.examples import pick_examples
from bastion.evaluation.plan import Plan, make_plan
from bastion.evaluation.runner import Progress, RunResults, run_plan
from bastion.evaluation.thresholds import Requirement, check_epsilons, judge, parse_requirement
from bastion.evaluation.universal import PatchOptions, PerturbationOptions, check_universal, universal_runs
from bastion.models.interface import Classifier, Knowledge
from bastion.models.open import load_model
from bastion.models.restricted import restrict
from bastion.report.model import (
    SCHEMA_VERSION,
    Assessment,
    AttackRun,
    DataInfo,
    Environment,
    Finding,
    ModelInfo,
    Settings,
)

__all__ = ["assess", "resolve_device", "resolve_model_and_data"]

# Examples the model-level trust checks look at (gradients, randomness, output kind).
CHECK_EXAMPLES = 100


def assess(
    model: Classifier | str | Path | None = None,
    data: Dataset | str | Path | None = None,
    *,
    preset: str = "standard",
    norm: str = "linf",
    epsilons: Sequence[float] | None = None,
    attacks: Sequence[str] | None = None,
    n_examples: int | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    factory: str | None = None,
    trust_model_file: bool = False,
    trust_pickle: bool = False,
    fail_under: Sequence[str | Requirement] = (),
    out_dir: str | Path | None = None,
    engine: str = "local",
    trust_checks: bool = True,
    knowledge: str | Knowledge | None = None,
    progress: Progress | None = None,
    patch: PatchOptions | None = None,
    perturbation: PerturbationOptions | None = None,
) -> Assessment:
    """Assess ``model`` on ``data`` (the bundled MNIST demo when both are None) and return the report.

    ``fail_under`` takes requirements such as ``"robust_accuracy@0.1=0.8"``; whether they were met
    is in ``assessment.passed`` (the CLI turns it into an exit code). With ``out_dir`` the report is
    written there as report.json, report.html and junit.xml. ``trust_model_file`` allows a
    torch.export (.pt2) file, whose loading can run code it carries: only for files you trust.
    ``trust_pickle`` allows a pickle or joblib file (a scikit-learn model), loaded only when an
    allowlist scan of its imports passes. ``knowledge`` (``scores`` or ``labels``) assesses the
    model as a black-box attacker sees it; the preset then picks the attacks that fit. ``patch`` and
    ``perturbation`` add a universal adversarial patch and a universal perturbation, each learned on a
    share of ``data`` and measured on the held-out rest (white-box models only; off by default).

    Example::

        report = bastion.assess(preset="quick", epsilons=[0.1, 0.3])
        print(report.worst_case[-1].robust_accuracy)
    """
    started = time.perf_counter()
    torch_device = resolve_device(device)
    dataset, classifier = resolve_model_and_data(model, data, factory, torch_device, trust_model_file, trust_pickle)
    if knowledge is not None:
        classifier = restrict(classifier, _knowledge_level(knowledge))
    check_universal(classifier, dataset, patch, perturbation)
    requirements = [r if isinstance(r, Requirement) else parse_requirement(r) for r in fail_under]
    plan = make_plan(
        preset=preset,
        norm=norm,
        epsilons=tuple(epsilons) if epsilons else _customary(dataset, norm),
        attacks=tuple(attacks) if attacks else None,
        n_examples=n_examples,
        batch_size=batch_size,
        seed=seed,
        bounds=classifier.bounds,
        trust_checks=trust_checks,
        knowledge=classifier.knowledge,
    )
    check_epsilons(requirements, plan.epsilons)
    # A seeded sample; all of the data is used as it is (no shuffled copy: peak memory on large sets).
    wanted = plan.n_examples or len(dataset)
    subset = dataset if wanted >= len(dataset) else dataset.take(wanted, seed=seed)
    results = run_plan(classifier, subset, plan, engine=get_engine(engine), progress=progress)
    assessment = _build(classifier, dataset, plan, results, requirements, engine, torch_device)
    universal = universal_runs(
        classifier, dataset, patch=patch, perturbation=perturbation, norm=plan.norm, epsilons=plan.epsilons, seed=seed
    )
    assessment = replace(assessment, universal=universal, elapsed=time.perf_counter() - started)
    if out_dir is not None:
        from bastion.report.writers import with_pattern_files, write_report

        assessment = with_pattern_files(assessment)  # the PNG file names the report records
        write_report(assessment, Path(out_dir))
    return assessment


def _customary(data: Dataset, norm: str) -> tuple[float, ...] | None:
    """The data's own customary radii for ``norm``, if it has any (bundled datasets do)."""
    from bastion.norms import get_norm

    return (data.epsilons or {}).get(get_norm(norm).name)


def _knowledge_level(value: str | Knowledge) -> Knowledge:
    try:
        return Knowledge(value)
    except ValueError:
        choices = ", ".join(k.value for k in Knowledge)
        raise ConfigError(f"unknown knowledge {value!r}: expected one of {choices}") from None


def resolve_device(name: str) -> torch.device:
    """A torch device, refusing one this machine does not have."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r}: expected cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but no CUDA device is available here")
    return device


def resolve_model_and_data(
    model: Classifier | str | Path | None,
    data: Dataset | str | Path | None,
    factory: str | None,
    device: torch.device,
    trusted: bool,
    trust_pickle: bool = False,
) -> tuple[Dataset, Classifier]:
    """The data (a demo test set by default) and the model (demo, file, or a Classifier), checked to fit."""
    from bastion.demo import demo_model

    demo_name = _demo_name(model)
    if data is None:
        if model is not None and demo_name is None:
            raise ConfigError("a model was given without data: pass data (an .npz, .csv, image folder or demo:NAME)")
        data = f"demo:{demo_name or 'mnist'}:test"
    dataset = data if isinstance(data, Dataset) else load_data(data)
    if model is None or demo_name is not None:
        classifier: Classifier = demo_model(demo_name or "mnist", device=device)
    elif isinstance(model, (str, Path)):
        classifier = load_model(
            model,
            input_shape=dataset.input_shape,
            bounds=dataset.bounds,
            factory=factory,
            device=device,
            trusted=trusted,
            trust_pickle=trust_pickle,
        )
    else:
        classifier = model
    _check_fit(dataset, classifier)
    return dataset, classifier


def _demo_name(model: Classifier | str | Path | None) -> str | None:
    if isinstance(model, str) and model.startswith("demo:"):
        return model[5:]
    return None


def _check_fit(data: Dataset, model: Classifier) -> None:
    data.validate(num_classes=model.num_classes, input_shape=model.input_shape)
    lo, hi = model.bounds
    xmin, xmax = float(data.x.min()), float(data.x.max())
    if xmin < lo or xmax > hi:
        raise DataError(f"{data.name}: inputs lie in [{xmin:.6g}, {xmax:.6g}], outside the model's bounds [{lo}, {hi}]")


def _build(
    model: Classifier,
    full: Dataset,
    plan: Plan,
    results: RunResults,
    requirements: Sequence[Requirement],
    engine: str,
    device: torch.device,
) -> Assessment:
    data = results.data
    n = len(data)
    clean_accuracy = float(results.clean_correct.float().mean())
    runs = metrics.attack_runs(results, plan.norm)
    worst = metrics.worst_case(results, plan.epsilons)
    names = data.class_names or tuple(str(i) for i in range(model.num_classes))
    findings = _trust(model, results, plan, runs, clean_accuracy) if plan.trust_checks else ()
    return Assessment(
        schema_version=SCHEMA_VERSION,
        environment=_environment(),
        model=ModelInfo(
            name=getattr(model, "name", type(model).__name__),
            input_shape=tuple(model.input_shape),
            num_classes=model.num_classes,
            bounds=model.bounds,
            knowledge=model.knowledge.value,
            device=str(model.device),
        ),
        data=DataInfo(name=full.name, n_examples=n, class_names=names),
        settings=Settings(
            preset=plan.preset,
            norm=plan.norm,
            epsilons=plan.epsilons,
            attacks=tuple(a.name for a in plan.attacks),
            n_examples=plan.n_examples,
            batch_size=plan.batch_size,
            seed=plan.seed,
            device=str(device),
            engine=engine,
        ),
        clean_accuracy=clean_accuracy,
        runs=runs,
        worst_case=worst,
        per_class=metrics.per_class(results, plan.epsilons, names),
        findings=findings,
        examples=pick_examples(results, plan.epsilons, model.bounds),
        thresholds=judge(requirements, clean_accuracy, worst),
        elapsed=0.0,  # set by assess() once everything, trust checks included, has run
    )


def _trust(
    model: Classifier, results: RunResults, plan: Plan, runs: Sequence[AttackRun], clean_accuracy: float
) -> tuple[Finding, ...]:
    data = results.data
    correct = results.clean_correct.nonzero().squeeze(1)[:CHECK_EXAMPLES]
    x = data.x[correct].to(model.device)
    y = data.y[correct].to(model.device)
    sample = data.x[:CHECK_EXAMPLES].to(model.device)
    mid_eps = plan.epsilons[len(plan.epsilons) // 2]
    knowledge: dict[str, Knowledge] = {name: _knowledge(name) for name in ATTACKS}
    found = [
        *checks.low_clean_accuracy(clean_accuracy, model.num_classes, len(data)),
        *checks.randomised_outputs(model, sample),
        *checks.probability_outputs(model, sample),
        *checks.vanishing_gradients(model, x, y),
        *checks.non_monotonic_epsilon([r for r in runs if not math.isnan(r.eps)]),
        *checks.black_box_beats_white_box(runs, knowledge),
    ]
    if model.knowledge is Knowledge.WHITE_BOX and y.numel():
        found += checks.more_steps_weaker(model, x, y, plan.norm, mid_eps, plan.seed)
    return tuple(found)


def _knowledge(name: str) -> Knowledge:
    attack = ATTACKS[name]
    return getattr(attack, "knowledge", Knowledge.WHITE_BOX)


def _environment() -> Environment:
    return Environment(
        bastion=bastion.__version__,
        torch=torch.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
