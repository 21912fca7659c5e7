"""The registry of Bastion's own decoders and validators that the pipeline fuzzer feeds (``DECODER_TARGETS``).

Each entry calls one public reader the way Bastion uses it: request decoding in the gateway, the
gateway's configuration loader, the data loaders (fed through a temporary file), a remote model's
answers (through an in-memory HTTP transport) and the audit parsers. Only Bastion's own errors
count as rejections, except where a function is documented never to raise (those accept nothing).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import torch

from bastion.audit.deps import requirements_packages
from bastion.audit.osv import OsvDatabase
from bastion.audit.pickles import scan_pickle
from bastion.data.loaders import load_csv, load_npz
from bastion.errors import BastionError, RequestRejectedError
from bastion.fuzz import strategies
from bastion.fuzz.pipeline import DecoderTarget
from bastion.gateway.config import load_config
from bastion.gateway.decode import InputSpec, declared_image_format, decode_image, decode_json_inputs, parse_json_body
from bastion.models.remote import RemoteClassifier, RemoteConfig, parse_retry_after, safe_url

__all__ = ["DECODER_TARGETS", "IMAGE_SPEC", "TABULAR_SPEC"]

# Small specifications, so that generated inputs often have the right shape and reach the deep checks.
TABULAR_SPEC = InputSpec(input_shape=(2, 3), bounds=(0.0, 1.0), max_batch=4)
IMAGE_SPEC = InputSpec(
    input_shape=(1, 8, 8), bounds=(0.0, 1.0), image_formats=("PNG", "JPEG", "GIF", "BMP"), max_pixels=4096
)
_NOW = 1_700_000_000.0  # a fixed clock for parse_retry_after: findings must not depend on the date


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _json_value(data: bytes) -> object:
    """Raw bytes as a JSON value when they parse as one, else as text (for libFuzzer's raw inputs)."""
    text = _text(data)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return text


def _in_file(suffix: str, read: Callable[[Path], object]) -> Callable[[Any], object]:
    """A call that writes its input (bytes, or text as UTF-8) to a fresh temporary file and reads it back."""

    def call(data: bytes | str) -> object:
        raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
        with tempfile.TemporaryDirectory(prefix="bastion-fuzz-") as folder:
            path = Path(folder) / f"input{suffix}"
            path.write_bytes(raw)
            return read(path)

    return call


def _osv_folder(path: Path) -> object:
    return OsvDatabase.load(path.parent)


def _remote(knowledge: str, field: str) -> Callable[[bytes], object]:
    """A call that has a remote model read ``body`` as the endpoint's answer to a batch of two inputs."""

    def call(body: bytes) -> object:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
        config = RemoteConfig(
            url="http://model.invalid/predict",
            num_classes=3,
            input_shape=(2,),
            knowledge=knowledge,
            response_field=field,
            retries=0,
        )
        with RemoteClassifier(config, transport=transport) as model:
            return model.logits(torch.zeros(2, 2))

    return call


DECODER_TARGETS: dict[str, DecoderTarget] = {
    "decode.parse_json_body": DecoderTarget(
        call=parse_json_body,
        strategy=strategies.json_bodies(),
        expected=(RequestRejectedError,),
        description="a gateway request body: UTF-8, JSON, depth and duplicate keys",
    ),
    "decode.decode_json_inputs": DecoderTarget(
        call=lambda value: decode_json_inputs(value, TABULAR_SPEC),
        strategy=strategies.number_arrays(TABULAR_SPEC.input_shape),
        expected=(RequestRejectedError,),
        from_bytes=_json_value,
        description="the inputs field against an InputSpec: shape, dtype, finite, bounds, batch size",
    ),
    "decode.decode_image": DecoderTarget(
        call=lambda data: decode_image(data, IMAGE_SPEC),
        strategy=strategies.images(),
        expected=(RequestRejectedError,),
        description="an uploaded image: format allowlist, pixel count from the header, truncation",
    ),
    "decode.declared_image_format": DecoderTarget(
        call=declared_image_format,
        strategy=strategies.images(),
        expected=(),
        description="the format an upload's leading bytes declare (never raises)",
    ),
    "gateway.load_config": DecoderTarget(
        call=_in_file(".toml", lambda path: load_config(path, environ={})),
        strategy=strategies.toml_texts(),
        from_bytes=_text,
        description="the gateway's TOML configuration",
    ),
    "data.load_csv": DecoderTarget(
        call=_in_file(".csv", load_csv),
        strategy=strategies.csv_files(),
        description="a user's CSV data file",
    ),
    "data.load_npz": DecoderTarget(
        call=_in_file(".npz", load_npz),
        strategy=strategies.npz_files(),
        description="a user's .npz data file",
    ),
    "models.remote.scores": DecoderTarget(
        call=_remote("scores", "predictions.*.scores"),
        strategy=strategies.remote_bodies(),
        description="a remote model's JSON answer, read as scores through a field path with '*'",
    ),
    "models.remote.labels": DecoderTarget(
        call=_remote("labels", "label"),
        strategy=strategies.remote_bodies(),
        description="a remote model's JSON answer, read as labels",
    ),
    "models.remote.parse_retry_after": DecoderTarget(
        call=lambda text: parse_retry_after(text, _NOW),
        strategy=strategies.retry_after_values(),
        expected=(),
        from_bytes=_text,
        description="a Retry-After header (never raises)",
    ),
    "models.remote.safe_url": DecoderTarget(
        call=safe_url,
        strategy=strategies.retry_after_values().map(lambda text: f"http://u:p@{text}/path?q=1"),
        expected=(),
        description="a URL cut down for logs (never raises)",
        from_bytes=lambda data: f"http://u:p@{_text(data)}/path?q=1",
    ),
    "audit.requirements_packages": DecoderTarget(
        call=_in_file(".txt", requirements_packages),
        strategy=strategies.requirements_files(),
        description="a pip requirements file",
    ),
    "audit.osv": DecoderTarget(
        call=_in_file(".json", _osv_folder),
        strategy=strategies.osv_records(),
        description="one OSV advisory record in a database folder",
    ),
    "audit.scan_pickle": DecoderTarget(
        call=scan_pickle,
        strategy=strategies.pickles(),
        expected=(BastionError,),
        description="the allowlist scan of a pickle's opcodes (never unpickles)",
    ),
}
