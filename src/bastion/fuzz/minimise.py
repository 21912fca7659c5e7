"""Minimised reproducers for model findings, saved as .npy (and PNG for images).

A metamorphic finding is a chain of transformations applied to a seed. Its reproducer is
shrunk the way delta debugging shrinks a failing input (Zeller and Hildebrandt, 2002): drop one
transformation at a time, then halve the strengths, keeping each smaller chain that still makes
the model fail. Every candidate is replayed with one fixed ``torch.Generator`` seed, so the
saved chain reproduces the saved input exactly. A coverage-guided finding is a lineage of many
random mutations, which does not replay; it is shrunk by moving the input back towards its seed
(a binary search on the interpolation weight) while the failure persists.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bastion.data import Dataset
from bastion.fuzz.metamorphic import Chain, Finding
from bastion.fuzz.transforms import MutationLimits, apply_chain, within_limits
from bastion.models.interface import Classifier

__all__ = ["Reproducer", "minimise", "save_reproducer", "still_fails"]

# Probability below which a top class counts as a confidence collapse (the guided fuzzer's default).
CONFIDENCE_FLOOR = 0.3
_HALVINGS = 3  # strength halvings tried per chain
_REPLAYS = 4  # replay seeds tried for the chain as found
_SEARCH_STEPS = 6  # binary-search steps towards the seed for guided findings
_PNG_PIXELS = 96


@dataclass(frozen=True)
class Reproducer:
    """The input to save for a finding, the chain that makes it and whether it is smaller than found."""

    x: Tensor  # one input, without the batch axis
    chain: Chain
    replay_seed: int | None  # the generator seed that replays ``chain`` on the seed; None if it does not replay
    minimised: bool
    tries: int  # model evaluations spent shrinking


def still_fails(model: Classifier, finding: Finding, x: Tensor, reference: Classifier | None = None) -> bool:
    """Whether ``x`` fails the way ``finding`` did: the same oracle, judged on the model (and the reference)."""
    try:
        logits = _logits(model, x)
    except Exception:  # the model raising is the failure an "exception" finding records
        return finding.kind == "exception"
    if finding.kind == "exception":
        return False
    if finding.kind == "non_finite":
        return not bool(torch.isfinite(logits).all())
    if not bool(torch.isfinite(logits).all()):
        return False
    label = int(logits.argmax())
    if finding.kind == "disagreement":
        return reference is not None and label != int(_logits(reference, x).argmax())
    if finding.kind == "confidence_collapse":
        return float(torch.softmax(logits.double(), dim=0).max()) < CONFIDENCE_FLOOR
    return label != finding.original_label


def minimise(
    model: Classifier,
    finding: Finding,
    seeds: Dataset,
    *,
    guided: bool,
    replay_seed: int,
    limits: MutationLimits,
    reference: Classifier | None = None,
) -> Reproducer:
    """The smallest failing variant of ``finding`` this search reaches (the finding itself if none is smaller)."""
    as_found = Reproducer(finding.mutant, finding.chain, None, False, 0)
    if not finding.chain:
        return as_found
    seed_x = seeds.x[finding.seed_index]
    fails = _counting(lambda x: still_fails(model, finding, x, reference))
    if guided:
        return _towards_seed(finding, seed_x, fails) or as_found
    return _shrink_chain(finding, seeds, replay_seed, limits, fails) or as_found


class _counting:
    """A failure predicate that counts its calls."""

    def __init__(self, predicate: Callable[[Tensor], bool]) -> None:
        self.predicate, self.calls = predicate, 0

    def __call__(self, x: Tensor) -> bool:
        self.calls += 1
        return self.predicate(x)


def _shrink_chain(
    finding: Finding, seeds: Dataset, replay_seed: int, limits: MutationLimits, fails: _counting
) -> Reproducer | None:
    """Greedy: drop transformations while one can go, then halve all strengths while it still fails."""
    x = seeds.x[finding.seed_index : finding.seed_index + 1]
    replay = replay_seed

    def attempt(chain: Chain) -> Tensor | None:
        generator = torch.Generator().manual_seed(replay)
        mutant, ref = apply_chain(x, chain, generator=generator, bounds=seeds.bounds, constraints=seeds.constraints)
        valid = within_limits(
            mutant, ref, limits=limits, bounds=seeds.bounds, constraints=seeds.constraints, original=x
        )
        return mutant[0] if bool(valid[0]) and fails(mutant[0]) else None

    # The random draws differ from the fuzzer's: look for a replay seed under which the chain fails too.
    best_chain, best = finding.chain, None
    for offset in range(_REPLAYS):
        replay = replay_seed + offset
        if (best := attempt(finding.chain)) is not None:
            break
    if best is None:
        return None  # the chain fails under none of them: keep the input as found
    shrinking = True
    while shrinking and len(best_chain) > 1:
        shrinking = False
        for drop in range(len(best_chain)):
            smaller = best_chain[:drop] + best_chain[drop + 1 :]
            if (found := attempt(smaller)) is not None:
                best_chain, best, shrinking = smaller, found, True
                break
    for _ in range(_HALVINGS):
        weaker = tuple((name, round(strength / 2, 6)) for name, strength in best_chain)
        if (found := attempt(weaker)) is None:
            break
        best_chain, best = weaker, found
    minimised = best_chain != finding.chain
    return Reproducer(best, best_chain, replay, minimised, fails.calls)


def _towards_seed(finding: Finding, seed_x: Tensor, fails: _counting) -> Reproducer | None:
    """Binary search for the smallest step from the seed towards the mutant that still fails."""
    delta = finding.mutant - seed_x
    low, high = 0.0, 1.0
    for _ in range(_SEARCH_STEPS):
        middle = (low + high) / 2
        if fails(seed_x + middle * delta):
            high = middle
        else:
            low = middle
    if high >= 1.0:
        return None
    return Reproducer(seed_x + high * delta, finding.chain, None, True, fails.calls)


def save_reproducer(x: Tensor, folder: Path, name: str, bounds: tuple[float, float]) -> tuple[Path, Path | None]:
    """Write ``name``.npy (no pickles) and, for an image, ``name``.png; returns both paths (PNG or None)."""
    folder.mkdir(parents=True, exist_ok=True)
    array = x.detach().cpu().numpy()
    npy = folder / f"{name}.npy"
    np.save(npy, array, allow_pickle=False)
    if not _is_image(tuple(array.shape)):
        return npy, None
    png = folder / f"{name}.png"
    png.write_bytes(_png(array, bounds))
    return npy, png


def _is_image(shape: tuple[int, ...]) -> bool:
    """HxW, 1xHxW or 3xHxW with sides of at least two pixels."""
    sides = shape[1:] if len(shape) == 3 and shape[0] in (1, 3) else shape
    return len(sides) == 2 and min(sides) >= 2


def _png(array: np.ndarray, bounds: tuple[float, float]) -> bytes:
    """The input as 8-bit pixels (bounds mapped to 0..255), enlarged with nearest neighbour."""
    scaled = (array - bounds[0]) / (bounds[1] - bounds[0] or 1.0)
    pixels = np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8)
    if pixels.ndim == 3:
        pixels = pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1)
    height, width = pixels.shape[:2]
    factor = max(1, math.floor(_PNG_PIXELS / max(height, width, 1)))
    image = Image.fromarray(pixels).resize((width * factor, height * factor), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _logits(model: Classifier, x: Tensor) -> Tensor:
    with model.inference(), torch.no_grad():
        return model.logits(x.unsqueeze(0).to(model.device))[0].detach().cpu().float()
