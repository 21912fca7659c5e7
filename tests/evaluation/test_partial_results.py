"""Partial results: a model whose query budget runs out, or whose endpoint keeps failing, never crashes a run."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import pytest
import torch
from rich.console import Console
from torch import Tensor

from bastion.data import Dataset
from bastion.errors import BudgetExhaustedError, RemoteModelError
from bastion.evaluation import assess
from bastion.evaluation.runner import BUDGET_EXHAUSTED
from bastion.models import Knowledge, QueryCounter, TorchClassifier
from bastion.report.html import render_html
from bastion.report.jsonio import from_dict, to_dict
from bastion.report.model import Assessment
from bastion.report.terminal import print_summary

LinearFactory = Callable[..., TorchClassifier]
N = 40
FAILURE = "http://m.test/predict failed after 3 attempts: HTTP 500 Internal Server Error"


class Budgeted:
    """A white-box test double with a hard budget on forward rows, refused before running (like the remote adapter)."""

    knowledge = Knowledge.WHITE_BOX

    def __init__(self, model: TorchClassifier, budget: int, *, failing: bool = False) -> None:
        self.model, self.budget, self.failing = model, budget, failing
        self.input_shape, self.num_classes, self.bounds = model.input_shape, model.num_classes, model.bounds
        self.device, self.name = model.device, "budgeted"

    @property
    def queries(self) -> QueryCounter:
        return self.model.queries

    def logits(self, x: Tensor) -> Tensor:
        if self.queries.forward + x.shape[0] > self.budget:
            raise BudgetExhaustedError(f"query budget of {self.budget} rows exhausted")
        # After the clean pass, any batch holding the one input near (1, 1, 1, 1) fails, as an endpoint might.
        if self.failing and self.queries.forward >= N and bool((x.min(dim=1).values > 0.75).any()):
            raise RemoteModelError(FAILURE)
        return self.model.logits(x)

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return self.model.inference()


def labelled_by(model: TorchClassifier) -> Dataset:
    """Inputs the model classifies correctly by construction (labels are its own predictions).

    All lie in [0, 0.5] but one, which is (1, 1, 1, 1): no attack at eps <= 0.2 makes the two meet.
    """
    x = torch.rand((N, 4), generator=torch.Generator().manual_seed(0)) / 2
    x[N // 3] = 1.0
    with torch.no_grad():
        y = model.logits(x).argmax(1)
    model.queries.forward = 0
    return Dataset.from_arrays(x, y, name="labelled")


def run(model: Budgeted, data: Dataset) -> Assessment:
    return assess(
        model, data, preset="quick", attacks=["fgsm", "pgd"], epsilons=[0.1, 0.2], batch_size=8, trust_checks=False
    )


def test_budget_exhausted_stops_cleanly_with_partial_results_marked(linear_model: LinearFactory) -> None:
    inner = linear_model()
    data = labelled_by(inner)
    budget = N + 40  # the clean pass, then a few FGSM batches (2 rows per example each)
    report = run(Budgeted(inner, budget), data)
    assert inner.queries.forward <= budget
    first, *later = report.runs
    assert (first.attack, first.eps) == ("fgsm", 0.1)
    assert 0 < first.incomplete < N and first.incomplete_reasons == {BUDGET_EXHAUSTED: first.incomplete}
    assert all(r.incomplete == N and r.incomplete_reasons == {BUDGET_EXHAUSTED: N} for r in later)
    assert first.gradients_total == N - first.incomplete  # the batches that ran still count (one gradient each)
    assert from_dict(to_dict(report)) == report


def test_a_failing_batch_is_marked_and_the_run_goes_on(linear_model: LinearFactory) -> None:
    inner = linear_model()
    data = labelled_by(inner)
    report = run(Budgeted(inner, 10**9, failing=True), data)
    for r in report.runs:
        assert r.incomplete == 8 and r.incomplete_reasons == {FAILURE: 8}, r
    assert all(r.success_rate > 0 for r in report.runs)  # the other batches were attacked


def test_partial_results_show_in_terminal_and_html(linear_model: LinearFactory) -> None:
    inner = linear_model()
    report = run(Budgeted(inner, N + 40), labelled_by(inner))
    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert (
        "Partial results" in text and f"pgd eps=0.2: {N} of {N} examples incomplete ({BUDGET_EXHAUSTED}: {N})" in text
    )
    assert f"{BUDGET_EXHAUSTED}: {N}" in render_html(report)


def test_old_reports_without_the_fields_still_read(linear_model: LinearFactory) -> None:
    inner = linear_model()
    data = labelled_by(inner)
    report = run(Budgeted(inner, 10**9), data)
    raw = to_dict(report)
    for r in raw["runs"]:
        del r["incomplete"], r["incomplete_reasons"]
    back = from_dict(raw)
    assert back == report and all(r.incomplete == 0 and r.incomplete_reasons == {} for r in back.runs)


@pytest.mark.parametrize("error", [BudgetExhaustedError("spent"), RemoteModelError("down")])
def test_model_level_checks_are_skipped_not_fatal(error: Exception) -> None:
    from bastion.evaluation import checks

    class Failing:
        knowledge = Knowledge.SCORES

        def logits(self, x: Tensor) -> Tensor:
            raise error

        def inference(self) -> contextlib.AbstractContextManager[None]:
            return contextlib.nullcontext()

    for check in (checks.randomised_outputs, checks.probability_outputs):
        (finding,) = check(Failing(), torch.zeros((2, 4)))  # type: ignore[arg-type]
        assert finding.severity == "warning" and str(error) in finding.message
