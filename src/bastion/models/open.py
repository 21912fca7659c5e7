"""Open any supported model file as a :class:`Classifier`, choosing the loader from the file's content.

PyTorch files go to :func:`~bastion.models.load.load_torch_model`; ONNX runs in onnxruntime;
scikit-learn estimators come from skops files, whose loader builds only the types it is told to
trust (here: those on the pickle scanner's allowlist). A pickle or joblib file is refused unless
the caller trusts it (``trust_pickle``); even then it is scanned first, refused when it imports
anything off the allowlist, and unpickled from the scanned bytes by an unpickler that imports
nothing else.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from joblib.numpy_pickle import NumpyUnpickler

from bastion.audit.pickles import is_safe_global, python3_name, refusal_reason, scan_pickle
from bastion.errors import ModelError, UnsafeModelError
from bastion.models.files import ModelFormat, sniff_format
from bastion.models.interface import Classifier
from bastion.models.load import check_model_file, load_torch_model
from bastion.models.onnx import OnnxClassifier
from bastion.models.sklearn import SklearnClassifier

__all__ = ["load_model"]

_TORCH_FORMATS = frozenset(
    {ModelFormat.TORCHSCRIPT, ModelFormat.TORCH_EXPORT, ModelFormat.TORCH_PICKLE, ModelFormat.SAFETENSORS}
)
_SUPPORTED = (
    "TorchScript, torch.export (.pt2, trusted), safetensors or state-dict weights with --factory, ONNX, "
    "skops (scikit-learn), or a scanned pickle / joblib file with --trust-pickle"
)


def load_model(
    path: str | Path,
    *,
    input_shape: tuple[int, ...],
    bounds: tuple[float, float] = (0.0, 1.0),
    factory: str | None = None,
    device: str | torch.device = "cpu",
    trust_pickle: bool = False,
    trusted: bool = False,
) -> Classifier:
    """The model in ``path``, whatever its supported format; scikit-learn models always run on the CPU.

    ``trusted`` allows a torch.export archive (see :func:`load_torch_model`); ``trust_pickle``
    allows a pickle or joblib file that passes the allowlist scan.

    Example::

        model = load_model("model.skops", input_shape=(64,), bounds=(0.0, 16.0))
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt in _TORCH_FORMATS:
        return load_torch_model(
            path, input_shape=input_shape, bounds=bounds, factory=factory, device=device, trusted=trusted
        )
    if fmt in (ModelFormat.ONNX, ModelFormat.SKOPS) or (fmt is ModelFormat.PICKLE and trust_pickle):
        check_model_file(path, advice="Even with --trust-pickle, only allowlisted types load.")
    if fmt is ModelFormat.ONNX:
        return OnnxClassifier(path, input_shape=input_shape, bounds=bounds, name=path.name, device=device)
    if fmt is ModelFormat.SKOPS:
        return SklearnClassifier(_read_skops(path), input_shape=input_shape, bounds=bounds, name=path.name)
    if fmt is ModelFormat.PICKLE:
        estimator = _read_trusted_pickle(path, trust_pickle)
        return SklearnClassifier(estimator, input_shape=input_shape, bounds=bounds, name=path.name)
    raise ModelError(f"{path}: unrecognised model format ({fmt.value}); expected {_SUPPORTED}")


def _read_skops(path: Path) -> object:
    import skops.io

    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # skops reports damaged archives and schemas with many exception types
        raise ModelError(f"could not read skops file {path}: {type(exc).__name__}: {exc}") from exc
    refused = [name for name in untrusted if not is_safe_global(*_split(name))]
    if refused:
        raise UnsafeModelError(
            f"{path} is a skops file holding types that are not known to be safe: {', '.join(refused)}; "
            "expected only scikit-learn, numpy and scipy types"
        )
    try:
        return skops.io.load(path, trusted=untrusted)
    except Exception as exc:  # as above: the file passed the type check but could not be rebuilt
        raise ModelError(f"could not load skops file {path}: {type(exc).__name__}: {exc}") from exc


def _split(qualified: str) -> tuple[str, str]:
    module, _, name = qualified.rpartition(".")
    return module, name


def _read_trusted_pickle(path: Path, trust_pickle: bool) -> object:
    if not trust_pickle:
        raise UnsafeModelError(
            f"{path} is a pickle (or joblib) file: unpickling it could execute code. Save a scikit-learn "
            "model with skops (skops.io.dump) instead, a PyTorch model as TorchScript or safetensors weights; "
            "or, only if you trust the file, pass --trust-pickle (trust_pickle=True in Python): the file is "
            "then scanned and loaded only if it imports nothing but allowlisted types"
        )
    data = path.read_bytes()
    scan = scan_pickle(data)
    if not scan.safe:
        raise UnsafeModelError(
            f"{path} was refused by the pickle scan, even with --trust-pickle: {'; '.join(scan.reasons)}"
        )
    try:
        # The bytes that were scanned, not the file again: it could change in between.
        return _AllowlistUnpickler(str(path), io.BytesIO(data), ensure_native_byte_order=True).load()
    except UnsafeModelError:
        raise
    except Exception as exc:  # a scanned but damaged or incompatible pickle fails in many ways
        raise ModelError(f"could not unpickle {path}: {type(exc).__name__}: {exc}") from exc


class _AllowlistUnpickler(NumpyUnpickler):  # type: ignore[misc]
    """joblib's unpickler (it reads the arrays joblib writes after the opcodes), importing only allowlisted globals.

    The scan already refused anything else; this is the second lock on the same door.
    """

    def find_class(self, module: str, name: str) -> Any:
        reason = refusal_reason(module, name)
        if reason is not None:
            raise UnsafeModelError(f"refused while unpickling: {reason}")
        found = super().find_class(module, name)
        if python3_name(module, name)[0].startswith("sklearn") and not isinstance(found, type):
            raise UnsafeModelError(f"refused while unpickling: {module}.{name} is not a class")
        return found
