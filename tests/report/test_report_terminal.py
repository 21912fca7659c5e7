"""The terminal summary: accuracy table, findings and thresholds on a rich console."""

from __future__ import annotations

import dataclasses

from rich.console import Console

from bastion.report import Assessment, print_summary


def _text(assessment: Assessment) -> str:
    console = Console(record=True, width=120, color_system=None)
    print_summary(assessment, console)
    return console.export_text()


def test_summary_shows_the_figures(assessment: Assessment) -> None:
    text = _text(assessment)
    for expected in ("eps=0.05", "eps=0.2", "71.0%", "7.0%", "clean accuracy 90.0%"):
        assert expected in text
    worst = next(line for line in text.splitlines() if "worst case" in line)
    assert [cell for cell in worst.split() if cell.endswith("%")] == ["62.0%", "35.0%", "5.0%"]
    assert "error gradient_masking" in text
    assert "FAIL robust_accuracy at eps=0.1: required >= 0.5, actual 0.35" in text
    assert "Verdict: FAILED" in text


def test_markup_in_names_is_printed_literally(assessment: Assessment) -> None:
    model = dataclasses.replace(assessment.model, name="[red]net[/red]")
    assert "[red]net[/red]" in _text(dataclasses.replace(assessment, model=model))


def test_empty_assessment_says_none(assessment: Assessment) -> None:
    text = _text(dataclasses.replace(assessment, runs=(), worst_case=(), findings=(), thresholds=()))
    assert "Trust findings: none" in text
    assert "Thresholds: none" in text
