"""``bastion fuzz``: fuzz a model from seed inputs, Bastion's decoders, or a running gateway; exit 11 on findings."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Annotated, Optional

import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.cli.common import err_console, out_console
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, FuzzFindingsError
from bastion.fuzz.run import DEFAULT_STRENGTH, FuzzOptions, run_fuzz
from bastion.fuzz.variants import VARIANTS
from bastion.models.interface import Classifier
from bastion.report.fuzz import FuzzReport, write_fuzz_report
from bastion.report.views import percent

__all__ = ["FINDINGS_EXIT_CODE", "fuzz_command"]

FINDINGS_EXIT_CODE = FuzzFindingsError.exit_code  # 11: the run worked and found failures
# Without --budget or --time: inputs in all (model), examples per decoder (pipeline) or per operation (gateway).
DEFAULT_BUDGETS = {"model": 2000, "pipeline": 500, "gateway": 100}


def fuzz_command(
    model: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Argument(help="demo:digits / demo:mnist, or a model file (TorchScript, weights with --factory, ONNX)."),
    ] = None,
    data: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--data", "-d", help="Seed inputs (.npz, .csv, image folder, demo:NAME:test)."),
    ] = None,
    factory: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="module:function that builds the nn.Module, for weight files."),
    ] = None,
    budget: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(
            "--budget",
            "-b",
            help="Inputs in all (model, default 2000), per decoder (pipeline, 500) or per operation (gateway, 100).",
        ),
    ] = None,
    time_limit: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--time", help="Seconds to fuzz for; with --budget, whichever ends first."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice: the same seed, the same run.")] = 0,
    strength: Annotated[
        float, typer.Option(help="Transformation strength in [0, 1] (label-preserving at the default).")
    ] = DEFAULT_STRENGTH,
    fuzzer: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--fuzzer", help="metamorphic and/or guided (repeat); default both."),
    ] = None,
    reference: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="A second model for the disagreement oracle: a model file, demo:NAME, float16 or int8."),
    ] = None,
    oracle: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Held-out model that checks mutants keep their label (default for demo models: seed 1)."),
    ] = None,
    gateway: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--gateway", help="Fuzz a running gateway at this URL instead of a model."),
    ] = None,
    api_key: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--api-key", help="The gateway's API key.", envvar="BASTION_API_KEY"),
    ] = None,
    pipeline: Annotated[bool, typer.Option("--pipeline", help="Fuzz Bastion's own input decoders.")] = False,
    engine: Annotated[
        str, typer.Option(help="--pipeline: hypothesis (property-based) or libfuzzer (atheris, coverage-guided).")
    ] = "hypothesis",
    decoder: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--decoder", help="--pipeline: a decoder to fuzz (repeat); default all. See --list-decoders."),
    ] = None,
    list_decoders: Annotated[bool, typer.Option("--list-decoders", help="List the decoders and exit.")] = False,
    minimise: Annotated[bool, typer.Option(help="Shrink each reproducer while it still fails.")] = True,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json/html and reproducers/.")] = Path(
        "reports/fuzz"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fuzz a model (metamorphic, coverage-guided), Bastion's decoders or a gateway; exit 11 when it finds failures."""
    if list_decoders:
        _print_decoders()
        return
    target = _target(model, gateway, pipeline)
    options = FuzzOptions(
        target=target,
        budget=budget if budget is not None or time_limit is not None else DEFAULT_BUDGETS[target],
        time_limit_s=time_limit,
        seed=seed,
        strength=strength,
        fuzzers=tuple(fuzzer) if fuzzer else FuzzOptions().fuzzers,
        minimise=minimise,
        engine=engine,
        decoders=tuple(decoder or ()),
    )
    if target != "pipeline" and (decoder or engine != "hypothesis"):
        raise ConfigError("--engine and --decoder apply to --pipeline only")
    options.check()  # before loading or training anything
    with FuzzBar(err_console, enabled=not quiet) as bar:
        if target == "model":
            classifier, seeds, second, judge = _model_inputs(model, data, factory, reference, oracle)
            report = run_fuzz(
                options, model=classifier, seeds=seeds, reference=second, oracle=judge, out_dir=out, progress=bar
            )
        else:
            report = run_fuzz(options, url=gateway, api_key=api_key, out_dir=out, progress=bar)
    written = write_fuzz_report(report, out)
    _print(report)
    out_console.print(f"Report: {written['html']} (also {written['json'].name})", soft_wrap=True)
    if report.findings:
        raise FuzzFindingsError(f"{len(report.findings)} unique finding(s); reproducers in {out / 'reproducers'}")


