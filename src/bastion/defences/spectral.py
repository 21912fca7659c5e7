"""Spectral signatures: per class, poisoned examples stand out along the top singular vector of the representations.

Tran, Li & Madry 2018, "Spectral Signatures in Backdoor Attacks" (NeurIPS), https://arxiv.org/abs/1811.00636.
For each label, centre the penultimate representations of the examples carrying it, take the top
right singular vector ``v``, and score each example by its squared projection ``((r - mean) . v)**2``.
The paper removes the top ``1.5 * eps`` share of each class, ``eps`` being an upper bound on the
poisoned share; those are the flagged examples here, in every class (the filter).

Deciding *whether* a class is poisoned (the gate check) is not in the paper. Here a class is
suspicious when the flagged share stands out more than a Gaussian class would let it: its
*separation* is ``mean(flagged scores) / median(scores)`` divided by the same ratio for a
Gaussian projection (for a top share of 15%, ``3.72 / 0.455 = 8.2``), so it is about 1 for a
class without a signature. Measured on the digits demo CNN, the highest separation over the 10
classes of a model trained on clean data was 1.00-1.31 at 30 epochs (4 seeds) and 1.05-1.99 at
10 epochs (10 seeds; class 0 often has a sub-cluster of its own); on the backdoored class
(BadNets corner patch, 2% of the data relabelled 0, or 10% of the 7s) it was 1.18-3.32 over 8
trainings of 10 epochs. The two overlap: the default threshold of 2.0 sits just above every
clean training measured, and catches only the strongest signatures (2 of those 8). Activation
clustering flagged 5 of the 8 with no false alarm on the 14 clean trainings, so it is the
stronger class-level check on models this small; spectral signatures' flagged share remains a
good filter when a backdoor is present (all 14 poisons of the test's backdoor among the 23
flagged).

Example::

    result = SpectralSignatures(poison_rate=0.1)(model, training_data)
    result.verdict.passed, result.suspicious_classes, result.flagged_indices
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor

from bastion.data.dataset import Dataset
from bastion.defences.features import by_label, representations
from bastion.defences.interface import ClassFinding, ScanResult, Verdict
from bastion.errors import ConfigError
from bastion.models.interface import Classifier

__all__ = ["SpectralSignatures", "gaussian_separation"]


@dataclass(frozen=True, kw_only=True)
class SpectralSignatures:
    """Spectral signatures (Tran, Li & Madry 2018) over labelled training data, read from a white-box model.

    ``poison_rate`` is eps, the largest share of a class the scan expects to be poisoned; each
    class's top ``removal_factor * poison_rate`` share of scores is flagged. A class whose
    separation exceeds ``separation_threshold`` is suspicious, and fails the verdict.
    """

    poison_rate: float = 0.1
    removal_factor: float = 1.5  # the paper's 1.5
    separation_threshold: float = 2.0  # measured ranges in the module docstring
    layer: str | None = None  # module whose input is the representation; None: the last nn.Linear
    batch_size: int = 256

    def __call__(self, model: Classifier, data: Dataset) -> ScanResult:
        """Score, flag and judge every class of ``data`` (inputs and the labels they are trained with)."""
        self._check()
        reps, layer = representations(model, data.x, layer=self.layer, batch_size=self.batch_size)
        scores = torch.zeros(len(data))
        flagged = torch.zeros(len(data), dtype=torch.bool)
        findings = []
        for label, idx in by_label(data.y):
            class_scores, top, finding = self._class(label, reps[idx])
            scores[idx] = class_scores
            flagged[idx[top]] = True
            findings.append(finding)
        return ScanResult("spectral-signatures", layer, scores, flagged, tuple(findings), self._verdict(findings))

    def _class(self, label: int, reps: Tensor) -> tuple[Tensor, Tensor, ClassFinding]:
        """Outlier scores of one class, the indices (within it) of its flagged top share, and the finding."""
        n = reps.shape[0]
        flag = int(self.removal_factor * self.poison_rate * n)
        if n < 2 or flag == 0:
            detail = f"{n} examples: too few to flag a {self.removal_factor * self.poison_rate:.0%} share"
            return torch.zeros(n), torch.empty(0, dtype=torch.long), ClassFinding(label, n, 0, 0.0, False, detail)
        centred = reps - reps.mean(dim=0)
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        scores = (centred @ vh[0]) ** 2
        top = scores.argsort(descending=True)[:flag]
        separation = _separation(scores, top)
        suspicious = separation > self.separation_threshold
        detail = (
            f"separation {separation:.2f} {'>' if suspicious else '<='} {self.separation_threshold:g}; "
            f"top {flag} of {n} scores flagged"
        )
        return scores, top, ClassFinding(label, n, flag, separation, suspicious, detail)

    def _verdict(self, findings: list[ClassFinding]) -> Verdict:
        worst = max(findings, key=lambda f: f.statistic)
        suspicious = [f"class {f.label} ({f.statistic:.2f})" for f in findings if f.suspicious]
        detail = (
            f"spectral separation above {self.separation_threshold:g} in {', '.join(suspicious)}"
            if suspicious
            else f"no class above separation {self.separation_threshold:g} (highest: class {worst.label}, "
            f"{worst.statistic:.2f})"
        )
        return Verdict("spectral-signatures", not suspicious, worst.statistic, self.separation_threshold, detail)

    def _check(self) -> None:
        if not 0 < self.poison_rate < 1:
            raise ConfigError(f"expected 0 < poison_rate < 1, got {self.poison_rate}")
        if not 0 < self.removal_factor * self.poison_rate <= 1:
            raise ConfigError(
                f"expected 0 < removal_factor * poison_rate <= 1, got {self.removal_factor} * {self.poison_rate}"
            )
        if not (math.isfinite(self.separation_threshold) and self.separation_threshold > 0):
            raise ConfigError(f"expected separation_threshold > 0, got {self.separation_threshold}")


def _separation(scores: Tensor, top: Tensor) -> float:
    """``mean(top scores) / median(scores)``, over the same ratio for a Gaussian projection."""
    ratio = float(scores[top].mean()) / max(float(scores.median()), 1e-12)
    return ratio / gaussian_separation(top.numel() / scores.numel())


def gaussian_separation(share: float) -> float:
    """``E[Z**2 | Z**2 in its top share] / median(Z**2)`` for a standard normal ``Z`` (8.2 for a 15% share)."""
    z = NormalDist().inv_cdf(1 - share / 2)  # |Z| > z on exactly that share
    tail = 1 - NormalDist().cdf(z)
    top_mean = 1 + z * NormalDist().pdf(z) / tail
    return top_mean / NormalDist().inv_cdf(0.75) ** 2
