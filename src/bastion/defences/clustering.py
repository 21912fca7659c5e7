"""Activation clustering: a poisoned class splits into a large clean cluster and a small, well-separated poison cluster.

Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural Networks by Activation Clustering"
(arXiv:1811.03728). Per label: reduce the penultimate representations to ``dims`` dimensions (PCA
here; the paper uses ICA, and ART defaults to PCA too), split them with 2-means, and call the class
poisoned when the smaller cluster is both small (its share of the class below ``size_threshold``)
and well separated (mean silhouette above ``silhouette_threshold``). The smaller cluster of a
poisoned class is flagged.

Thresholds, measured on the demo CNNs: the backdoored class (BadNets corner patch, 10% of the
target class) split off 7-10% of its examples at silhouette 0.38-0.53; clean classes split
23/77 or more evenly (digit variants) at silhouettes up to 0.46. The paper's and ART's size
threshold of 0.35 would flag those clean classes, hence 0.15 here (1.5 times a 10% poisoned
share, as the spectral signatures' removal share), with a silhouette threshold of 0.25. Over
trainings with other seeds (digits CNN, 10 epochs): no false alarm on 14 clean trainings, and
5 of 8 backdoored ones flagged; in the other 3, 2-means did not split the poison off as a small
cluster (and the spectral separation of the target class stayed at 1.18-1.36 in those too).

Example::

    result = ActivationClustering()(model, training_data)
    result.verdict.passed, result.suspicious_classes, result.flagged_indices
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.data.dataset import Dataset
from bastion.defences.features import by_label, representations
from bastion.defences.interface import ClassFinding, ScanResult, Verdict
from bastion.errors import ConfigError
from bastion.models.interface import Classifier

__all__ = ["ActivationClustering", "silhouette", "two_means"]

# Fewer examples in a class than this cannot be split into two meaningful clusters.
MIN_CLASS = 8


@dataclass(frozen=True)
class _Split:
    """2-means of one class: the assignment (1 = the smaller cluster), its share and silhouette, per-example scores."""

    small: Tensor  # bool
    share: float
    silhouette: float
    scores: Tensor  # > 0: nearer the smaller cluster's centre, in units of the distance between the centres


@dataclass(frozen=True, kw_only=True)
class ActivationClustering:
    """Activation clustering (Chen et al. 2018) over labelled training data, read from a white-box model."""

    dims: int = 10  # PCA dimensions the representations are reduced to
    size_threshold: float = 0.15  # a smaller cluster with less than this share of its class is small
    silhouette_threshold: float = 0.25  # ... and well separated above this mean silhouette
    restarts: int = 4  # k-means++ starts; the split with the lowest inertia is kept
    iterations: int = 100
    max_silhouette_examples: int = 2000  # silhouettes from a seeded sample in larger classes (pairwise distances)
    layer: str | None = None  # module whose input is the representation; None: the last nn.Linear
    batch_size: int = 256
    seed: int = 0

    def __call__(self, model: Classifier, data: Dataset) -> ScanResult:
        """Cluster and judge every class of ``data`` (inputs and the labels they are trained with)."""
        self._check()
        reps, layer = representations(model, data.x, layer=self.layer, batch_size=self.batch_size)
        gen = torch.Generator().manual_seed(self.seed)
        scores = torch.zeros(len(data))
        flagged = torch.zeros(len(data), dtype=torch.bool)
        findings: list[ClassFinding] = []
        small_silhouettes: list[float] = []  # of the classes whose smaller cluster is small enough
        for label, idx in by_label(data.y):
            if len(idx) < MIN_CLASS:
                findings.append(
                    ClassFinding(label, len(idx), 0, 0.0, False, f"{len(idx)} examples: too few to cluster")
                )
                continue
            split = self._split(reps[idx], gen)
            if split.share < self.size_threshold:
                small_silhouettes.append(split.silhouette)
            suspicious = split.share < self.size_threshold and split.silhouette > self.silhouette_threshold
            scores[idx] = split.scores
            if suspicious:
                flagged[idx[split.small]] = True
            findings.append(self._finding(label, split, suspicious))
        verdict = self._verdict(findings, max(small_silhouettes, default=0.0))
        return ScanResult("activation-clustering", layer, scores, flagged, tuple(findings), verdict)

    def _split(self, reps: Tensor, gen: torch.Generator) -> _Split:
        centred = reps - reps.mean(dim=0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        reduced = centred @ vh[: self.dims].T
        assign, centres = two_means(reduced, restarts=self.restarts, iterations=self.iterations, generator=gen)
        small_id = int(assign.bincount(minlength=2).argmin())
        small = assign == small_id
        sample = torch.randperm(len(reduced), generator=gen)[: self.max_silhouette_examples]
        near_small = (reduced - centres[1 - small_id]).norm(dim=1) - (reduced - centres[small_id]).norm(dim=1)
        gap = float((centres[0] - centres[1]).norm())
        return _Split(
            small=small,
            share=float(small.float().mean()),
            silhouette=silhouette(reduced[sample], assign[sample]),
            scores=near_small / max(gap, 1e-12),
        )

    def _finding(self, label: int, split: _Split, suspicious: bool) -> ClassFinding:
        n = split.small.numel()
        detail = (
            f"smaller cluster {int(split.small.sum())} of {n} ({split.share:.0%}, "
            f"{'<' if split.share < self.size_threshold else '>='} {self.size_threshold:.0%}), "
            f"silhouette {split.silhouette:.2f} ({'>' if split.silhouette > self.silhouette_threshold else '<='} "
            f"{self.silhouette_threshold:g})"
        )
        return ClassFinding(label, n, int(split.small.sum()) if suspicious else 0, split.silhouette, suspicious, detail)

    def _verdict(self, findings: list[ClassFinding], value: float) -> Verdict:
        """``value``: the highest silhouette among the classes whose smaller cluster is small (0 if none)."""
        suspicious = [f"class {f.label} ({f.detail})" for f in findings if f.suspicious]
        detail = (
            "poison-like clusters in " + "; ".join(suspicious)
            if suspicious
            else f"no class splits off a cluster under {self.size_threshold:.0%} with silhouette above "
            f"{self.silhouette_threshold:g}"
        )
        return Verdict("activation-clustering", not suspicious, value, self.silhouette_threshold, detail)

    def _check(self) -> None:
        if not 0 < self.size_threshold < 0.5:
            raise ConfigError(f"expected 0 < size_threshold < 0.5, got {self.size_threshold}")
        if not -1 <= self.silhouette_threshold < 1:
            raise ConfigError(f"expected -1 <= silhouette_threshold < 1, got {self.silhouette_threshold}")
        for name, value in (
            ("dims", self.dims),
            ("restarts", self.restarts),
            ("iterations", self.iterations),
            ("max_silhouette_examples", self.max_silhouette_examples),
        ):
            if value < 1:
                raise ConfigError(f"expected {name} >= 1, got {value}")


def two_means(
    x: Tensor, *, restarts: int = 4, iterations: int = 100, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Lloyd's 2-means from k-means++ starts (Arthur & Vassilvitskii 2007): the int64 assignment and the centres."""
    best: tuple[float, Tensor, Tensor] | None = None
    for _ in range(restarts):
        centres = _plus_plus(x, generator)
        for _ in range(iterations):
            assign = torch.cdist(x, centres).argmin(dim=1)
            moved = torch.stack([_centre(x, assign == j, centres[j]) for j in (0, 1)])
            if torch.equal(moved, centres):
                break
            centres = moved
        assign = torch.cdist(x, centres).argmin(dim=1)
        inertia = float(((x - centres[assign]) ** 2).sum())
        if best is None or inertia < best[0]:
            best = (inertia, assign, centres)
    if best is None:
        raise ConfigError(f"expected restarts >= 1, got {restarts}")
    return best[1], best[2]


