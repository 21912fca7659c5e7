"""A hardened model on disk: its weights as safetensors and its manifest as JSON beside them (never a pickle).

Layout::

    out/model.safetensors    the hardened module's state dict
    out/manifest.json        method, settings, data hash, figures; ``factory`` names the module to rebuild

A reject-class model's module is its factory's module widened by one output
(:func:`~bastion.harden.reject.with_reject_class`); :func:`load_hardened` does that from the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from bastion.errors import ConfigError, DataError, ModelError, NotFoundError
from bastion.harden.interface import HardenResult
from bastion.harden.reject import with_reject_class
from bastion.models.load import check_model_file, load_factory
from bastion.models.torch import TorchClassifier

__all__ = ["MANIFEST_FILE", "MODEL_FILE", "load_hardened", "save_hardened"]

MODEL_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"


def save_hardened(result: HardenResult, out_dir: str | Path, *, factory: str | None = None) -> dict[str, Path]:
    """Write the weights and the manifest (with ``factory``, the ``module:callable`` building the module)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {key: value.detach().to("cpu").contiguous() for key, value in result.model.module.state_dict().items()}
    model_path = out / MODEL_FILE
    save_file(weights, str(model_path))
    manifest: dict[str, Any] = {**result.manifest, "factory": factory, "weights": MODEL_FILE}
    manifest_path = out / MANIFEST_FILE
    manifest_path.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {"model": model_path, "manifest": manifest_path}


def load_hardened(
    out_dir: str | Path, *, factory: str | None = None, device: str | torch.device = "cpu"
) -> TorchClassifier:
    """The hardened model saved in ``out_dir``, rebuilt by ``factory`` (default: the manifest's)."""
    from safetensors.torch import load_file

    folder = Path(out_dir)
    manifest = _read_manifest(folder / MANIFEST_FILE)
    spec = factory or manifest.get("factory")
    if not spec:
        raise ConfigError(f"{folder}: the manifest names no factory: pass factory='module:callable'")
    module = load_factory(str(spec))()
    if not isinstance(module, torch.nn.Module):
        raise ConfigError(f"{spec!r} built {type(module).__name__}, expected a torch.nn.Module")
    info = manifest["model"]
    if info.get("reject_class") is not None:
        module = with_reject_class(module, int(info["reject_class"]))
    weights = folder / str(manifest.get("weights", MODEL_FILE))
    check_model_file(weights)
    try:
        module.load_state_dict(load_file(str(weights)))
    except RuntimeError as error:
        raise ModelError(f"{folder}: the weights do not fit the module {spec!r} builds: {error}") from None
    module.to(torch.device(device)).eval()
    return TorchClassifier(
        module,
        input_shape=tuple(info["input_shape"]),
        num_classes=int(info["num_classes"]),
        bounds=(float(info["bounds"][0]), float(info["bounds"][1])),
        name=f"{info['base']}-hardened",
    )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"no hardened-model manifest at {path}") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise DataError(f"{path}: not a hardened-model manifest (no 'model' section)")
    return raw
