"""The label oracle of the decision-based attacks: cache-sized model calls on a CPU, same answers, every row charged."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.attacks.blackbox.decision import CPU_ROWS, MAX_ROWS, Oracle, rows_per_call
from bastion.attacks.interface import Ledger
from bastion.models import TorchClassifier
from bastion.models.restricted import restrict


def test_rows_per_call_follows_the_device() -> None:
    assert rows_per_call(torch.device("cpu")) == CPU_ROWS == 128
    assert rows_per_call(torch.device("cuda", 0)) == rows_per_call(torch.device("meta")) == MAX_ROWS


def test_a_large_question_goes_through_the_model_in_cpu_sized_calls() -> None:
    gen = torch.Generator().manual_seed(0)
    linear = nn.Linear(6, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(3, 6, generator=gen))
    model = TorchClassifier(nn.Sequential(linear).eval(), input_shape=(6,), name="linear")
    calls: list[int] = []
    linear.register_forward_pre_hook(lambda _m, args: calls.append(int(args[0].shape[0])))
    points = torch.rand(300, 6, generator=gen)
    ids = torch.arange(300) % 7  # seven examples, asking for several rows each
    y = torch.zeros(7, dtype=torch.int64)
    ledger = Ledger(7, torch.device("cpu"))
    answers = Oracle(restrict(model, "labels"), y, None, ledger, budget=1000).ask(points, ids)
    assert calls == [128, 128, 44]
    with torch.no_grad():
        expected: Tensor = linear(points).argmax(dim=1) != 0
    assert torch.equal(answers, expected)
    assert ledger.forward.tolist() == torch.bincount(ids, minlength=7).tolist()
