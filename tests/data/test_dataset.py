"""Dataset: construction, validation errors that name the offending value, and seeded subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.data import Dataset
from bastion.errors import DataError


def make(n: int = 6, **kw: object) -> Dataset:
    x = np.linspace(0, 1, n * 4, dtype=np.float32).reshape(n, 1, 2, 2)
    y = np.arange(n) % 3
    return Dataset.from_arrays(x, y, name="toy", **kw)  # type: ignore[arg-type]


def test_from_arrays_converts_types() -> None:
    data = Dataset.from_arrays(np.zeros((3, 4), dtype=np.float64), np.array([0.0, 1.0, 2.0]), name="toy")
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert len(data) == 3 and data.input_shape == (4,)
    assert data.y.tolist() == [0, 1, 2]
    tensors = Dataset.from_arrays(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([1, 0]))
    assert tensors.x.dtype == torch.float32 and tensors.y.dtype == torch.int64


def test_valid_data_passes_with_model_constraints() -> None:
    make().validate(num_classes=3, input_shape=(1, 2, 2))


@pytest.mark.parametrize(
    ("value", "message"),
    [(float("nan"), r"toy: 1 inputs contain NaN or Inf \(first at index 2\)"), (float("inf"), r"NaN or Inf")],
    ids=["nan", "inf"],
)
def test_non_finite_inputs(value: float, message: str) -> None:
    x = np.zeros((4, 3), dtype=np.float32)
    x[2, 1] = value
    with pytest.raises(DataError, match=message):
        Dataset.from_arrays(x, np.zeros(4), name="toy")


def test_inputs_outside_the_bounds() -> None:
    x = np.full((4, 3), 0.5, dtype=np.float32)
    x[1, 0], x[3, 2] = -0.25, 2.5
    with pytest.raises(
        DataError,
        match=r"toy: inputs must lie within bounds \[0.0, 1.0\], found values in \[-0.25, 2.5\] "
        r"\(2 inputs, first at index 1\); rescale the data or declare its bounds",
    ):
        Dataset.from_arrays(x, np.zeros(4), name="toy")
    # The same values are fine once the bounds are declared.
    Dataset.from_arrays(x, np.zeros(4), bounds=(-1.0, 3.0))


def test_bounds_must_be_ordered() -> None:
    with pytest.raises(DataError, match=r"low < high, got \(1.0, 0.0\)"):
        make(bounds=(1.0, 0.0))


def test_negative_label() -> None:
    with pytest.raises(DataError, match="toy: labels must be >= 0, found -3"):
        Dataset.from_arrays(np.zeros((3, 2)), np.array([0, -3, 1]), name="toy")


def test_label_beyond_the_model_classes() -> None:
    data = Dataset.from_arrays(np.zeros((3, 2)), np.array([0, 12, 1]), name="toy")
    data.validate(num_classes=13)
    with pytest.raises(DataError, match=r"toy: label 12 is out of range for a model with 10 classes \(expected 0..9\)"):
        data.validate(num_classes=10)


def test_non_integer_labels() -> None:
    with pytest.raises(DataError, match=r"toy: expected integer class labels, got non-integer values such as 1.5"):
        Dataset.from_arrays(np.zeros((3, 2)), np.array([0.0, 1.5, 2.0]), name="toy")


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.array([["a", "b"]]), np.array([0]), r"toy: expected numeric inputs, got dtype <U1"),
        (np.zeros((2, 2)), np.array(["cat", "dog"]), r"toy: expected numeric labels, got dtype <U3"),
    ],
    ids=["text-inputs", "text-labels"],
)
def test_non_numeric_arrays(x: np.ndarray, y: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Dataset.from_arrays(x, y, name="toy")


def test_one_label_per_input() -> None:
    with pytest.raises(DataError, match=r"toy: expected one label per input \(3\), got labels of shape \(2,\)"):
        Dataset.from_arrays(np.zeros((3, 2)), np.array([0, 1]), name="toy")
    with pytest.raises(DataError, match=r"got labels of shape \(3, 2\)"):
        Dataset.from_arrays(np.zeros((3, 2)), np.eye(3, 2), name="toy")


def test_wrong_input_shape() -> None:
    with pytest.raises(DataError, match=r"toy: inputs have shape \(1, 2, 2\), but the model expects \(1, 28, 28\)"):
        make().validate(input_shape=(1, 28, 28))


def test_empty() -> None:
    with pytest.raises(DataError, match="toy: the dataset is empty; expected at least one example"):
        Dataset.from_arrays(np.zeros((0, 3)), np.zeros(0), name="toy")


def test_take_is_a_seeded_subset_that_keeps_pairs() -> None:
    data = make(50)
    sub = data.take(10, seed=1)
    assert len(sub) == 10 and sub.bounds == data.bounds and sub.name == data.name
    assert torch.equal(sub.x, data.take(10, seed=1).x)
    assert not torch.equal(sub.x, data.take(10, seed=2).x)
    # Each input still carries its own label.
    index = [int(torch.nonzero((data.x == row).all(dim=(1, 2, 3)))[0]) for row in sub.x]
    assert sub.y.tolist() == [int(data.y[i]) for i in index]
    assert len(set(index)) == 10


def test_take_all_and_too_many() -> None:
    data = make(8)
    everything = data.take(None)
    assert sorted(everything.x.flatten().tolist()) == sorted(data.x.flatten().tolist())
    assert len(data.take(100)) == 8


@pytest.mark.parametrize("n", [0, -1])
def test_take_needs_a_positive_count(n: int) -> None:
    with pytest.raises(DataError, match=f"expected a number of examples > 0, got {n}"):
        make().take(n)


def test_to_device_keeps_everything() -> None:
    data = make().to("cpu")
    assert data.x.device.type == "cpu" and data.name == "toy"
