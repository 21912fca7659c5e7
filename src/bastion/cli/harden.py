"""``bastion harden``: adversarial training, the hardened model with its manifest, and a before/after report."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from bastion.cli.common import err_console, out_console, to_floats
from bastion.cli.progress import RichProgress, progress_bar
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, ThresholdError
from bastion.evaluation.plan import PRESETS, make_plan
from bastion.harden import TRAINERS, EpochStats, HardenResult, harden
from bastion.harden.report import HardenReport, compare, write_harden_report
from bastion.harden.save import save_hardened
from bastion.models.torch import TorchClassifier
from bastion.report.views import percent

__all__ = ["harden_command"]


def harden_command(
    model: Annotated[
        str, typer.Argument(help="demo:mnist / demo:digits, or model weights (safetensors) with --factory.")
    ] = "demo:mnist",
    factory: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Option(help="module:function that builds the nn.Module, for weight files."),
    ] = None,
    data: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--data", "-d", help="Training data (.npz, .csv, image folder, demo:NAME:train)."),
    ] = None,
    test: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Test data both models are assessed on (default: the demo's test split)."),
    ] = None,
    method: Annotated[str, typer.Option(help=f"One of: {', '.join(sorted(TRAINERS))}.")] = "pgd",
    eps: Annotated[float, typer.Option(help="Training radius.")] = 0.3,
    norm: Annotated[str, typer.Option(help="linf, l2 or l1.")] = "linf",
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 5,
    steps: Annotated[int, typer.Option(help="Attack steps per batch (PGD, TRADES, reject-class).")] = 10,
    step_size: Annotated[Optional[float], typer.Option(help="Attack step; default per method.")] = None,  # noqa: UP045
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    beta: Annotated[float, typer.Option(help="TRADES: weight of the robustness term.")] = 6.0,
    seed: Annotated[int, typer.Option(help="Seed for training and the assessments.")] = 0,
    preset: Annotated[str, typer.Option(help=f"Assessment preset for the report: {', '.join(PRESETS)}.")] = "standard",
    eval_eps: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--eval-eps", help="Report epsilons (repeat or comma-separate); default: the data's and --eps."),
    ] = None,
    n_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--n-examples", "-n", help="Test examples to assess (a seeded sample)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the model, manifest and report.")] = Path(
        "reports/harden"
    ),
    registry: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--registry", help="Submit the hardened model to the retraining gate of this registry."),
    ] = None,
    policy: Annotated[Optional[Path], typer.Option(help="Gate policy (TOML) for --registry.")] = None,  # noqa: UP045
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Adversarially train a model, save it with a manifest, and report it before and after under attack."""
    _check_options(method, registry, policy)
    report_eps = to_floats(eval_eps, "--eval-eps") or None
    base, train, test_data, factory_spec = _inputs(model, factory, data, test, device)
    # The report's preset, norm and epsilons, checked before training rather than after it.
    make_plan(preset=preset, norm=norm, epsilons=tuple(report_eps) if report_eps else None, bounds=base.bounds)
    with EpochProgress(err_console, epochs, method=method, eps=eps, enabled=not quiet) as bar:
        result = harden(
            base, train, method=method, eps=eps, norm=norm, epochs=epochs, seed=seed, steps=steps,
            step_size=step_size, batch_size=batch_size, lr=lr, beta=beta, progress=bar.update,
        )  # fmt: skip
    saved = save_hardened(result, out, factory=factory_spec)
    with RichProgress(err_console, enabled=not quiet) as progress:
        report = compare(
            base, result, test_data, preset=preset, epsilons=report_eps,
            n_examples=n_examples, seed=seed, progress=progress,
        )  # fmt: skip
    written = write_harden_report(report, out)
    _print(report)
    out_console.print(
        f"Wrote {saved['model']}, {saved['manifest']}, {written['json']} and {written['html']}", soft_wrap=True
    )
    if registry is not None:
        _submit(result, registry, policy, test_data, train, factory_spec)


def _check_options(method: str, registry: Path | None, policy: Path | None) -> None:
    """Refuse, before loading anything, what would otherwise fail only after training."""
    if method not in TRAINERS:
        raise ConfigError(f"unknown hardening method {method!r}: expected one of {', '.join(sorted(TRAINERS))}")
    if policy is not None and registry is None:
        raise ConfigError("--policy is the retraining gate's: give --registry too")
    if registry is not None and method == "reject-class":
        raise ConfigError(
            "a reject-class model has one more output than the registry's models: it cannot go through the gate"
        )


