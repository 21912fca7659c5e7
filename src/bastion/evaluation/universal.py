"""The universal attacks of ``assess(patch=..., perturbation=...)``: learned on part of the data, measured on the rest.

A universal pattern is one object for every input (Brown et al. 2017's adversarial patch, Moosavi-Dezfooli
et al. 2017's universal perturbation; see :mod:`bastion.attacks.universal`), so its success means something
only on inputs it was not learned on. The data is split by a seeded permutation into a training share and a
held-out rest; the pattern is learned on the first and measured on the second, against a random pattern of
the same size as the baseline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from bastion.attacks.universal import (
    AdversarialPatch,
    UniversalPerturbation,
    UniversalResult,
    apply_patch,
    pattern_success,
)
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import get_norm
from bastion.report.model import UniversalRun

__all__ = [
    "PatchOptions",
    "PerturbationOptions",
    "check_universal",
    "patch_run",
    "pattern_pixels",
    "perturbation_run",
    "split_holdout",
    "universal_runs",
]

log = logging.getLogger(__name__)

Apply = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True, kw_only=True)
class PatchOptions:
    """An adversarial patch for the report (``bastion assess --patch``)."""

    size: float = 0.3  # the patch's side as a fraction of the image side
    steps: int = 300  # optimisation steps, each over a batch of 128 pasted training images
    target: int | None = None  # class to send inputs to; None for untargeted
    train_share: float = 0.5  # share of the data it is learned on; the rest is held out to measure it


@dataclass(frozen=True, kw_only=True)
class PerturbationOptions:
    """A universal perturbation for the report (``bastion assess --perturbation``), in the assessment's norm."""

    eps: float | None = None  # its radius; None: the assessment's largest epsilon
    epochs: int = 5  # passes over the training share
    target: int | None = None  # class to send inputs to; None for untargeted
    train_share: float = 0.5  # share of the data it is learned on; the rest is held out to measure it


def split_holdout(n: int, train_share: float, seed: int) -> tuple[Tensor, Tensor]:
    """Disjoint training and held-out indices into ``n`` examples, by a seeded permutation; both non-empty."""
    if not 0 < train_share < 1:
        raise ConfigError(f"expected 0 < train_share < 1 (the rest is held out), got {train_share}")
    cut = round(n * train_share)
    if not 0 < cut < n:
        raise DataError(f"{n} examples cannot be split {train_share:g} / {1 - train_share:g}: a side would be empty")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[:cut], order[cut:]


def check_universal(
    model: Classifier, data: Dataset, patch: PatchOptions | None, perturbation: PerturbationOptions | None
) -> None:
    """Refuse, before anything runs, universal attacks that this model or data cannot serve."""
    if patch is None and perturbation is None:
        return
    if model.knowledge is not Knowledge.WHITE_BOX:
        raise ConfigError(
            f"--patch and --perturbation learn from gradients; the model exposes only {model.knowledge.value}"
        )
    for options in (patch, perturbation):
        if options is not None:
            split_holdout(len(data), options.train_share, 0)
            _check_target(options.target, model.num_classes)
    if patch is not None:
        _check_patch(patch, data)
    if perturbation is not None and not (perturbation.eps is None or perturbation.eps > 0):
        raise ConfigError(f"expected a perturbation eps > 0, got {perturbation.eps}")
    if perturbation is not None and perturbation.epochs < 1:
        raise ConfigError(f"expected perturbation epochs >= 1, got {perturbation.epochs}")


def _check_patch(patch: PatchOptions, data: Dataset) -> None:
    if len(data.input_shape) != 3:
        raise DataError(f"a patch needs images (C, H, W); {data.name} has inputs of shape {data.input_shape}")
    if not 0 < patch.size <= 1:
        raise ConfigError(f"expected 0 < patch size <= 1 (a fraction of the image side), got {patch.size}")
    if patch.steps < 1:
        raise ConfigError(f"expected patch steps >= 1, got {patch.steps}")


def _check_target(target: int | None, num_classes: int) -> None:
    if target is not None and not 0 <= target < num_classes:
        raise ConfigError(f"expected a target class in 0..{num_classes - 1}, got {target}")


def universal_runs(
    model: Classifier,
    data: Dataset,
    *,
    patch: PatchOptions | None,
    perturbation: PerturbationOptions | None,
    norm: str,
    epsilons: Sequence[float],
    seed: int,
) -> tuple[UniversalRun, ...]:
    """Learn the asked-for patterns on a training share of ``data`` and measure them on the held-out rest."""
    runs = []
    if patch is not None:
        runs.append(patch_run(model, data, patch, seed))
    if perturbation is not None:
        eps = perturbation.eps if perturbation.eps is not None else max(epsilons)
        runs.append(perturbation_run(model, data, replace(perturbation, eps=eps), norm, seed))
    return tuple(runs)


