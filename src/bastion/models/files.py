"""Recognise a model file's format from its bytes, not its name."""

from __future__ import annotations

import enum
import pickletools
import zipfile
from pathlib import Path

from bastion.errors import ModelError, NotFoundError

__all__ = ["ModelFormat", "sniff_format"]

_PICKLE_PROTOCOL_OPCODE = 0x80
_SAFETENSORS_HEADER_MAX = 100_000_000
_ZIP_LOCAL_HEADER = b"PK\x03\x04"
# Protocol 0 and 1 pickles have no magic number; this much of the file is parsed to recognise one.
_PICKLE_SNIFF_BYTES = 1 << 20


class ModelFormat(str, enum.Enum):
    """Model file formats Bastion can tell apart."""

    TORCHSCRIPT = "torchscript"
    TORCH_EXPORT = "torch.export"
    TORCH_PICKLE = "pytorch pickle checkpoint"
    PICKLE = "pickle"
    SAFETENSORS = "safetensors"
    ONNX = "onnx"
    SKOPS = "skops"
    UNKNOWN = "unknown"


def sniff_format(path: Path) -> ModelFormat:
    """The format of the file at ``path``, read from its content."""
    if not path.exists():
        raise NotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ModelError(f"expected a model file, got a folder: {path}")
    with path.open("rb") as f:
        head = f.read(16)
    # A zip that lost its end (truncated download) still starts with a local header: report it as damaged.
    if zipfile.is_zipfile(path) or head.startswith(_ZIP_LOCAL_HEADER):
        return _sniff_zip(path)
    # Before the pickle check: a safetensors header length can start with the byte 0x80 (e.g. 128).
    if _is_safetensors(head, path.stat().st_size):
        return ModelFormat.SAFETENSORS
    if _is_pickle(path, head):
        return ModelFormat.PICKLE
    if path.suffix.lower() == ".onnx" and head[:1] == b"\x08":
        return ModelFormat.ONNX
    return ModelFormat.UNKNOWN


def _is_safetensors(head: bytes, size: int) -> bool:
    """An 8-byte little-endian header length that fits in the file, then a JSON object."""
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= min(_SAFETENSORS_HEADER_MAX, size - 8)


def _is_pickle(path: Path, head: bytes) -> bool:
    """Protocol 2+ starts with the PROTO opcode; protocols 0 and 1 are recognised by parsing up to STOP."""
    if head[:1] == bytes([_PICKLE_PROTOCOL_OPCODE]):
        return True
    with path.open("rb") as f:
        data = f.read(_PICKLE_SNIFF_BYTES)
    if not data:
        return False
    try:
        # genops only decodes opcodes and their arguments: it never imports or calls anything.
        for _ in pickletools.genops(data):
            pass
    except ValueError:  # an unknown opcode, a malformed argument, or no STOP in the bytes read
        return False
    return True


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
    if "schema.json" in names:  # skops keeps its schema at the top of the archive, next to .npy arrays
        return ModelFormat.SKOPS
    return ModelFormat.UNKNOWN
