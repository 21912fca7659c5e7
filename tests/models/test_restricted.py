"""Restricted views: scores without gradients, labels as one-hot rows, queries counted on the model."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import PGD
from bastion.errors import ConfigError
from bastion.models import Knowledge, restrict


def test_scores_view_has_no_gradients_and_counts_queries(linear_model) -> None:  # type: ignore[no-untyped-def]
    model = linear_model(4, 3)
    view = restrict(model, "scores")
    x = torch.rand(5, 4, requires_grad=True)
    out = view.logits(x)
    assert not out.requires_grad
    assert torch.allclose(out, model.module(x).detach())
    assert model.queries.forward == 5 and view.queries is model.queries
    with pytest.raises(ConfigError, match="pgd needs white-box access; the model exposes only scores"):
        PGD(steps=2)(view, x.detach(), torch.zeros(5, dtype=torch.long), eps=0.1)


def test_labels_view_returns_one_hot_rows(linear_model) -> None:  # type: ignore[no-untyped-def]
    model = linear_model(4, 3)
    view = restrict(model, Knowledge.LABELS)
    x = torch.rand(6, 4)
    out = view.logits(x)
    assert torch.equal(out.sum(dim=1), torch.ones(6))
    assert torch.equal(out.argmax(dim=1), model.module(x).argmax(dim=1))


def test_cannot_widen_access(linear_model) -> None:  # type: ignore[no-untyped-def]
    labels = restrict(linear_model(4, 3), "labels")
    with pytest.raises(ConfigError, match="cannot give scores access to a model that exposes labels"):
        restrict(labels, "scores")
    assert restrict(labels, "labels") is labels
