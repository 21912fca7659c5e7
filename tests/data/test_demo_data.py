"""Bundled demo data: sizes, shapes, bounds, stratified and disjoint splits, determinism."""

from __future__ import annotations

import pytest
import torch

from bastion.data import DEMO_DATASETS, Dataset, load_demo
from bastion.errors import ConfigError


def _row_hashes(data: Dataset) -> set[bytes]:
    return {row.numpy().tobytes() for row in data.x.reshape(len(data), -1)}


def test_mnist_test_split_has_100_per_class() -> None:
    test = load_demo("mnist", "test")
    assert len(test) == 1000
    assert test.input_shape == (1, 28, 28)
    assert torch.bincount(test.y, minlength=10).tolist() == [100] * 10
    assert test.name == "mnist-test"
    assert test.class_names == tuple("0123456789")


def test_mnist_train_and_test_are_disjoint() -> None:
    train, test = load_demo("mnist", "train"), load_demo("mnist", "test")
    assert len(train) == 4000
    assert not _row_hashes(train) & _row_hashes(test)


def test_digits_splits() -> None:
    train, test = load_demo("digits", "train"), load_demo("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.input_shape == test.input_shape == (1, 8, 8)
    assert torch.bincount(test.y, minlength=10).tolist() == [36] * 10
    # The 8x8 digits hold a few exact duplicates, so check the split by counts, not by content.
    assert len(train) + len(test) == 1797


@pytest.mark.parametrize("name", DEMO_DATASETS)
def test_types_and_bounds(name: str) -> None:
    data = load_demo(name, "test")
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert data.bounds == (0.0, 1.0)
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    assert set(data.y.tolist()) == set(range(len(data.class_names or ())))


@pytest.mark.parametrize("name", DEMO_DATASETS)
def test_deterministic(name: str) -> None:
    first, again = load_demo(name, "test"), load_demo(name, "test")
    assert torch.equal(first.x, again.x) and torch.equal(first.y, again.y)


def test_unknown_name_and_split() -> None:
    with pytest.raises(ConfigError, match="unknown demo dataset 'cifar': expected one of breast-cancer, digits, mnist"):
        load_demo("cifar")
    with pytest.raises(ConfigError, match="unknown split 'validation': expected one of train, test"):
        load_demo("digits", "validation")
