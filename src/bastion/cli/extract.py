"""``bastion extract``: steal a surrogate of a model by querying it, measure agreement, and try a transfer attack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from torch import nn

from bastion.attacks.extraction import Extraction, agreement, transfer_attack
from bastion.attacks.registry import make_attack
from bastion.cli.common import out_console
from bastion.errors import ConfigError
from bastion.evaluation.assess import resolve_device, resolve_model_and_data
from bastion.models.load import load_factory
from bastion.models.restricted import restrict

__all__ = ["extract_command"]


def _surrogate(spec: str | None, demo: str | None) -> nn.Module:
    if spec is not None:
        module = load_factory(spec)()
        if not isinstance(module, nn.Module):
            raise ConfigError(f"--surrogate {spec!r} returned {type(module).__name__}, expected an nn.Module")
        return module
    if demo is None:
        raise ConfigError("--surrogate module:function is needed for a model that is not a bundled demo")
    from bastion.models.zoo import build

    return build(demo)


def extract_command(
    model: Annotated[str, typer.Argument(help="Model file or demo:mnist / demo:digits: the target to steal.")],
    data: Annotated[
        Optional[str],  # noqa: UP045 -- typer reads the annotation at run time on Python 3.10
        typer.Option("--data", "-d", help="Unlabelled seed inputs to query with (default: the demo's train split)."),
    ] = None,
    holdout: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Held-out inputs to measure agreement on (default: the demo's test split)."),
    ] = None,
    surrogate: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="module:function building the surrogate (default: the demo architecture)."),
    ] = None,
    factory: Annotated[Optional[str], typer.Option(help="module:function for the target's weight file.")] = None,  # noqa: UP045
    knowledge: Annotated[str, typer.Option(help="What the target answers: scores or labels.")] = "scores",
    budget: Annotated[int, typer.Option(help="Queries to the target.")] = 20000,
    epochs: Annotated[int, typer.Option(help="Surrogate training epochs.")] = 10,
    transfer: Annotated[
        str, typer.Option(help="White-box attack run on the surrogate and replayed on the target.")
    ] = "pgd",
    norm: Annotated[str, typer.Option(help="Norm of the transfer attack.")] = "linf",
    eps: Annotated[float, typer.Option(help="Radius of the transfer attack.")] = 0.3,
    n_transfer: Annotated[int, typer.Option(help="Held-out examples the transfer attack is tried on.")] = 500,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for surrogate.safetensors and extract.json.")] = Path(
        "reports/extract"
    ),
) -> None:
    """Model extraction (Knockoff Nets / Copycat): agreement with the target, then transfer-attack success."""
    demo = model[5:] if model.startswith("demo:") else None
    if demo is None and (data is None or holdout is None):
        raise ConfigError("a model file needs --data (seed inputs) and --holdout (inputs to measure agreement on)")
    torch_device = resolve_device(device)
    seeds, target = resolve_model_and_data(model, data or f"demo:{demo}:train", factory, torch_device, False)
    test, _ = resolve_model_and_data(target, holdout or f"demo:{demo}:test", None, torch_device, False)
    seen = restrict(target, knowledge)
    stolen = Extraction(budget=budget, epochs=epochs)(
        seen, seeds.x, _surrogate(surrogate, demo).to(torch_device), seed=seed
    )
    agree = agreement(stolen.surrogate, seen, test.x)
    sample = test.take(min(n_transfer, len(test)), seed=seed)
    moved = transfer_attack(
        make_attack(transfer), stolen.surrogate, seen, sample.x, sample.y, norm=norm, eps=eps, seed=seed
    )
    out.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    state = {k: v.contiguous().cpu() for k, v in stolen.surrogate.module.state_dict().items()}
    save_file(state, str(out / "surrogate.safetensors"))
    summary = {
        "target": model,
        "knowledge": knowledge,
        "queries": stolen.queries,
        "soft_labels": stolen.soft_labels,
        "agreement": agree,
        "transfer": {"attack": transfer, "norm": norm, "eps": eps, "examples": len(sample),
                     "target_success": moved.success_rate, "transfer_rate": moved.transfer_rate},
        "elapsed": stolen.elapsed,
    }  # fmt: skip
    (out / "extract.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    out_console.print(
        f"surrogate agrees with the target on {agree:.1%} of held-out inputs after {stolen.queries} queries; "
        f"{transfer} at eps {eps:g} crafted on it fools the target on {moved.success_rate:.1%}. Saved to {out}",
        soft_wrap=True,
    )