def _centre(x: Tensor, members: Tensor, previous: Tensor) -> Tensor:
    """The mean of a cluster's members; an emptied cluster keeps its previous centre."""
    return x[members].mean(dim=0) if bool(members.any()) else previous


def _plus_plus(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Two k-means++ centres: one example at random, the other drawn with probability proportional to d**2."""
    first = x[torch.randint(len(x), (1,), generator=generator)]
    d2 = ((x - first) ** 2).sum(dim=1)
    if float(d2.sum()) <= 0:  # every point is the same: any second centre will do
        return torch.cat([first, first])
    second = x[torch.multinomial(d2 / d2.sum(), 1, generator=generator)]
    return torch.cat([first, second])


def silhouette(x: Tensor, assign: Tensor) -> float:
    """Mean silhouette (Rousseeuw 1987) of a two-cluster assignment; points alone in their cluster count 0."""
    distances = torch.cdist(x, x)
    scores = torch.zeros(len(x))
    for j in (0, 1):
        own, other = assign == j, assign != j
        count = int(own.sum())
        if count < 2 or not bool(other.any()):
            continue
        a = distances[own][:, own].sum(dim=1) / (count - 1)
        b = distances[own][:, other].mean(dim=1)
        scores[own] = (b - a) / torch.maximum(a, b).clamp_min(1e-12)
    return float(scores.mean())
