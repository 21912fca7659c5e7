"""Recognise a model file's format from its bytes, not its name."""

from __future__ import annotations

import enum
import zipfile
from pathlib import Path

from bastion.errors import ModelError, NotFoundError

__all__ = ["ModelFormat", "sniff_format"]

_PICKLE_PROTOCOL_OPCODE = 0x80
_SAFETENSORS_HEADER_MAX = 100_000_000


class ModelFormat(str, enum.Enum):
    """Model file formats Bastion can tell apart."""

    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch.export"
    TORCH_PICKLE = "pytorch pickle checkpoint"
    PICKLE = "pickle"
    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    UNKNOWN = "unknown"


def sniff_format(path: Path) -> ModelFormat:
    """The format of the file at ``path``, read from its content."""
    if not path.exists():
        raise NotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected a model file, got a folder: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    if zipfile.is_zipfile(path):
        return _sniff_zip(path)
    if head[:1] == bytes([_PICKLE_PROTOCOL_OPCODE]):
        return ModelFormat.PICKLE
    if len(head) >= 9 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len < _SAFETENSORS_HEADER_MAX:
            return ModelFormat.SAFETENSORS
    if path.suffix.lower() == ".onnx" and head[:1] == b"\x08":
        return ModelFormat.ONNX
    return ModelFormat.UNKNOWN


def _sniff_zip(path: Path) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"model file {path} is a damaged zip archive: {exc}") from exc
    parts = [name.split("/", 1)[-1] for name in names]
    if any(p.startswith("code/") for p in parts) and "constants.pkl" in parts:
        return ModelFormat.TORCHSCRIPT
    if "models/model.json" in parts or any(p.startswith("models/") and p.endswith(".json") for p in parts):
        return ModelFormat.TORCH_EXPORT
    if "data.pkl" in parts:
        return ModelFormat.TORCH_PICKLE
    return ModelFormat.UNKNOWN