def _print_decoders() -> None:
    from bastion.fuzz.decoders import DECODER_TARGETS

    table = Table("decoder", "what it reads", title="bastion fuzz --pipeline --decoder NAME")
    for name, target in DECODER_TARGETS.items():
        table.add_row(name, target.description)
    out_console.print(table)


def _target(model: str | None, gateway: str | None, pipeline: bool) -> str:
    chosen = [name for name, given in (("a model", model), ("--gateway", gateway), ("--pipeline", pipeline)) if given]
    if len(chosen) > 1:
        raise ConfigError(f"give one target to fuzz, not {' and '.join(chosen)}")
    return "gateway" if gateway else "pipeline" if pipeline else "model"


def _model_inputs(
    model: str | None, data: str | None, factory: str | None, reference: str | None, oracle: str | None
) -> tuple[Classifier, Dataset, Classifier | None, Classifier | None]:
    """The model, its seeds, the reference (disagreement) and the oracle (validity) models."""
    from bastion.evaluation.assess import resolve_model_and_data

    seeds, classifier = resolve_model_and_data(
        model or "demo:digits", data, factory, torch.device("cpu"), trusted=False
    )
    second = None if reference is None else _second(reference, classifier, seeds, factory)
    judge = None if oracle is None else _second(oracle, classifier, seeds, factory)
    if judge is None and (model or "demo:digits").startswith("demo:"):
        from bastion.fuzz.validity import demo_oracle

        judge = demo_oracle((model or "demo:digits")[5:])
    return classifier, seeds, second, judge


def _second(spec: str, model: Classifier, seeds: Dataset, factory: str | None) -> Classifier:
    """A second model: ``float16`` or ``int8`` (copies of a PyTorch model), demo:NAME[@SEED] or a file."""
    from bastion.demo import demo_model
    from bastion.models.open import load_model

    if spec in VARIANTS:
        return VARIANTS[spec](model)
    if spec.startswith("demo:"):
        name, _, seed = spec[5:].partition("@")
        if seed and not seed.isdigit():
            raise ConfigError(f"expected demo:NAME or demo:NAME@SEED, got {spec!r}")
        return demo_model(name, seed=int(seed or 0))
    return load_model(spec, input_shape=seeds.input_shape, bounds=seeds.bounds, factory=factory)


def _print(report: FuzzReport) -> None:
    table = Table("class", "unique findings", title=f"fuzzing {report.subject}")
    for kind, count in report.by_class.items():
        table.add_row(kind, f"[red]{count}[/]" if count else "0")
    out_console.print(table)
    spent = ", ".join(f"{run.fuzzer} {run.inputs} inputs ({run.seconds:.1f} s)" for run in report.runs)
    evaluations = f"; {report.queries} model evaluations" if report.target == "model" else ""
    out_console.print(f"{spent}{evaluations}", highlight=False, soft_wrap=True)
    if report.validity is not None:
        v = report.validity
        out_console.print(
            f"validity: the oracle keeps the true label of {percent(v.raw_rate)} of {v.valid} valid mutants "
            f"({percent(v.relative_rate)} of its seed accuracy {percent(v.seed_accuracy)})",
            highlight=False,
        )
    for finding in report.findings[:10]:
        where = f" seed {finding.seed_index}" if finding.seed_index is not None else ""
        out_console.print(
            f"{finding.id} {finding.kind}{where}: {finding.message} -> {finding.reproducer or 'no reproducer'}",
            highlight=False,
            soft_wrap=True,
            markup=False,
        )
    if len(report.findings) > 10:
        out_console.print(f"... and {len(report.findings) - 10} more in the report", highlight=False)


class FuzzBar:
    """A rich bar per fuzzing phase with the findings so far; use as a context manager."""

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._bar = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("findings: {task.fields[findings]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> FuzzBar:
        self._bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._bar.stop()

    def phase(self, name: str, total: int | None) -> None:
        self._task = self._bar.add_task(name, total=total, findings=0)

    def update(self, done: int, findings: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done, findings=findings)
