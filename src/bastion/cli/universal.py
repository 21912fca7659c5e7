"""``bastion patch`` and ``bastion perturbation``: universal, physical-world attacks, saved as PNG with figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer
from torch import Tensor

from bastion.attacks.universal import AdversarialPatch, UniversalPerturbation, apply_patch, fooling_rate
from bastion.cli.common import out_console
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError
from bastion.evaluation.assess import resolve_device, resolve_model_and_data
from bastion.models.interface import Classifier

__all__ = ["patch_command", "perturbation_command"]

ModelArg = Annotated[str, typer.Argument(help="Model file or demo:mnist / demo:digits.")]
DataOpt = Annotated[
    Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
    typer.Option("--data", "-d", help="Training images (default: the demo's training split)."),
]
HoldoutOpt = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(help="Held-out images to measure success on (default: the demo's test split)."),
]
FactoryOpt = Annotated[Optional[str], typer.Option(help="module:function for weight files.")]  # noqa: UP045
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder for the PNG and the JSON summary.")]


def _setup(
    model: str, data: str | None, holdout: str | None, factory: str | None, device: str
) -> tuple[Classifier, Dataset, Dataset]:
    demo = model[5:] if model.startswith("demo:") else None
    if demo is None and (data is None or holdout is None):
        raise ConfigError("a model file needs --data (training images) and --holdout (images to measure on)")
    train, classifier = resolve_model_and_data(
        model, data or f"demo:{demo}:train", factory, resolve_device(device), False
    )
    test, _ = resolve_model_and_data(classifier, holdout or f"demo:{demo}:test", None, resolve_device(device), False)
    return classifier, train, test


def _save_png(pattern: Tensor, bounds: tuple[float, float], path: Path, *, signed: bool = False) -> None:
    from PIL import Image

    img = pattern.detach().cpu().float()
    img = (img - img.min()) / (img.max() - img.min() + 1e-12) if signed else (img - bounds[0]) / (bounds[1] - bounds[0])
    pixels = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    array = pixels[0].numpy() if pixels.shape[0] == 1 else pixels.permute(1, 2, 0).numpy()
    scale = max(1, 256 // max(array.shape[0], 1))
    Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.Resampling.NEAREST).save(path)


def _write(out: Path, name: str, summary: dict[str, object]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    out_console.print(
        f"{name}: fools {summary['train_success']:.1%} of training and {summary['holdout_success']:.1%} of held-out "
        f"inputs (baseline {summary['baseline_success']:.1%}); saved {out / (name + '.png')}",
        soft_wrap=True,
    )


def patch_command(
    model: ModelArg,
    data: DataOpt = None,
    holdout: HoldoutOpt = None,
    factory: FactoryOpt = None,
    size: Annotated[float, typer.Option(help="Patch side as a fraction of the image side.")] = 0.3,
    steps: Annotated[int, typer.Option(help="Optimisation steps.")] = 300,
    target: Annotated[Optional[int], typer.Option(help="Class to send inputs to (default: untargeted).")] = None,  # noqa: UP045
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: OutOpt = Path("reports/patch"),
) -> None:
    """Train a universal adversarial patch (random place, scale, rotation) and measure it on held-out images."""
    classifier, train, test = _setup(model, data, holdout, factory, device)
    attack = AdversarialPatch(size=size, steps=steps, target=target)
    result = attack(classifier, train.x, train.y, seed=seed)

    def paste(pattern: Tensor) -> Callable[[Tensor, torch.Generator], Tensor]:
        return lambda x, g: apply_patch(x, pattern, g, scale=attack.scale, rotation=attack.rotation)

    lo, hi = classifier.bounds
    noise = torch.rand(result.pattern.shape, generator=torch.Generator().manual_seed(seed))
    random_patch = (lo + (hi - lo) * noise).to(result.pattern.device)
    out.mkdir(parents=True, exist_ok=True)
    _save_png(result.pattern, classifier.bounds, out / "patch.png")
    _write(
        out,
        "patch",
        {
            "attack": "patch",
            "settings": {"size": size, "steps": steps, "target": target, "seed": seed},
            "train_success": result.train_success,
            "holdout_success": fooling_rate(classifier, test.x, test.y, paste(result.pattern), seed=seed),
            "baseline_success": fooling_rate(classifier, test.x, test.y, paste(random_patch), seed=seed),
            "queries": result.queries,
            "gradients": result.gradients,
            "elapsed": result.elapsed,
        },
    )


def perturbation_command(
    model: ModelArg,
    data: DataOpt = None,
    holdout: HoldoutOpt = None,
    factory: FactoryOpt = None,
    norm: Annotated[str, typer.Option(help="linf or l2.")] = "linf",
    eps: Annotated[float, typer.Option(help="Radius of the perturbation.")] = 0.2,
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 5,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: OutOpt = Path("reports/perturbation"),
) -> None:
    """Learn one universal perturbation inside the eps ball and measure it on held-out inputs."""
    classifier, train, test = _setup(model, data, holdout, factory, device)
    result = UniversalPerturbation(epochs=epochs)(classifier, train.x, train.y, norm=norm, eps=eps, seed=seed)
    lo, hi = classifier.bounds
    signs = torch.sign(torch.randn(result.pattern.shape, generator=torch.Generator().manual_seed(seed)))
    random_v = (signs * result.pattern.abs().max().cpu()).to(result.pattern.device)
    out.mkdir(parents=True, exist_ok=True)
    if len(classifier.input_shape) == 3:
        _save_png(result.pattern, classifier.bounds, out / "perturbation.png", signed=True)
    _write(
        out,
        "perturbation",
        {
            "attack": "universal-perturbation",
            "settings": {"norm": norm, "eps": eps, "epochs": epochs, "seed": seed},
            "train_success": result.train_success,
            "holdout_success": fooling_rate(
                classifier, test.x, test.y, lambda x, _g: (x + result.pattern).clamp(lo, hi)
            ),
            "baseline_success": fooling_rate(classifier, test.x, test.y, lambda x, _g: (x + random_v).clamp(lo, hi)),
            "queries": result.queries,
            "gradients": result.gradients,
            "elapsed": result.elapsed,
        },
    )
