"""Label-preserving input transformations with a bounded strength, and DeepHunter's bounded composition.

Each transformation takes a batch, a strength in ``[0, 1]`` (0 is the identity) and a
``torch.Generator``; the strength maps onto a conservative range (at most 15 degrees of rotation,
an eighth of the image's width of translation, ...) so that a person would still give the input
its original label. Image transformations work on ``(n, c, h, w)`` batches; the tabular one on
``(n, d)`` rows within the data's :class:`~bastion.data.constraints.FeatureConstraints`.
Every result is clipped to the data's bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.data.constraints import FeatureConstraints
from bastion.errors import ConfigError, DataError

__all__ = [
    "GEOMETRIC",
    "IMAGE_TRANSFORMS",
    "TABULAR_TRANSFORMS",
    "TRANSFORMS",
    "MutationLimits",
    "Transform",
    "apply_chain",
    "check_strength",
    "within_limits",
]


class Transform(Protocol):
    """A label-preserving transformation: batch in, batch of the same shape out, inside ``bounds``."""

    def __call__(
        self,
        x: Tensor,
        strength: float,
        *,
        generator: torch.Generator,
        bounds: tuple[float, float],
        constraints: FeatureConstraints | None = None,
    ) -> Tensor: ...


# The largest change each transformation makes at strength 1 (conservative, after DeepTest's ranges).
MAX_BRIGHTNESS = 0.15  # shift, as a share of the bounds' width
MAX_CONTRAST = 0.3  # scale factor in [1 - 0.3, 1 + 0.3] around the image's mean
MAX_TRANSLATION = 0.125  # pixels, as a share of the image's width and height
MAX_SCALE = 0.15  # zoom factor in [1 - 0.15, 1 + 0.15]
MAX_SHEAR = 0.2  # shear factor
MAX_ROTATION = 15.0  # degrees
MAX_BLUR_SIGMA = 1.0  # pixels
MAX_NOISE = 0.05  # standard deviation, as a share of the bounds' width
MAX_OCCLUSION = 0.25  # side of the rectangle, as a share of the image's side
MAX_TABULAR = 0.05  # uniform noise, as a share of each feature's range


def check_strength(strength: float) -> float:
    """``strength`` as a float, or a :class:`ConfigError` when it is outside ``[0, 1]``."""
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not 0.0 <= strength <= 1.0:
        raise ConfigError(f"expected a strength in [0, 1], got {strength!r}")
    return float(strength)


def _image(x: Tensor) -> None:
    if x.dim() != 4:
        raise DataError(f"image transformations expect a batch (n, c, h, w), got shape {tuple(x.shape)}")


def _uniform(n: int, generator: torch.Generator, x: Tensor) -> Tensor:
    """``n`` draws in ``[-1, 1]``, made on the CPU generator and moved to ``x``'s device."""
    return (torch.rand(n, generator=generator) * 2 - 1).to(device=x.device, dtype=x.dtype)


def _clip(x: Tensor, bounds: tuple[float, float]) -> Tensor:
    return x.clamp(bounds[0], bounds[1])


