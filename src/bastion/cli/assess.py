"""``bastion assess``: a robustness assessment of a model, written as JSON, HTML and JUnit."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Optional

import typer

from bastion.cli.common import err_console, out_console, split_list, to_floats
from bastion.cli.progress import RichProgress
from bastion.cli.remote import RemoteOptions, remote_classifier
from bastion.errors import ConfigError, ThresholdError
from bastion.evaluation.assess import assess
from bastion.evaluation.plan import PRESETS
from bastion.evaluation.universal import PatchOptions, PerturbationOptions
from bastion.models.remote import RemoteClassifier

__all__ = ["assess_command"]


def assess_command(
    model: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Argument(
            help="Model file (TorchScript, weights with --factory, a trusted .pt2, ONNX, skops, or a pickle with "
            "--trust-pickle) or demo:mnist / demo:digits."
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
    trust_pickle: Annotated[
        bool,
        typer.Option(
            help="Allow a pickle or joblib file (scikit-learn): it is scanned first and refused if it imports "
            "anything but allowlisted numpy, scipy and scikit-learn types."
        ),
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
    target: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="URL of a remote model endpoint (http or https), instead of a model file."),
    ] = None,
    knowledge: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            help="What the attacker sees: white-box, scores or labels (default: all the model gives; "
            "for --target: scores). Picks the attacks that fit."
        ),
    ] = None,
    input_shape: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="--target's input shape, e.g. 1,28,28."),
    ] = None,
    num_classes: Annotated[Optional[int], typer.Option(help="--target's number of classes.")] = None,  # noqa: UP045
    bounds: Annotated[str, typer.Option(help="--target's input bounds LOW,HIGH.")] = "0,1",
    query_budget: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Hard cap on rows sent to --target, retries included; results past it are partial."),
    ] = None,
    header: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--header", help="'Name: value' sent to --target (repeatable), e.g. an Authorization header."),
    ] = None,
    request_field: Annotated[
        str, typer.Option(help="Dotted JSON path of the input batch (json mode) or the form field (image mode).")
    ] = "inputs",
    response_field: Annotated[
        str, typer.Option(help="Dotted JSON path of the scores or labels in the answer; * maps over a list.")
    ] = "outputs",
    request_mode: Annotated[
        str, typer.Option(help="json (the batch as a JSON array) or image (one PNG upload per input).")
    ] = "json",
    patch: Annotated[
        bool,
        typer.Option(
            help="Also learn a universal adversarial patch on half of the data and report its success on the "
            "other half (white-box image models; adds about half a minute on a CPU at the defaults)."
        ),
    ] = False,
    patch_size: Annotated[float, typer.Option(help="--patch: its side as a fraction of the image side.")] = 0.3,
    patch_steps: Annotated[int, typer.Option(help="--patch: optimisation steps (batches of 128 images).")] = 300,
    patch_target: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="--patch: class to send inputs to (default: untargeted)."),
    ] = None,
    perturbation: Annotated[
        bool,
        typer.Option(help="Also learn a universal perturbation on half of the data and report it on the other half."),
    ] = False,
    perturbation_eps: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="--perturbation: its radius in --norm (default: the largest epsilon)."),
    ] = None,
    perturbation_epochs: Annotated[int, typer.Option(help="--perturbation: passes over the training half.")] = 5,
    perturbation_target: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="--perturbation: class to send inputs to (default: untargeted)."),
    ] = None,
) -> None:
    """Attack a model with every technique that fits what the attacker can see, and report its robust accuracy."""
    from bastion.report.terminal import print_summary

    remote = None
    if target is not None:
        remote = _remote(
            RemoteOptions(
                target=target,
                knowledge=knowledge or "scores",
                input_shape=input_shape,
                num_classes=num_classes,
                bounds=bounds,
                query_budget=query_budget,
                headers=tuple(header or ()),
                request_field=request_field,
                response_field=response_field,
                request_mode=request_mode,
            ),
            model,
            data,
        )
    with RichProgress(err_console, enabled=not quiet) as progress, remote or contextlib.nullcontext():
        report = assess(
            remote or model,
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
            trust_pickle=trust_pickle,
            fail_under=split_list(fail_under),
            out_dir=out,
            engine=engine,
            trust_checks=trust_checks,
            knowledge=None if remote is not None else knowledge,
            progress=progress,
            patch=PatchOptions(size=patch_size, steps=patch_steps, target=patch_target) if patch else None,
            perturbation=(
                PerturbationOptions(eps=perturbation_eps, epochs=perturbation_epochs, target=perturbation_target)
                if perturbation
                else None
            ),
        )
    print_summary(report, out_console)
    out_console.print(f"Report: {out / 'report.html'} (also report.json, junit.xml)", soft_wrap=True)
    missed = [t for t in report.thresholds if not t.passed]
    if missed:
        parts = ", ".join(
            f"{t.metric}{'' if t.eps is None else f'@{t.eps:g}'} {t.actual:.1%} < {t.required:.1%}" for t in missed
        )
        raise ThresholdError(f"missed {len(missed)} threshold(s): {parts}")


def _remote(options: RemoteOptions, model: str | None, data: str | None) -> RemoteClassifier:
    """The ``--target`` model, which takes the place of a model file and needs ``--data``."""
    if model is not None:
        raise ConfigError(f"give either a model ({model}) or --target, not both")
    if data is None:
        raise ConfigError("--target needs --data: the examples to send to the endpoint")
    return remote_classifier(options)
