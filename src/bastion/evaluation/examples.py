"""Pick clean/adversarial pairs for the report's image grid."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bastion.evaluation.runner import RunResults
from bastion.report.model import ExampleImage

__all__ = ["pick_examples"]

GRID_SIZE = 8


def _is_image(shape: tuple[int, ...]) -> bool:
    return len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))


def _pixels(x: Tensor, bounds: tuple[float, float]) -> tuple[int, ...]:
    scaled = (x.float() - bounds[0]) / (bounds[1] - bounds[0]) * 255.0
    return tuple(int(v) for v in scaled.round().clamp(0, 255).to(torch.uint8).reshape(-1).tolist())


def pick_examples(
    results: RunResults, epsilons: tuple[float, ...], bounds: tuple[float, float]
) -> tuple[ExampleImage, ...]:
    """Up to eight broken examples from the run that broke the most at the middle epsilon."""
    data = results.data
    if not _is_image(data.input_shape) or not epsilons:
        return ()
    eps = epsilons[len(epsilons) // 2]
    runs = [o for o in results.outcomes if math.isclose(o.eps, eps) and o.kept]
    if not runs:
        return ()
    best = max(runs, key=lambda o: (int(o.success.sum()), len(o.kept)))
    images = []
    for index, (x_adv, adv_label) in sorted(best.kept.items())[:GRID_SIZE]:
        images.append(
            ExampleImage(
                index=index,
                label=int(data.y[index]),
                clean_prediction=int(results.clean_predictions[index]),
                adversarial_prediction=adv_label,
                attack=best.attack,
                eps=eps,
                shape=tuple(data.input_shape),
                clean=_pixels(data.x[index], bounds),
                adversarial=_pixels(x_adv, bounds),
            )
        )
    return tuple(images)
