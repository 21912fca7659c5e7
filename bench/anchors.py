"""The anchors: torchattacks and ART attacks wrapped as runners over the same module, built from their public APIs.

Each builder returns a :data:`harness.Runner` for one batch; :func:`harness.batched` feeds it the data.
Every anchor runs at its library defaults except where a row fixes a setting to make the work
comparable (eps, steps, step size, restarts); the row says which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness import Runner

NUM_CLASSES = 10
INPUT_SHAPE = (1, 28, 28)


# ---------------------------------------------------------------- torchattacks


def torchattacks_runner(factory: Callable[[Any, nn.Module], Any], module: nn.Module) -> Runner:
    """``factory(torchattacks, module)`` builds the attack once; the runner calls it on each batch."""
    import torchattacks

    attack = factory(torchattacks, module)

    def run(x: Tensor, y: Tensor) -> Tensor:
        out: Tensor = attack(x, y)
        return out

    return run


def ta_ensemble(ta: Any, module: nn.Module, eps: float, steps: int) -> Any:
    """APGD-CE then APGD-T (9 target classes), each on the examples still standing: Bastion's cascade."""
    ce = ta.APGD(module, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=0, loss="ce")
    targeted = ta.APGDT(module, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=0, n_classes=NUM_CLASSES)
    return ta.MultiAttack([ce, targeted])


# ---------------------------------------------------------------- ART


def art_classifier(module: nn.Module, device: torch.device, loss: nn.Module | None = None) -> Any:
    """ART's PyTorchClassifier around the very same module (not a copy), inputs clipped to [0, 1]."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(
        model=module,
        loss=loss if loss is not None else nn.CrossEntropyLoss(),
        input_shape=INPUT_SHAPE,
        nb_classes=NUM_CLASSES,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def art_runner(attack: Any, *, targets: Callable[[Tensor, Tensor], Tensor] | None = None) -> Runner:
    """ART works on numpy arrays: convert at the edge; labels go in as class indices (true labels)."""

    def run(x: Tensor, y: Tensor) -> Tensor:
        labels = y if targets is None else targets(x, y)
        out = attack.generate(x=x.cpu().numpy(), y=labels.cpu().numpy())
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)

    return run


def art_ensemble(classifier: Any, module: nn.Module, eps: float, steps: int, batch_size: int) -> Runner:
    """APGD-CE, then targeted APGD-DLR against the classes ranked 2..10 by the clean logits, in turn.

    ART's own AutoAttack runs every listed attack both untargeted and targeted against every
    class, so it cannot express APGD-CE + APGD-T; this cascade uses ART's
    AutoProjectedGradientDescent as it is and only chooses whom to attack next.
    """
    from art.attacks.evasion import AutoProjectedGradientDescent

    def apgd(loss: str, targeted: bool) -> Any:
        return AutoProjectedGradientDescent(
            classifier,
            norm=np.inf,
            eps=eps,
            eps_step=2 * eps,  # the paper's initial step (ART's default is a fixed 0.1)
            max_iter=steps,
            targeted=targeted,
            nb_random_init=1,
            batch_size=batch_size,
            loss_type=loss,
            verbose=False,
        )

    untargeted, targeted = apgd("cross_entropy", False), apgd("difference_logits_ratio", True)

    def run(x: Tensor, y: Tensor) -> Tensor:
        with torch.no_grad():
            ranked = module(x).argsort(dim=1, descending=True).cpu().numpy()
        x_np, y_np = x.cpu().numpy(), y.cpu().numpy()
        x_adv = untargeted.generate(x=x_np, y=y_np)
        for k in range(1, NUM_CLASSES):
            standing = np.flatnonzero(_predict(module, x_adv, x.device) == y_np)
            if standing.size == 0:
                break
            goal = ranked[standing, k]
            x_adv[standing] = targeted.generate(x=x_np[standing], y=goal)
        return torch.from_numpy(x_adv).to(x.device)

    return run


def _predict(module: nn.Module, x: np.ndarray, device: torch.device) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x).to(device)).argmax(dim=1).cpu().numpy()