def _inputs(
    model: str, factory: str | None, data: str | None, test: str | None, device: str
) -> tuple[TorchClassifier, Dataset, Dataset, str | None]:
    """The model to harden, the training and test data, and the factory that rebuilds the model's module."""
    from bastion.data.loaders import load_data
    from bastion.demo import demo_model
    from bastion.evaluation.assess import resolve_device
    from bastion.models.open import load_model
    from bastion.training import demo_recipe

    torch_device = resolve_device(device)
    if model.startswith("demo:"):
        name = model[5:]
        base = demo_model(name, device=torch_device)
        train = load_data(data or f"demo:{name}:train")
        return base, train, load_data(test or f"demo:{name}:test"), demo_recipe(name).factory_spec
    if data is None or test is None:
        raise ConfigError("a model file needs --data (training data) and --test (assessment data)")
    train = load_data(data)
    loaded = load_model(model, input_shape=train.input_shape, bounds=train.bounds, factory=factory, device=torch_device)
    if not isinstance(loaded, TorchClassifier):
        raise ConfigError(f"{model}: harden trains PyTorch models; this file holds a {type(loaded).__name__}")
    return loaded, train, load_data(test), factory


def _submit(
    result: HardenResult, registry: Path, policy: Path | None, test: Dataset, train: Dataset, factory: str | None
) -> None:
    from bastion.gate import ModelRegistry, load_policy
    from bastion.harden.submit import submit

    if factory is None:
        raise ConfigError("submitting to the gate needs --factory module:function (to rebuild the model from weights)")
    outcome = submit(
        result.model, ModelRegistry(registry), test, factory=factory, policy=load_policy(policy), train=train
    )
    out_console.print(f"gate: {outcome.decision.summary()}", soft_wrap=True, highlight=False)
    state = "promoted: it is the current model" if outcome.promoted else "registered, not promoted"
    err_console.print(f"{outcome.version.version} {state} ({registry})")
    if not outcome.decision.passed:
        names = ", ".join(check.name for check in outcome.decision.failed)
        raise ThresholdError(f"the gate refused the hardened model: {names} failed; the current version stays")


def _print(report: HardenReport) -> None:
    table = Table(title=f"{report.method}: worst case over {', '.join(report.after.settings.attacks)}")
    for heading in ("eps", "before", "after", "change"):
        table.add_column(heading, justify="right")
    clean_change = report.after.clean_accuracy - report.before.clean_accuracy
    table.add_row(
        "clean", percent(report.before.clean_accuracy), percent(report.after.clean_accuracy), _points(clean_change)
    )
    for row in report.rows:
        table.add_row(f"{row.eps:g}", percent(row.before), percent(row.after), _points(row.change))
    out_console.print(table)
    if report.rejection is not None:
        r = report.rejection
        out_console.print(
            f"reject class: {percent(r.pgd_rejected)} of PGD inputs rejected ({percent(r.pgd_caught)} caught), "
            f"{percent(r.clean_rejected)} of clean inputs rejected"
        )
    if report.masking_suspected:
        out_console.print("[bold red]Gradient masking suspected: do not trust the hardened model's robust figures[/]")
    for finding in report.warnings:
        colour = "red" if finding.severity == "error" else "yellow"
        out_console.print(f"[{colour}]{finding.severity}[/] {finding.check}: {finding.message}", highlight=False)


def _points(change: float) -> str:
    return f"{100 * change:+.1f} pp"


class EpochProgress:
    """A rich bar over the epochs, with each epoch's clean and robust accuracy printed as it ends."""

    def __init__(self, console: Console, epochs: int, *, method: str, eps: float, enabled: bool = True) -> None:
        self._console = console
        self._eps = eps
        self._bar = progress_bar(console, enabled=enabled)
        self._task = self._bar.add_task(f"harden ({method})", total=max(epochs, 1))

    def __enter__(self) -> EpochProgress:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.stop()

    def update(self, stats: EpochStats) -> None:
        fgsm = "" if stats.fgsm_accuracy is None else f"  FGSM {percent(stats.fgsm_accuracy)}"
        self._bar.console.print(
            f"epoch {stats.epoch}: clean {percent(stats.clean_accuracy)}  robust (PGD eps {self._eps:g}) "
            f"{percent(stats.robust_accuracy)}{fgsm}  loss {stats.loss:.4f}  {stats.seconds:.1f} s",
            highlight=False,
        )
        self._bar.advance(self._task, 1)
