"""``bastion poison``: how far poisoned training data moves a model trained with the user's recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from bastion.cli.common import out_console, split_list, to_floats
from bastion.data.loaders import load_data
from bastion.errors import ConfigError
from bastion.poisoning.registry import POISONS
from bastion.poisoning.susceptibility import DEFAULT_ATTACKS, DEFAULT_RATES, assess_poisoning
from bastion.report.poisoning import PoisoningReport, write_poisoning_report
from bastion.report.views import percent
from bastion.training.recipe import load_recipe

__all__ = ["poison_command"]


def poison_command(
    recipe: Annotated[
        str, typer.Option(help="Training recipe: demo:digits / demo:mnist / demo:breast-cancer or module:function.")
    ] = "demo:digits",
    train: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Option(help="Training data (.npz, .csv, image folder, demo:NAME:train); default: the demo's."),
    ] = None,
    test: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Clean test data to measure on; default: the demo's test split."),
    ] = None,
    attacks: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--attack",
            "-a",
            help=f"Attacks (repeat or comma-separate): {', '.join(sorted(POISONS))}. "
            f"Default: {', '.join(DEFAULT_ATTACKS)}.",
        ),
    ] = None,
    rates: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--rate",
            help="Poison rates in (0, 1), shares of the training set (repeat or comma-separate). "
            f"Default: {', '.join(map(str, DEFAULT_RATES))}.",
        ),
    ] = None,
    epochs: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(help="Training epochs per model (default: the recipe's own)."),
    ] = None,
    source: Annotated[int, typer.Option(help="The class targeted attacks aim at.")] = 0,
    target: Annotated[int, typer.Option(help="The label the attacker wants (flip, backdoor, collision).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for poisoning and training.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for report.json and report.html.")] = Path(
        "reports/poison"
    ),
) -> None:
    """Poison the training data at each rate, retrain with the recipe, and measure accuracy and attack success."""
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs: expected an integer >= 1, got {epochs}")
    demo = recipe[5:] if recipe.startswith("demo:") else None
    if demo is None and (train is None or test is None):
        raise ConfigError("a recipe that is not a bundled demo needs --train and --test data")
    trainer = load_recipe(recipe)
    report = assess_poisoning(
        trainer,
        load_data(train or f"demo:{demo}:train"),
        load_data(test or f"demo:{demo}:test"),
        attacks=split_list(attacks) or list(DEFAULT_ATTACKS),
        rates=to_floats(rates, "--rate") or list(DEFAULT_RATES),
        seed=seed,
        epochs=epochs,
        source=source,
        target=target,
    )
    paths = write_poisoning_report(report, out)
    out_console.print(_table(report))
    out_console.print(f"Wrote {paths['json']} and {paths['html']}", soft_wrap=True)


def _table(report: PoisoningReport) -> Table:
    baseline = percent(report.baseline_accuracy)
    table = Table(title=f"Poisoning {report.recipe}: clean model {baseline} on {report.test.name}")
    table.add_column("attack", no_wrap=True)
    for heading in ("rate", "poisoned", "clean accuracy", "targeted class", "attack success"):
        table.add_column(heading, justify="right")
    for attack in report.attacks:
        for run in report.curve(attack.name):
            table.add_row(
                run.attack,
                percent(run.rate),
                str(run.poisoned),
                percent(run.clean_accuracy),
                percent(run.targeted_class_accuracy),
                percent(run.attack_success),
            )
    return table
