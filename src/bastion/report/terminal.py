"""The assessment's summary for the terminal: the robust-accuracy table, findings and thresholds, via rich.

Every value from the report is escaped, so a model name like ``[red]x`` is printed as written
rather than read as rich markup.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.report.model import Assessment
from bastion.report.views import (
    accuracy_table,
    describe_threshold,
    epsilons,
    number,
    percent,
    sorted_findings,
)

__all__ = ["print_summary"]

SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "blue"}


def print_summary(assessment: Assessment, console: Console) -> None:
    """Print the summary of ``assessment`` on ``console``."""
    console.print(_headline(assessment))
    if assessment.runs or assessment.worst_case:
        console.print(_accuracy_table(assessment))
    else:
        console.print("Robust accuracy: none (no attack was run)")
    _print_incomplete(assessment, console)
    _print_universal(assessment, console)
    _print_findings(assessment, console)
    _print_thresholds(assessment, console)


def _headline(assessment: Assessment) -> str:
    return (
        f"[bold]{escape(assessment.model.name)}[/bold] on {escape(assessment.data.name)} "
        f"({assessment.data.n_examples} examples, {escape(assessment.settings.norm)}): "
        f"clean accuracy [bold]{percent(assessment.clean_accuracy)}[/bold]"
    )


def _accuracy_table(assessment: Assessment) -> Table:
    table = Table(title="Robust accuracy", caption=f"clean accuracy {percent(assessment.clean_accuracy)}")
    table.add_column("attack")
    for eps in epsilons(assessment):
        table.add_column(f"eps={number(eps)}", justify="right")
    for row in accuracy_table(assessment):
        cells = [escape(row.name), *(percent(value) for value in row.accuracy)]
        table.add_row(*cells, style="bold" if row.worst_case else None, end_section=row.worst_case)
    return table


def _print_incomplete(assessment: Assessment, console: Console) -> None:
    """Runs with examples whose attack did not complete: their figures are partial (an upper bound)."""
    partial = [run for run in assessment.runs if run.incomplete]
    if not partial:
        return
    console.print("[yellow]Partial results[/yellow] (unfinished examples count as unbroken):")
    for run in partial:
        reasons = "; ".join(f"{reason}: {count}" for reason, count in run.incomplete_reasons.items())
        where = escape(run.attack) + ("" if math.isnan(run.eps) else f" eps={number(run.eps)}")
        console.print(f"  {where}: {run.incomplete} of {run.n_examples} examples incomplete ({escape(reasons)})")


def _print_universal(assessment: Assessment, console: Console) -> None:
    """Each universal pattern's success on the held-out inputs, against a random pattern's."""
    for run in assessment.universal:
        targeted = "" if run.holdout_target_success is None else f", target hit {percent(run.holdout_target_success)}"
        console.print(
            f"{escape(run.attack)}: fools {percent(run.holdout_success)} of {run.n_holdout} held-out inputs"
            f"{targeted} (random pattern {percent(run.baseline_success)}; trained on {run.n_train})"
        )


def _print_findings(assessment: Assessment, console: Console) -> None:
    findings = sorted_findings(assessment)
    console.print("Trust findings:" + ("" if findings else " none"))
    for finding in findings:
        style = SEVERITY_STYLES.get(finding.severity, "default")
        severity, check, message = (escape(text) for text in (finding.severity, finding.check, finding.message))
        console.print(f"  [{style}]{severity}[/{style}] {check}: {message}")


def _print_thresholds(assessment: Assessment, console: Console) -> None:
    if not assessment.thresholds:
        console.print("Thresholds: none")
        return
    console.print("Thresholds:")
    for threshold in assessment.thresholds:
        mark = "[green]pass[/green]" if threshold.passed else "[bold red]FAIL[/bold red]"
        console.print(f"  {mark} {escape(describe_threshold(threshold))}")
    verdict = "[bold green]PASSED[/bold green]" if assessment.passed else "[bold red]FAILED[/bold red]"
    console.print(f"Verdict: {verdict}")
