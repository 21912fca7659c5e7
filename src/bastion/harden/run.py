"""``harden()``: validate the request, pick the trainer, run the shared loop, and record a manifest.

Example::

    from bastion.harden import harden
    result = harden(demo_model("mnist"), load_demo("mnist", "train"), method="pgd", eps=0.3, epochs=5)
    result.history[-1].robust_accuracy     # PGD accuracy at eps 0.3 on held-out data
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from dataclasses import replace
from typing import Any

import torch

import bastion
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError, ModelError
from bastion.gate.gate import data_digest, model_digest
from bastion.harden.interface import HardenConfig, HardenResult, Trainer
from bastion.harden.loop import LoopOutcome, Progress, train_loop
from bastion.harden.registry import make_trainer
from bastion.models.torch import TorchClassifier
from bastion.norms import get_norm

__all__ = ["EVAL_EXAMPLES", "harden"]

# At most this many held-out examples are measured after each epoch (a seeded sample of val, or
# held out from the training data: a tenth of it, up to this many, when no val is given).
EVAL_EXAMPLES = 512
# The robust accuracy after each epoch uses PGD with at least this many steps.
MIN_EVAL_STEPS = 10


def harden(
    model: TorchClassifier,
    train: Dataset,
    *,
    method: str | Trainer = "pgd",
    eps: float = 0.3,
    norm: str = "linf",
    epochs: int = 5,
    seed: int = 0,
    steps: int = 10,
    step_size: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    beta: float = 6.0,
    val: Dataset | None = None,
    progress: Progress | None = None,
) -> HardenResult:
    """Adversarially train a copy of ``model`` on ``train`` with ``method``; ``model`` is unchanged.

    ``method`` names a registered trainer (``TRAINERS``: pgd, trades, fgsm-rs, reject-class) or is
    a configured :class:`Trainer` (then ``steps``, ``step_size`` and ``beta`` do not apply to it,
    except that ``steps`` still sets the evaluation PGD). ``steps`` and ``step_size`` shape the
    training-time attack (fast FGSM takes one step of ``step_size``, default 1.25 * eps), ``beta``
    weighs TRADES' robustness term. After each epoch clean accuracy and PGD accuracy at ``eps``
    are measured on ``val`` (at most :data:`EVAL_EXAMPLES` of it), or on a slice held out of
    ``train`` and not trained on; each epoch's :class:`EpochStats` goes to ``progress``.
    """
    started = time.perf_counter()
    if isinstance(method, Trainer):
        trainer = method
        trainer.check()
    else:
        trainer = make_trainer(method, steps=steps, step_size=step_size, beta=beta)
    config = HardenConfig(
        eps=eps,
        norm=get_norm(norm).name,
        epochs=epochs,
        seed=seed,
        batch_size=batch_size,
        lr=lr,
        eval_steps=max(MIN_EVAL_STEPS, steps),
    )
    _check_model(model)
    _check_config(config, steps, model.bounds, model.input_shape)
    _check_data(train, model, "train")
    if val is not None:
        _check_data(val, model, "val")
    fit, holdout = _split(train, val, seed)
    outcome = train_loop(trainer, model, fit, holdout, config, progress)
    manifest = _manifest(trainer, config, model, train, fit, holdout, val is not None, outcome)
    return HardenResult(
        model=outcome.model,
        history=outcome.history,
        seconds=time.perf_counter() - started,
        catastrophic_overfitting=outcome.collapsed,
        manifest=manifest,
        rejection=outcome.final.rejection,
    )


def _check_model(model: TorchClassifier) -> None:
    if not isinstance(model, TorchClassifier):
        raise ConfigError(f"harden trains PyTorch models (a TorchClassifier), got {type(model).__name__}")
    if not any(p.requires_grad for p in model.module.parameters()):
        raise ModelError(
            f"{model.name}: the model has no parameters that require gradients, so it cannot be trained "
            "(frozen, or an exported graph): give a module built by its factory with trainable weights"
        )


def _check_config(config: HardenConfig, steps: int, bounds: tuple[float, float], shape: tuple[int, ...]) -> None:
    span = bounds[1] - bounds[0]
    # Beyond the diameter of the input box the ball contains every input: no meaningful threat.
    limit = span if config.norm == "linf" else span * math.prod(shape) ** (1.0 / get_norm(config.norm).p)
    if not (math.isfinite(config.eps) and 0 < config.eps <= limit):
        raise ConfigError(
            f"expected eps in (0, {limit:g}] for the {config.norm} norm on inputs in [{bounds[0]:g}, {bounds[1]:g}], "
            f"got {config.eps}"
        )
    for name, value, low in (("epochs", config.epochs, 1), ("steps", steps, 1), ("batch_size", config.batch_size, 1)):
        if not value >= low:
            raise ConfigError(f"expected {name} >= {low}, got {value}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise ConfigError(f"expected lr > 0, got {config.lr}")


def _check_data(data: Dataset, model: TorchClassifier, role: str) -> None:
    if not isinstance(data, Dataset):
        raise DataError(f"{role}: expected a bastion Dataset, got {type(data).__name__}")
    labels = getattr(data, "y", None)
    if labels is None or labels.dim() != 1 or labels.numel() != len(data):
        raise DataError(f"{role} ({data.name}): adversarial training needs one label per input; the data has none")
    data.validate(num_classes=model.num_classes, input_shape=model.input_shape)
    lo, hi = model.bounds
    if float(data.x.min()) < lo or float(data.x.max()) > hi:
        raise DataError(f"{role} ({data.name}): inputs lie outside the model's bounds [{lo:g}, {hi:g}]")


def _split(train: Dataset, val: Dataset | None, seed: int) -> tuple[Dataset, Dataset]:
    """The data to train on and the evaluation set: ``val`` (sampled), or a seeded slice held out of ``train``."""
    if val is not None:
        return train, val if len(val) <= EVAL_EXAMPLES else val.take(EVAL_EXAMPLES, seed=seed)
    if len(train) < 2:
        raise DataError(f"train ({train.name}): hold-out evaluation needs at least 2 examples, got {len(train)}")
    held = min(EVAL_EXAMPLES, max(1, len(train) // 10))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    rest, out = order[held:], order[:held]
    fit = replace(train, x=train.x[rest], y=train.y[rest])
    return fit, replace(train, x=train.x[out], y=train.y[out], name=f"{train.name}-holdout")


def _manifest(
    trainer: Trainer,
    config: HardenConfig,
    model: TorchClassifier,
    train: Dataset,
    fit: Dataset,
    holdout: Dataset,
    given_val: bool,
    outcome: LoopOutcome,
) -> dict[str, Any]:
    """What was trained, on what, how, and what came of it: JSON values only."""
    hardened = outcome.model
    return {
        "method": trainer.name,
        "settings": {**dataclasses.asdict(config), **trainer.config()},
        "seed": config.seed,
        "data": {"name": train.name, "n_examples": len(train), "trained_on": len(fit), "sha256": data_digest(train)},
        "evaluation": {
            "source": "val" if given_val else "held out of train",
            "name": holdout.name,
            "n_examples": len(holdout),
            "sha256": data_digest(holdout),
        },
        "model": {
            "base": model.name,
            "base_sha256": model_digest(model),
            "sha256": model_digest(hardened),
            "input_shape": list(hardened.input_shape),
            "num_classes": hardened.num_classes,
            "reject_class": hardened.num_classes - 1 if trainer.extra_outputs else None,
            "bounds": list(hardened.bounds),
        },
        "initial": {
            "clean_accuracy": outcome.initial.clean_accuracy,
            "robust_accuracy": outcome.initial.robust_accuracy,
            "fgsm_accuracy": outcome.initial.fgsm_accuracy,
        },
        "epochs_run": len(outcome.history),
        "catastrophic_overfitting": outcome.collapsed,
        "restored_epoch": outcome.restored_epoch,
        "device": str(hardened.device),
        "torch": torch.__version__,
        "bastion": bastion.__version__,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
