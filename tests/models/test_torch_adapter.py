"""TorchClassifier: query counting, class probing, modes, and the protocol helpers around it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from bastion.errors import ConfigError, DataError, ModelError
from bastion.models import Classifier, Knowledge, QueryCounter, TorchClassifier, predict, value_and_grad

LinearFactory = Callable[..., TorchClassifier]


def test_is_a_white_box_classifier(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    assert isinstance(model, Classifier)
    assert model.knowledge is Knowledge.WHITE_BOX
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert "num_classes=3" in repr(model)


def test_num_classes_is_probed_without_counting(linear_model: LinearFactory) -> None:
    model = linear_model(6, 5, input_shape=(1, 2, 3))
    assert model.num_classes == 5
    assert model.queries.snapshot() == (0, 0)


def test_declared_num_classes_is_kept() -> None:
    model = TorchClassifier(nn.Linear(2, 4), input_shape=(2,), num_classes=4)
    assert model.num_classes == 4


def test_logits_count_one_forward_row_per_example(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    out = model.logits(torch.rand(5, 4))
    assert out.shape == (5, 3)
    predict(model, torch.rand(2, 4))
    assert model.queries.snapshot() == (7, 0)


def test_value_and_grad_counts_forward_and_backward(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    x = torch.rand(5, 4)
    logits, loss, grad = value_and_grad(model, x, lambda z: z[:, 0])
    assert model.queries.snapshot() == (5, 5)
    assert logits.shape == (5, 3) and loss.shape == (5,) and grad.shape == x.shape
    assert not grad.requires_grad and not x.requires_grad
    # The gradient of logit 0 of a linear model is row 0 of its weight, for every example.
    weight = model.module[1].weight.detach()
    torch.testing.assert_close(grad, weight[0].expand(5, 4))


def test_value_and_grad_refuses_a_model_without_gradients() -> None:
    class Scores:
        knowledge = Knowledge.SCORES
        queries = QueryCounter()

        def logits(self, x: Tensor) -> Tensor:
            raise AssertionError("must not be called")

    with pytest.raises(ConfigError, match="needs gradients, but the model exposes only scores"):
        value_and_grad(Scores(), torch.zeros(1, 2), lambda z: z.sum(dim=1))  # type: ignore[arg-type]


def test_wrong_input_shape_is_reported() -> None:
    with pytest.raises(DataError, match=r"does not accept inputs of shape \(7,\)"):
        TorchClassifier(nn.Linear(4, 3), input_shape=(7,))


def test_bounds_must_be_ordered() -> None:
    with pytest.raises(DataError, match=r"low < high, got \(1.0, 0.0\)"):
        TorchClassifier(nn.Linear(4, 3), input_shape=(4,), bounds=(1.0, 0.0))


def test_outputs_that_are_not_logits_are_refused() -> None:
    with pytest.raises(ModelError, match="logits of shape"):
        TorchClassifier(nn.Flatten(0), input_shape=(4,))
    model = TorchClassifier(nn.Flatten(0), input_shape=(4,), num_classes=4)
    with pytest.raises(ModelError, match=r"logits of shape \(n, classes\), got \(8,\)"):
        model.logits(torch.zeros(2, 4))


class _Modes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
        self.b = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        assert not self.training, "called in train mode"
        out: Tensor = self.head(self.b(self.a(x)))
        return out


def _modes(module: nn.Module) -> list[bool]:
    return [m.training for m in module.modules()]


def test_inference_sets_eval_and_restores_mixed_modes() -> None:
    module = _Modes()
    model = TorchClassifier(module, input_shape=(4,))  # the probe runs under inference(): it must be eval
    module.train()
    module.b.eval()  # a frozen BatchNorm inside a training model
    before = _modes(module)
    with model.inference():
        assert not any(_modes(module))
        model.logits(torch.rand(3, 4))
    assert _modes(module) == before


def test_inference_restores_modes_after_an_error() -> None:
    module = _Modes().train()
    model = TorchClassifier(module, input_shape=(4,))
    with pytest.raises(RuntimeError, match="boom"), model.inference():
        raise RuntimeError("boom")
    assert all(_modes(module))


def test_device_of_a_module_without_parameters() -> None:
    model = TorchClassifier(nn.Flatten(), input_shape=(3,))
    assert model.device == torch.device("cpu")
    assert model.dtype == torch.float32
    assert model.num_classes == 3