@dataclass(frozen=True)
class _Learned:
    """A pattern learned on the training share, with what its report entry needs besides the measurements."""

    attack: str
    config: dict[str, Any]
    result: UniversalResult
    n_train: int
    holdout: Tensor  # indices into the data, none of them among the training ones
    pixel_range: tuple[float, float]
    target: int | None
    seed: int


def patch_run(model: Classifier, data: Dataset, options: PatchOptions, seed: int) -> UniversalRun:
    """An adversarial patch learned on the training share and measured on the held-out rest."""
    started = time.perf_counter()
    train, holdout = split_holdout(len(data), options.train_share, seed)
    attack = AdversarialPatch(size=options.size, steps=options.steps, target=options.target)
    log.info("learning a %g patch on %d images (%d steps)", options.size, train.numel(), options.steps)
    result = attack(model, data.x[train], data.y[train], seed=seed)
    config = {
        "size": attack.size,
        "steps": attack.steps,
        "batch_size": attack.batch_size,
        "lr": attack.lr,
        "scale": list(attack.scale),
        "rotation": attack.rotation,
        "target": attack.target,
        "train_share": options.train_share,
        "seed": seed,
    }
    lo, hi = model.bounds
    learned = _Learned("patch", config, result, train.numel(), holdout, (lo, hi), options.target, seed)
    noise = torch.rand(result.pattern.shape, generator=torch.Generator().manual_seed(seed))
    random_patch = (lo + (hi - lo) * noise).to(result.pattern.device)

    def paste(pattern: Tensor) -> Apply:
        return lambda x, g: apply_patch(x, pattern, g, scale=attack.scale, rotation=attack.rotation)

    return _measure(model, data, learned, paste(result.pattern), paste(random_patch), started)


def perturbation_run(
    model: Classifier, data: Dataset, options: PerturbationOptions, norm: str, seed: int
) -> UniversalRun:
    """A universal perturbation of radius ``options.eps`` learned on the training share, measured on the rest."""
    started = time.perf_counter()
    eps = float(options.eps or 0.0)
    train, holdout = split_holdout(len(data), options.train_share, seed)
    attack = UniversalPerturbation(epochs=options.epochs, target=options.target)
    log.info("learning a universal %s perturbation of radius %g on %d inputs", norm, eps, train.numel())
    result = attack(model, data.x[train], data.y[train], norm=norm, eps=eps, seed=seed)
    config = {
        "norm": get_norm(norm).name,
        "eps": eps,
        "epochs": attack.epochs,
        "batch_size": attack.batch_size,
        "step_size": attack.step_size,
        "target": attack.target,
        "train_share": options.train_share,
        "seed": seed,
    }
    peak = max(float(result.pattern.abs().max()), 1e-12)  # drawn mid-grey at 0, black at -peak, white at +peak
    learned = _Learned(
        "universal-perturbation", config, result, train.numel(), holdout, (-peak, peak), options.target, seed
    )
    lo, hi = model.bounds

    def add(pattern: Tensor) -> Apply:
        return lambda x, _g: (x + pattern).clamp(lo, hi)

    return _measure(model, data, learned, add(result.pattern), add(_random_signs(result.pattern, norm, seed)), started)


def _random_signs(v: Tensor, norm: str, seed: int) -> Tensor:
    """The baseline of a perturbation: random signs, scaled to the size of ``v`` in ``norm``."""
    signs = torch.sign(torch.randn(v.shape, generator=torch.Generator().manual_seed(seed))).to(v.device)
    size = get_norm(norm).distance(torch.stack([v, signs]), torch.zeros_like(v)[None])
    return signs * (size[0] / size[1])


def _measure(
    model: Classifier, data: Dataset, learned: _Learned, apply: Apply, baseline: Apply, started: float
) -> UniversalRun:
    """The report entry: the pattern's and the baseline's success on the held-out inputs."""
    x, y = data.x[learned.holdout], data.y[learned.holdout]
    success = pattern_success(model, x, y, apply, target=learned.target, seed=learned.seed)
    chance = pattern_success(model, x, y, baseline, seed=learned.seed)
    result = learned.result
    return UniversalRun(
        attack=learned.attack,
        config=learned.config,
        n_train=learned.n_train,
        n_holdout=int(learned.holdout.numel()),
        train_success=result.train_success,
        holdout_success=success.fooling_rate,
        holdout_target_success=success.target_rate,
        baseline_success=chance.fooling_rate,
        queries=result.queries,
        gradients=result.gradients,
        elapsed=time.perf_counter() - started,
        shape=tuple(result.pattern.shape),
        pixels=pattern_pixels(result.pattern, learned.pixel_range),
        pixel_range=learned.pixel_range,
    )


def pattern_pixels(pattern: Tensor, value_range: tuple[float, float]) -> tuple[int, ...]:
    """The pattern row-major as integers 0..255, ``value_range`` mapped onto that scale."""
    low, high = value_range
    scaled = (pattern.detach().cpu().float() - low) / max(high - low, 1e-12)
    return tuple(int(p) for p in (scaled.clamp(0, 1) * 255).round().to(torch.uint8).flatten().tolist())
