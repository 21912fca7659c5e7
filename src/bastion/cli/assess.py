"""``bastion assess``: a robustness assessment of a model, written as JSON, HTML and JUnit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bastion.cli.common import err_console, out_console, split_list, to_floats
from bastion.cli.progress import RichProgress
from bastion.errors import ThresholdError
from bastion.evaluation.assess import assess
from bastion.evaluation.plan import PRESETS

__all__ = ["assess_command"]


def assess_command(
    model: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Argument(
            help="Model file (TorchScript, weights with --factory, or a trusted .pt2) or demo:mnist / demo:digits."
        ),
    ] = None,
    data: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--data", "-d", help="Data: .npz (x, y), .csv, a folder of images per class, or demo:mnist."),
    ] = None,
    factory: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="module:function that builds the nn.Module, for weight files."),
    ] = None,
    trust_model_file: Annotated[
        bool, typer.Option(help="Allow a torch.export (.pt2) file: loading one can run code it carries.")
    ] = False,
    preset: Annotated[str, typer.Option(help=f"One of: {', '.join(PRESETS)}.")] = "standard",
    norm: Annotated[str, typer.Option(help="linf, l2 or l1.")] = "linf",
    eps: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--eps", help="Epsilons (repeat or comma-separate); default depends on the norm."),
    ] = None,
    attacks: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--attack", "-a", help="Attacks to run instead of the preset's (see `bastion attacks`)."),
    ] = None,
    n_examples: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option("--n-examples", "-n", help="Examples to assess (a seeded sample)."),
    ] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Examples per batch.")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed for sampling and random starts.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json/html and junit.xml.")] = Path(
        "reports/assess"
    ),
    fail_under: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(help="METRIC[@EPS]=MIN, e.g. robust_accuracy@0.1=0.8; exit 10 when missed."),
    ] = None,
    engine: Annotated[str, typer.Option(help="Where batches run: local.")] = "local",
    trust_checks: Annotated[bool, typer.Option(help="Run the trust checks.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Attack a model with white-box evasion attacks and report its robust accuracy."""
    from bastion.report.terminal import print_summary

    with RichProgress(err_console, enabled=not quiet) as progress:
        report = assess(
            model,
            data,
            preset=preset,
            norm=norm,
            epsilons=to_floats(eps, "--eps") or None,
            attacks=split_list(attacks) or None,
            n_examples=n_examples,
            batch_size=batch_size,
            device=device,
            seed=seed,
            factory=factory,
            trust_model_file=trust_model_file,
            fail_under=split_list(fail_under),
            out_dir=out,
            engine=engine,
            trust_checks=trust_checks,
            progress=progress,
        )
    print_summary(report, out_console)
    out_console.print(f"Report: {out / 'report.html'} (also report.json, junit.xml)")
    missed = [t for t in report.thresholds if not t.passed]
    if missed:
        parts = ", ".join(
            f"{t.metric}{'' if t.eps is None else f'@{t.eps:g}'} {t.actual:.1%} < {t.required:.1%}" for t in missed
        )
        raise ThresholdError(f"missed {len(missed)} threshold(s): {parts}")
