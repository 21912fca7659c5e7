"""Catastrophic overfitting: the detector on constructed histories, and the loop's stop-and-restore on a collapse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
import torch

from bastion.data import Dataset
from bastion.harden import EpochStats, FastFGSM, catastrophic_overfitting, harden
from bastion.models import TorchClassifier


def epochs(*figures: tuple[float, float | None]) -> list[EpochStats]:
    """A history from (PGD accuracy, FGSM accuracy) pairs, starting at epoch 0."""
    return [EpochStats(i, 0.95, pgd, 0.5, 1.0, fgsm) for i, (pgd, fgsm) in enumerate(figures)]


@pytest.mark.parametrize(
    ("history", "collapsed"),
    [
        # Wong et al.'s picture: PGD accuracy climbs, then falls to near zero within an epoch as FGSM accuracy rises.
        (epochs((0.0, 0.1), (0.35, 0.5), (0.45, 0.6), (0.02, 0.9)), True),
        (epochs((0.0, 0.1), (0.5, 0.6), (0.2, 0.8)), True),  # a 30-point drop, FGSM 60 points above PGD
        # Healthy runs: PGD accuracy rising, or dipping a little, with FGSM close above it.
        (epochs((0.0, 0.1), (0.2, 0.3), (0.3, 0.4), (0.35, 0.45)), False),
        (epochs((0.0, 0.1), (0.4, 0.5), (0.33, 0.45)), False),
        # A big drop while FGSM accuracy falls too: the model got weaker, not masked.
        (epochs((0.0, 0.1), (0.5, 0.6), (0.1, 0.2)), False),
        # Never robust: nothing to collapse from, nothing to restore.
        (epochs((0.0, 0.1), (0.01, 0.4), (0.01, 0.6)), False),
        # No earlier epoch, or no FGSM figure (trainers other than fast FGSM).
        (epochs((0.0, 0.9)), False),
        (epochs((0.0, None), (0.5, None), (0.0, None)), False),
        ([], False),
    ],
)
def test_the_detector_fires_on_a_collapse_and_not_on_healthy_runs(history: list[EpochStats], collapsed: bool) -> None:
    assert catastrophic_overfitting(history) is collapsed


@dataclass(frozen=True, kw_only=True)
class CollapsesAtEpochTwo(FastFGSM):
    """Fast FGSM training whose detector reports a collapse after the second epoch (epoch 0 comes first)."""

    def collapsed(self, history: Sequence[EpochStats]) -> bool:
        return len(history) == 3


def test_on_a_collapse_training_stops_and_the_last_good_epochs_weights_are_restored(
    digits_model: TorchClassifier, digits_train: Dataset
) -> None:
    train = replace(digits_train, x=digits_train.x[:320], y=digits_train.y[:320])
    settings = {"eps": 0.2, "batch_size": 64, "lr": 3e-3, "seed": 0}
    collapsed = harden(digits_model, train, method=CollapsesAtEpochTwo(), epochs=4, **settings)
    assert collapsed.catastrophic_overfitting
    assert [stats.epoch for stats in collapsed.history] == [1, 2]  # the collapsed epoch stays as evidence
    assert collapsed.manifest["restored_epoch"] == 1 and collapsed.manifest["epochs_run"] == 2
    one_epoch = harden(digits_model, train, method=FastFGSM(), epochs=1, **settings)
    for key, value in one_epoch.model.module.state_dict().items():
        assert torch.equal(collapsed.model.module.state_dict()[key], value), key
    assert not collapsed.model.module.training
