"""Universal adversarial patch, trained over a dataset under expectation over transformation.

Brown, Mané, Roy, Abadi & Gilmer, "Adversarial Patch", 2017, https://arxiv.org/abs/1712.09665;
Athalye et al., "Synthesizing Robust Adversarial Examples" (EOT), ICML 2018,
https://arxiv.org/abs/1707.07397. Like the printed sign that hides a person from a detector, the
patch is one image, pasted anywhere, at any scale and rotation within the ranges given, that
pushes the model's prediction away from the truth (or towards ``target``).

Threat: the attacker controls every pixel under the patch and nothing else; no eps.

Arguments:
    size: the patch's side as a fraction of the image side (0.3).
    steps: optimisation steps over random batches of the training inputs (300).
    batch_size: images per step (128).
    lr: Adam learning rate on the patch (0.05).
    scale: range of the patch's scale factor (0.8, 1.2).
    rotation: largest rotation in degrees, either way (20).
    target: class to send every input to; ``None`` for untargeted.

Shapes: training inputs ``(n, C, H, W)``; the patch is ``(C, s, s)`` with ``s = round(size * H)``.

Example::

    result = AdversarialPatch(size=0.3)(model, train.x, train.y, seed=0)
    fooled = fooling_rate(model, test.x, test.y, lambda x, g: apply_patch(x, result.pattern, g))
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks.universal.interface import UniversalResult, fooling_rate
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, value_and_grad

__all__ = ["AdversarialPatch", "apply_patch"]


def _transforms(
    n: int,
    side: int,
    image: tuple[int, int],
    scale: tuple[float, float],
    rotation: float,
    gen: torch.Generator,
    device: torch.device,
) -> Tensor:
    """Per image, the inverse affine map (output -> canvas coordinates) of a random placement."""
    u = torch.rand((n, 4), generator=gen, device=device)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    angle = (2 * u[:, 1] - 1) * math.radians(rotation)
    # Keep the patch centre far enough from the borders that the patch stays (mostly) inside.
    half = s * side / max(image)
    tx = (2 * u[:, 2] - 1) * (1 - half).clamp_min(0)
    ty = (2 * u[:, 3] - 1) * (1 - half).clamp_min(0)
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    row0 = torch.stack([cos, -sin, -(cos * tx - sin * ty)], dim=1)
    row1 = torch.stack([sin, cos, -(sin * tx + cos * ty)], dim=1)
    return torch.stack([row0, row1], dim=1)


def apply_patch(
    x: Tensor,
    patch: Tensor,
    generator: torch.Generator,
    *,
    scale: tuple[float, float] = (0.8, 1.2),
    rotation: float = 20.0,
) -> Tensor:
    """Paste ``patch`` on every image of ``x`` at a random place, scale and rotation (differentiable in the patch)."""
    n, c, h, w = x.shape
    side = patch.shape[-1]
    canvas = torch.zeros((1, c, h, w), device=x.device, dtype=x.dtype)
    mask = torch.zeros((1, 1, h, w), device=x.device, dtype=x.dtype)
    top, left = (h - side) // 2, (w - side) // 2
    canvas[..., top : top + side, left : left + side] = patch
    mask[..., top : top + side, left : left + side] = 1.0
    theta = _transforms(n, side, (h, w), scale, rotation, generator, x.device)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    placed = F.grid_sample(canvas.expand(n, -1, -1, -1), grid, align_corners=False)
    where = F.grid_sample(mask.expand(n, -1, -1, -1), grid, align_corners=False)
    return x * (1 - where) + placed * where


@dataclass(frozen=True, kw_only=True)
class AdversarialPatch:
    """Learn one patch that fools the model wherever it is pasted."""

    size: float = 0.3
    steps: int = 300
    batch_size: int = 128
    lr: float = 0.05
    scale: tuple[float, float] = (0.8, 1.2)
    rotation: float = 20.0
    target: int | None = None

    name = "patch"

    def __call__(self, model: Classifier, x: Tensor, y: Tensor, *, seed: int = 0) -> UniversalResult:
        side = self._check(model, x)
        started = time.perf_counter()
        before = model.queries.snapshot()
        gen = torch.Generator(device=model.device).manual_seed(seed)
        lo, hi = model.bounds
        patch = lo + (hi - lo) * torch.rand((x.shape[1], side, side), generator=gen, device=model.device)
        patch.requires_grad_(True)
        opt = torch.optim.Adam([patch], lr=self.lr * (hi - lo))
        with model.inference():
            for _ in range(self.steps):
                xb, yb = self._batch(x, y, gen, model.device)
                self._step(model, patch, xb, yb, opt, gen)
        pattern = patch.detach()

        def paste(xs: Tensor, g: torch.Generator) -> Tensor:
            return apply_patch(xs, pattern, g, scale=self.scale, rotation=self.rotation)

        train = fooling_rate(model, x, y, paste, seed=seed)
        return UniversalResult.measured(self.name, pattern, train, model, before, started)

    def _check(self, model: Classifier, x: Tensor) -> int:
        if x.dim() != 4:
            raise DataError(f"a patch needs images (n, C, H, W), got inputs of shape {tuple(x.shape)}")
        if not 0 < self.size <= 1:
            raise ConfigError(f"expected 0 < size <= 1 (a fraction of the image side), got {self.size}")
        if self.steps <= 0 or self.batch_size <= 0:
            raise ConfigError(f"expected steps and batch_size > 0, got {self.steps} and {self.batch_size}")
        if self.target is not None and not 0 <= self.target < model.num_classes:
            raise ConfigError(f"expected a target class in 0..{model.num_classes - 1}, got {self.target}")
        return max(1, round(self.size * x.shape[2]))

    def _batch(self, x: Tensor, y: Tensor, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, x.shape[0], (min(self.batch_size, x.shape[0]),), generator=gen, device=device)
        return x.to(device)[idx], y.to(device)[idx]

    def _step(
        self, model: Classifier, patch: Tensor, x: Tensor, y: Tensor, opt: torch.optim.Optimizer, gen: torch.Generator
    ) -> None:
        """One EOT step: paste at random placements, push the loss, keep the patch a valid image."""
        pasted = apply_patch(x, patch, gen, scale=self.scale, rotation=self.rotation)
        label, sign = (y, -1.0) if self.target is None else (torch.full_like(y, self.target), 1.0)

        def objective(logits: Tensor) -> Tensor:
            return sign * F.cross_entropy(logits, label, reduction="none")

        # The gradient flows to the patch through the pasting; value_and_grad gives it w.r.t. the pasted batch.
        _, _, grad = value_and_grad(model, pasted, objective)
        opt.zero_grad(set_to_none=True)
        pasted.backward(grad / x.shape[0])  # type: ignore[no-untyped-call]
        opt.step()
        with torch.no_grad():
            patch.clamp_(*model.bounds)
