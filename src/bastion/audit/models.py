"""Static checks of model files: pickles scanned against an allowlist, safe formats checked by their own rules.

Nothing here unpickles, imports from or executes a model file. Pickle-based files (``.pkl``,
``.joblib``, PyTorch zip checkpoints, ``.npy`` arrays of objects) go through the allowlist scanner of
:mod:`bastion.audit.pickles`; PyTorch's ``data.pkl`` additionally may name the tensor rebuilders and
storage types a plain state dict needs (:data:`TORCH_SAFE_GLOBALS`) and the ``('storage', ...)``
persistent ids that point at tensor bytes. Anything not on an allowlist is refused.
"""

from __future__ import annotations

import ast
import enum
import json
import math
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.audit import pickles
from bastion.errors import BastionError
from bastion.models.files import ModelFormat, sniff_format

__all__ = ["TORCH_SAFE_GLOBALS", "ModelFileReport", "Verdict", "scan_model_file"]

_DTYPES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool")
TORCH_SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("collections", "OrderedDict"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("torch._utils", "_rebuild_parameter_with_state"),
        ("torch.nn.parameter", "Parameter"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch", "UntypedStorage"),
        *(("torch", f"{kind}Storage") for kind in _DTYPES),
        *(
            ("torch", dtype)
            for dtype in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
        ),
    }
)
_TORCH_EXTENSIONS = {".pt", ".pth", ".bin", ".ckpt"}
_TORCH_CLAIM = {ModelFormat.TORCH_PICKLE.value, ModelFormat.TORCHSCRIPT.value, ModelFormat.PICKLE.value}
_CLAIMS: dict[str, set[str]] = {  # extension -> the detected formats it may hold
    ".pkl": {ModelFormat.PICKLE.value},
    ".pickle": {ModelFormat.PICKLE.value},
    ".joblib": {ModelFormat.PICKLE.value},
    ".safetensors": {ModelFormat.SAFETENSORS.value},
    ".onnx": {ModelFormat.ONNX.value},
    ".skops": {ModelFormat.SKOPS.value},
    ".npy": {".npy"},
    ".npz": {".npz"},
    **{suffix: _TORCH_CLAIM for suffix in _TORCH_EXTENSIONS},
}
_MAX_SAFETENSORS_HEADER = 100_000_000
_NPY_MAGIC = b"\x93NUMPY"
_LEGACY_TORCH_PICKLES = 5  # magic number, protocol, sys info, the data, the storage keys


class Verdict(str, enum.Enum):
    """Whether loading a file is safe."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    ERROR = "error"


@dataclass(frozen=True)
class ModelFileReport:
    """What scanning one model file found."""

    path: Path
    claimed_format: str
    detected_format: str
    verdict: Verdict
    findings: tuple[str, ...]


class _Unreadable(Exception):
    """The file cannot be read as the format it is: a finding, verdict error."""


def scan_model_file(path: Path) -> ModelFileReport:
    """Scan the model file at ``path`` without loading it; a non-safe verdict lists the reasons."""
    path = Path(path)
    claimed = path.suffix.lower() or "none"
    try:
        detected = ".npy" if _is_npy(path) else ".npz" if _is_npz(path) else sniff_format(path).value
    except (BastionError, OSError) as exc:
        return ModelFileReport(path, claimed, "unreadable", Verdict.ERROR, (f"{path}: {exc}",))
    findings: list[str] = []
    expected = _CLAIMS.get(claimed)
    if expected is not None and detected not in expected:
        findings.append(f"{path} claims {claimed} by its extension but its content is {detected}")
    try:
        unsafe = _check(path, detected, findings)
    except _Unreadable as exc:
        findings.append(f"{path}: {exc}")
        return ModelFileReport(path, claimed, detected, Verdict.ERROR, tuple(findings))
    verdict = Verdict.UNSAFE if unsafe else Verdict.ERROR if findings else Verdict.SAFE
    return ModelFileReport(path, claimed, detected, verdict, tuple(findings))


def _check(path: Path, detected: str, findings: list[str]) -> bool:
    """Run the format's own check, adding findings; True when loading the file could run code."""
    if detected == ".npy":
        return _check_npy(path.read_bytes(), findings, str(path))
    if detected == ".npz":
        return _check_npz(path, findings)
    if detected == ModelFormat.PICKLE.value:
        torch_legacy = path.suffix.lower() in _TORCH_EXTENSIONS
        count = _LEGACY_TORCH_PICKLES if torch_legacy else 1
        return _scan_stream(path.read_bytes(), findings, str(path), torch=torch_legacy, count=count)
    if detected in (ModelFormat.TORCH_PICKLE.value, ModelFormat.TORCHSCRIPT.value):
        return _check_torch_zip(path, detected, findings)
    if detected == ModelFormat.SAFETENSORS.value:
        _check_safetensors(path)
        return False
    if detected == ModelFormat.ONNX.value:
        _check_onnx(path)
        return False
    if detected == ModelFormat.SKOPS.value:
        return False  # skops checks its own trusted types when it loads
    raise _Unreadable(f"format {detected} is not one Bastion can check")


