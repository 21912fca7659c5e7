"""Per-example losses that attacks maximise: cross-entropy, DLR (Croce & Hein 2020), C&W margin."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy", "cw_margin", "dlr", "dlr_targeted"]


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _sorted(logits: Tensor) -> Tensor:
    return logits.sort(dim=1).values


def dlr(logits: Tensor, y: Tensor) -> Tensor:
    """Difference of Logits Ratio: -(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3); shift- and scale-invariant."""
    z_sorted = _sorted(logits)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    top_is_y = logits.argmax(dim=1) == y
    z_other = torch.where(top_is_y, z_sorted[:, -2], z_sorted[:, -1])
    return -(z_y - z_other) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)


def dlr_targeted(logits: Tensor, y: Tensor, target: Tensor) -> Tensor:
    """Targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)."""
    z_sorted = _sorted(logits)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def cw_margin(logits: Tensor, y: Tensor, *, kappa: float = 0.0, targeted: bool = False) -> Tensor:
    """The C&W margin to maximise: max_{i!=y} z_i - z_y (untargeted) or z_t - max_{i!=t} z_i, capped at kappa."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    margin = z_y - others if targeted else others - z_y
    return margin.clamp(max=kappa)
