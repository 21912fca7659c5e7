"""Load a PyTorch model from a file without ever unpickling untrusted code.

torch.export archives (.pt2) are refused unless the caller trusts the file: ``torch.export.load``
unpickles parts of the archive (sample inputs fall back to ``weights_only=False``) and hands
strings from it to ``exec`` (guard code) and ``sympy.sympify`` (shape expressions), so a crafted
.pt2 runs code while it loads. PyTorch documents it: never load a .pt2 from an untrusted source.
"""

from __future__ import annotations

import importlib
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from bastion.errors import ConfigError, ModelError, UnsafeModelError
from bastion.models.files import ModelFormat, sniff_format
from bastion.models.torch import TorchClassifier

__all__ = ["check_model_file", "load_factory", "load_torch_model"]

_SAFE_ADVICE = (
    "save its weights as safetensors (or a state dict) and pass --factory module:function that builds "
    "the module, or save the model as TorchScript (torch.jit.save)"
)


def load_torch_model(
    path: str | Path,
    *,
    input_shape: tuple[int, ...],
    bounds: tuple[float, float] = (0.0, 1.0),
    factory: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    trusted: bool = False,
) -> TorchClassifier:
    """Load TorchScript, ``factory`` + weights (safetensors or a weights-only state dict), or a trusted .pt2.

    A pickled module is refused: loading it would run whatever code the file carries. So is a
    torch.export archive unless ``trusted`` says the file comes from a source you trust.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt is ModelFormat.TORCH_EXPORT and not trusted:
        raise UnsafeModelError(
            f"{path} is a torch.export archive (.pt2): loading one can run code it carries (PyTorch: never "
            "load a .pt2 from an untrusted source). Load it only if you trust it "
            "(--trust-model-file; trusted=True in Python), or "
            f"{_SAFE_ADVICE}"
        )
    if fmt is ModelFormat.TORCHSCRIPT or (fmt in (ModelFormat.SAFETENSORS, ModelFormat.TORCH_PICKLE) and factory):
        check_model_file(path, advice=f"Instead, {_SAFE_ADVICE}")
    module = _load_module(path, fmt, factory, torch.device(device))
    module.to(torch.device(device))
    return TorchClassifier(module, input_shape=input_shape, num_classes=num_classes, bounds=bounds, name=path.name)


def check_model_file(path: Path, *, advice: str = "") -> None:
    """Scan ``path`` before any loader reads it: refuse a file that could run code, or a damaged or mislabelled one.

    The scan (:func:`bastion.audit.scan_model_file`) reads the file as data only; the loaders call
    it first so that an allowlist, not the loading library's own defences, decides what runs.
    """
    # Imported here: bastion.audit imports bastion.models.files, so a module-level import would cycle.
    from bastion.audit.models import Verdict, scan_model_file

    report = scan_model_file(path)
    if report.verdict is Verdict.UNSAFE:
        reasons = "; ".join(report.findings)
        raise UnsafeModelError(f"refused by the model-file scan: {reasons}. {advice}".rstrip())
    if report.verdict is Verdict.ERROR:
        raise ModelError(f"{path} failed the model-file scan: {'; '.join(report.findings)}")


def _load_module(path: Path, fmt: ModelFormat, factory: str | None, device: torch.device) -> nn.Module:
    if fmt is ModelFormat.TORCHSCRIPT:
        return _checked(lambda: torch.jit.load(str(path), map_location=device), path)  # type: ignore[no-untyped-call]
    if fmt is ModelFormat.TORCH_EXPORT:
        return _checked(lambda: torch.export.load(str(path)).module(), path)
    if fmt is ModelFormat.PICKLE:
        raise UnsafeModelError(f"{path} is a pickle: unpickling it could execute code. Instead, {_SAFE_ADVICE}")
    if fmt is ModelFormat.SAFETENSORS:
        return _with_weights(path, factory, _read_safetensors)
    if fmt is ModelFormat.TORCH_PICKLE:
        if factory is None:
            raise UnsafeModelError(
                f"{path} is a pickled PyTorch checkpoint (torch.save): loading it as a whole could execute "
                f"code. Instead, {_SAFE_ADVICE} (a state dict is then read with weights_only=True)"
            )
        return _with_weights(path, factory, _read_state_dict)
    raise ModelError(
        f"{path}: unrecognised model format ({fmt.value}); expected TorchScript, torch.export (.pt2), "
        "or safetensors / state-dict weights with --factory"
    )


def _checked(load: Callable[[], object], path: Path) -> nn.Module:
    try:
        module = load()
    except Exception as exc:  # corrupt or incompatible archives surface as many exception types
        raise ModelError(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, nn.Module):
        raise ModelError(f"{path} did not hold a module, got {type(module).__name__}")
    return module


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return dict(load_file(str(path)))
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ModelError(f"could not read safetensors weights {path}: {exc}") from exc


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # the weights-only unpickler refuses anything but tensors and containers
        raise UnsafeModelError(
            f"{path} holds more than weights (the weights-only loader refused it: {_refusal(exc)}). "
            f"Instead, {_SAFE_ADVICE}"
        ) from exc
    except Exception as exc:  # damaged archives surface as RuntimeError, OSError, EOFError, ...
        raise ModelError(f"could not read {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise ModelError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def _refusal(exc: pickle.UnpicklingError) -> str:
    """The reason torch gives, without its advice to retry with ``weights_only=False`` (which runs the pickle)."""
    text = str(exc)
    found = re.search(r"WeightsUnpickler error: (.*?)(?:\.\s|\.?$)", text, re.MULTILINE)
    if found:
        return found.group(1)
    return text.splitlines()[0] if text else type(exc).__name__


def _with_weights(path: Path, factory: str | None, read: Callable[[Path], dict[str, torch.Tensor]]) -> nn.Module:
    if factory is None:
        raise ConfigError(f"{path} holds only weights: pass --factory module:function that builds the module")
    module = load_factory(factory)()
    if not isinstance(module, nn.Module):
        raise ConfigError(f"factory {factory!r} returned {type(module).__name__}, expected an nn.Module")
    state = read(path)
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelError(f"weights in {path} do not fit the module built by {factory}: {exc}") from exc
    return module.eval()  # as deployed, like TorchScript and exported models


def load_factory(spec: str) -> Callable[[], object]:
    """Resolve ``package.module:function`` to a callable that returns an ``nn.Module``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"expected a factory as 'package.module:function', got {spec!r}")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import factory {spec!r}: {exc}") from exc
    if not callable(target):
        raise ConfigError(f"factory {spec!r} is not callable")
    return target  # type: ignore[no-any-return]