def _scan_stream(data: bytes, findings: list[str], where: str, *, torch: bool, count: int) -> bool:
    """Scan ``count`` consecutive pickles (legacy torch files hold five); True when unsafe."""
    scanner = _TorchScanner(data) if torch else pickles._Scanner(data)
    try:
        for _ in range(count):
            scanner.scan(depth=0)
            if scanner.stream.tell() >= scanner.size:
                break
    except pickles._Refused as exc:
        scanner.reasons.append(str(exc))
    except ValueError as exc:
        scanner.reasons.append(f"not a well-formed pickle: {exc}")
    for reason in dict.fromkeys(scanner.reasons):
        findings.append(f"{where}: {reason}")
    return bool(scanner.reasons)


def _check_torch_zip(path: Path, detected: str, findings: list[str]) -> bool:
    """Scan every pickle in a PyTorch archive (TorchScript's data.pkl is read by torch's own C++ unpickler)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.endswith(".pkl")]
            if detected == ModelFormat.TORCHSCRIPT.value:
                members = [n for n in members if n.split("/", 1)[-1] == "constants.pkl"]
            blobs = {name: archive.read(name) for name in members}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _Unreadable(f"damaged zip archive: {exc}") from exc
    if not blobs:
        raise _Unreadable("a PyTorch archive without a pickle to scan")
    unsafe = False
    for name, blob in blobs.items():
        unsafe |= _scan_stream(blob, findings, f"{path}!{name}", torch=True, count=1)
    return unsafe


class _TorchScanner(pickles._Scanner):
    """The allowlist scanner, admitting torch's tensor globals and its ('storage', ...) persistent ids."""

    def scan(self, depth: int) -> None:
        machine = _TorchMachine(self, depth)
        for opcode, arg, pos in pickles._ops(self.stream):
            machine.step(opcode.name, arg, pos)
            if opcode.name == "STOP":
                return

    def record(self, module: str, name: str) -> Any:
        module, name = pickles.python3_name(module, name)
        self.found.append((module, name))
        if (module, name) not in TORCH_SAFE_GLOBALS:
            reason = pickles.refusal_reason(module, name)
            if reason is not None:
                self.reasons.append(reason)
        return pickles._Global(module, name)


class _TorchMachine(pickles._Machine):
    def step(self, name: str, arg: Any, pos: int) -> None:
        if name == "BINPERSID":
            (pid,) = self._take(1)
            if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage" and _is_storage(pid[1])):
                raise pickles._Refused(f"persistent id {pid!r} at offset {pos} is not a torch storage reference")
            self.stack.append(pickles._UNKNOWN)
            return
        super().step(name, arg, pos)


def _is_storage(value: object) -> bool:
    """A torch storage class from the allowlist (zip checkpoints hold 5-tuples, legacy ones 6-tuples)."""
    return (
        isinstance(value, pickles._Global)
        and (value.module, value.name) in TORCH_SAFE_GLOBALS
        and value.name.endswith("Storage")
    )


def _is_npy(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(6) == _NPY_MAGIC


def _is_npz(path: Path) -> bool:
    """A zip archive (numpy.savez) whose members are all .npy arrays."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return bool(names) and all(name.endswith(".npy") for name in names)


def _check_npz(path: Path, findings: list[str]) -> bool:
    """Every array of a numpy.savez archive, as :func:`_check_npy` checks one .npy file."""
    unsafe = False
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                unsafe |= _check_npy(archive.read(name), findings, f"{path}!{name}")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _Unreadable(f"damaged .npz archive: {exc}") from exc
    return unsafe


def _check_npy(data: bytes, findings: list[str], where: str) -> bool:
    """An object-dtype .npy is a pickle after its header: scan it; otherwise the data must fit the file."""
    if len(data) < 10:
        raise _Unreadable("truncated .npy header")
    major = data[6]
    width = 2 if major == 1 else 4
    length = int.from_bytes(data[8 : 8 + width], "little")
    start = 8 + width + length
    if start > len(data):
        raise _Unreadable("the .npy header runs past the end of the file")
    try:
        header = ast.literal_eval(data[8 + width : start].decode("latin1"))  # literals only: runs no code
        descr, shape = header["descr"], header["shape"]
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise _Unreadable(f"the .npy header does not parse: {exc}") from exc
    if not isinstance(descr, str) or descr.lstrip("<>|=").startswith("O"):
        return _scan_stream(data[start:], findings, f"{where} (object array)", torch=False, count=1)
    import numpy as np

    needed = math.prod(shape) * np.dtype(descr).itemsize
    if start + needed > len(data):
        raise _Unreadable(f"truncated .npy: {needed} data bytes expected, {len(data) - start} present")
    return False


def _check_safetensors(path: Path) -> None:
    """Header length within bounds, a JSON header, and every tensor's offsets inside the data."""
    data = path.read_bytes()
    if len(data) < 8:
        raise _Unreadable("truncated safetensors file: no header length")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(_MAX_SAFETENSORS_HEADER, len(data) - 8):
        raise _Unreadable(f"safetensors header length {length} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Unreadable(f"safetensors header is not JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise _Unreadable("safetensors header is not a JSON object")
    body = len(data) - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= body):
            raise _Unreadable(
                f"truncated safetensors file: tensor {name!r} offsets {offsets} outside {body} data bytes"
            )


def _check_onnx(path: Path) -> None:
    """Parse with onnx when it is installed (protobuf only: nothing runs), else check the first field tag."""
    try:
        import onnx
    except ImportError:
        if path.read_bytes()[:1] != b"\x08":
            raise _Unreadable("not an ONNX protobuf (no ir_version field first)") from None
        return
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # the protobuf parser raises its own DecodeError and others
        raise _Unreadable(f"ONNX model does not parse: {exc}") from exc