def brightness(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Add one shift per image, up to ``MAX_BRIGHTNESS`` of the bounds' width (DeepTest)."""
    _image(x)
    shift = _uniform(x.shape[0], generator, x) * strength * MAX_BRIGHTNESS * (bounds[1] - bounds[0])
    return _clip(x + shift.view(-1, 1, 1, 1), bounds)


def contrast(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Scale each image's deviation from its mean by ``1 +- MAX_CONTRAST`` (DeepTest)."""
    _image(x)
    factor = 1 + _uniform(x.shape[0], generator, x) * strength * MAX_CONTRAST
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _clip(mean + (x - mean) * factor.view(-1, 1, 1, 1), bounds)


def _warp(x: Tensor, theta: Tensor, bounds: tuple[float, float]) -> Tensor:
    """Resample ``x`` through the affine maps ``theta`` (n, 2, 3); outside pixels take the lower bound."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    shifted = x - bounds[0]  # zero padding then means the lower bound
    return _clip(F.grid_sample(shifted, grid, align_corners=False, padding_mode="zeros") + bounds[0], bounds)


def _identity_theta(x: Tensor) -> Tensor:
    return torch.eye(2, 3, device=x.device, dtype=x.dtype).repeat(x.shape[0], 1, 1)


def translation(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Shift by up to ``MAX_TRANSLATION`` of the width and height, in (sub)pixels (DeepTest)."""
    _image(x)
    theta = _identity_theta(x)
    # affine_grid works in [-1, 1]: a shift of p pixels on a side of s pixels is 2p/s.
    theta[:, 0, 2] = _uniform(x.shape[0], generator, x) * strength * MAX_TRANSLATION * 2
    theta[:, 1, 2] = _uniform(x.shape[0], generator, x) * strength * MAX_TRANSLATION * 2
    return _warp(x, theta, bounds)


def scaling(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Zoom about the centre by a factor in ``1 +- MAX_SCALE`` (DeepTest)."""
    _image(x)
    factor = 1 + _uniform(x.shape[0], generator, x) * strength * MAX_SCALE
    theta = _identity_theta(x)
    theta[:, 0, 0] = 1 / factor
    theta[:, 1, 1] = 1 / factor
    return _warp(x, theta, bounds)


def shear(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Shear horizontally by up to ``MAX_SHEAR`` (DeepTest)."""
    _image(x)
    theta = _identity_theta(x)
    theta[:, 0, 1] = _uniform(x.shape[0], generator, x) * strength * MAX_SHEAR
    return _warp(x, theta, bounds)


def rotation(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Rotate about the centre by up to ``MAX_ROTATION`` degrees (DeepTest)."""
    _image(x)
    angle = _uniform(x.shape[0], generator, x) * strength * math.radians(MAX_ROTATION)
    theta = _identity_theta(x)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin()
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin(), angle.cos()
    return _warp(x, theta, bounds)


def blur(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Gaussian blur with ``sigma = strength * MAX_BLUR_SIGMA`` on a 3x3 kernel (DeepTest)."""
    _image(x)
    sigma = strength * MAX_BLUR_SIGMA
    if sigma <= 0:
        return x.clone()
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = torch.outer(weights, weights)
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, 3, 3)
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return _clip(F.conv2d(padded, kernel, groups=x.shape[1]), bounds)


def noise(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Add Gaussian noise of standard deviation ``strength * MAX_NOISE`` of the bounds' width."""
    _image(x)
    std = strength * MAX_NOISE * (bounds[1] - bounds[0])
    draw = torch.randn(tuple(x.shape), generator=generator).to(device=x.device, dtype=x.dtype)
    return _clip(x + draw * std, bounds)


def occlusion(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Paint a square of side up to ``MAX_OCCLUSION`` of the image with the lower bound, at a random place."""
    _image(x)
    out = x.clone()
    h, w = x.shape[2], x.shape[3]
    side_h, side_w = round(strength * MAX_OCCLUSION * h), round(strength * MAX_OCCLUSION * w)
    if side_h == 0 or side_w == 0:
        return out
    for i in range(x.shape[0]):
        top = int(torch.randint(0, h - side_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, w - side_w + 1, (1,), generator=generator))
        out[i, :, top : top + side_h, left : left + side_w] = bounds[0]
    return out


def tabular(
    x: Tensor,
    strength: float,
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> Tensor:
    """Uniform noise up to ``MAX_TABULAR`` of each feature's range, projected onto the constraints."""
    if x.dim() != 2:
        raise DataError(f"the tabular transformation expects rows (n, d), got shape {tuple(x.shape)}")
    if constraints is None:
        lo = torch.full((x.shape[1],), bounds[0], dtype=x.dtype, device=x.device)
        hi = torch.full((x.shape[1],), bounds[1], dtype=x.dtype, device=x.device)
    else:
        lo = torch.tensor(constraints.lower, dtype=x.dtype, device=x.device)
        hi = torch.tensor(constraints.upper, dtype=x.dtype, device=x.device)
    draw = (torch.rand(tuple(x.shape), generator=generator) * 2 - 1).to(device=x.device, dtype=x.dtype)
    moved = _clip(x + draw * strength * MAX_TABULAR * (hi - lo), bounds)
    return moved if constraints is None else constraints.project(moved, x)


IMAGE_TRANSFORMS: dict[str, Transform] = {
    "brightness": brightness,
    "contrast": contrast,
    "translation": translation,
    "scaling": scaling,
    "shear": shear,
    "rotation": rotation,
    "blur": blur,
    "noise": noise,
    "occlusion": occlusion,
}
TABULAR_TRANSFORMS: dict[str, Transform] = {"tabular": tabular}
TRANSFORMS: dict[str, Transform] = {**IMAGE_TRANSFORMS, **TABULAR_TRANSFORMS}
# DeepHunter's affine transformations: at most one per chain, applied first, exempt from the pixel limits.
GEOMETRIC = frozenset({"translation", "scaling", "shear", "rotation"})


@dataclass(frozen=True)
class MutationLimits:
    """DeepHunter's bounded mutation: a mutant keeps its meaning if few pixels change or all change little.

    ``changed_fraction`` is the share of input values that may change (DeepHunter's alpha) and
    ``linf`` the largest change of any value as a share of the bounds' width (its beta); a
    mutant is valid when either holds (Xie et al., 2019, section 3.3).
    """

    linf: float = 0.2
    changed_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("linf", "changed_fraction"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ConfigError(f"expected {name} in (0, 1], got {value!r}")


def apply_chain(
    x: Tensor,
    chain: Sequence[tuple[str, float]],
    *,
    generator: torch.Generator,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
) -> tuple[Tensor, Tensor]:
    """Apply ``chain`` (names with strengths) in order: the mutant and the reference for the limits.

    The reference is ``x`` after the geometric step (DeepHunter compares pixel-value mutations
    against the image after its one affine transformation).
    """
    reference, out = x, x
    for name, strength in chain:
        if name not in TRANSFORMS:
            raise ConfigError(f"unknown transformation {name!r}; expected one of {', '.join(sorted(TRANSFORMS))}")
        step = check_strength(strength)
        out = (
            out.clone()
            if step == 0.0
            else TRANSFORMS[name](out, step, generator=generator, bounds=bounds, constraints=constraints)
        )
        if name in GEOMETRIC:
            reference = out
    return out, reference


def within_limits(
    mutant: Tensor,
    reference: Tensor,
    *,
    limits: MutationLimits,
    bounds: tuple[float, float],
    constraints: FeatureConstraints | None = None,
    original: Tensor | None = None,
) -> Tensor:
    """Per example, whether the mutant is valid: inside bounds and constraints, and within ``limits``."""
    n = mutant.shape[0]
    delta = (mutant - reference).reshape(n, -1).abs()
    width = bounds[1] - bounds[0]
    small = delta.amax(dim=1) <= limits.linf * width + 1e-6
    few = (delta > 1e-6).float().mean(dim=1) <= limits.changed_fraction
    flat = mutant.reshape(n, -1)
    inside = (flat >= bounds[0] - 1e-6).all(dim=1) & (flat <= bounds[1] + 1e-6).all(dim=1)
    valid = (small | few) & inside
    if constraints is not None:
        valid &= ~constraints.violations(mutant, reference if original is None else original)
    return valid
