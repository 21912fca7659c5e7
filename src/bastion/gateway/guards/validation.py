"""The validation guard: each endpoint's body checked field by field and decoded safely before anything uses it.

JSON bodies go through :func:`~bastion.gateway.decode.parse_json_body` (UTF-8, depth, duplicate
keys) and then a per-endpoint field check that refuses unknown fields; model inputs through
:func:`~bastion.gateway.decode.decode_json_inputs`; uploaded images through
:func:`~bastion.gateway.decode.decode_image` (format sniffed from the content, pixel count checked
before decoding).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import numpy as np
from starlette.datastructures import UploadFile
from starlette.responses import Response

from bastion.errors import RequestRejectedError
from bastion.gateway.call import Call, Handler
from bastion.gateway.decode import InputSpec, decode_image, decode_json_inputs, parse_json_body

if TYPE_CHECKING:
    from bastion.gateway.service import Gateway

__all__ = ["Validation", "check_fields", "check_label", "check_text"]

_IMAGE_TYPES = ("image/", "application/octet-stream")
_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_TEXT = 2000
# JSON bodies up to this size are decoded on the event loop (well under a millisecond); larger ones on a worker thread.
_INLINE_BODY = 64 * 1024
DECISIONS = ("approve", "reject", "dismiss", "confirm")


class Validation:
    """Fills ``call.payload`` (checked fields) and ``call.inputs`` (decoded model inputs)."""

    name = "validation"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.spec: InputSpec = gateway.spec
        self.max_depth = gateway.config.validation.max_json_depth

    async def __call__(self, call: Call, call_next: Handler) -> Response:
        check = _CHECKS.get(call.endpoint)
        if check is not None and call.request.method == "POST":
            await check(self, call)
        return await call_next(call)

    async def _predict(self, call: Call) -> None:
        fields, image = await self._read(call, allowed={"inputs"}, required=())
        call.inputs = await self._inputs(fields, image, batch=True, size=len(await call.body()))

    async def _submission(self, call: Call) -> None:
        fields, image = await self._read(call, allowed={"inputs", "label"}, required=("label",))
        call.inputs = await self._inputs(fields, image, batch=False, size=len(await call.body()))
        call.payload = {"label": check_label(fields.get("label"), self.gateway.model.num_classes)}

    async def _feedback(self, call: Call) -> None:
        fields, _ = await self._read(
            call, allowed={"prediction_id", "correct", "label"}, required=("prediction_id", "correct")
        )
        correct = fields["correct"]
        if not isinstance(correct, bool):
            raise _invalid("bad_field", f"'correct' must be true or false, got {_show(correct)}")
        label = fields.get("label")
        call.payload = {
            "prediction_id": check_id(fields["prediction_id"], "prediction_id"),
            "correct": correct,
            "label": None if label is None else check_label(label, self.gateway.model.num_classes),
        }

    async def _decision(self, call: Call) -> None:
        fields, _ = await self._read(call, allowed={"decision", "reason"}, required=("decision",))
        decision = fields["decision"]
        if decision not in DECISIONS:
            raise _invalid("bad_field", f"'decision' must be one of {list(DECISIONS)}, got {_show(decision)}")
        call.payload = {"decision": decision, "reason": check_text(fields.get("reason", ""), "reason")}

    async def _read(
        self, call: Call, *, allowed: set[str], required: tuple[str, ...]
    ) -> tuple[dict[str, Any], bytes | None]:
        """The body's fields (JSON object or form) and the uploaded image bytes, if any."""
        content_type = call.request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await call.body()
        image: bytes | None = None
        if content_type == "application/json":
            parsed = parse_json_body(body, max_depth=self.max_depth)
            fields: dict[str, Any] = dict(parsed) if isinstance(parsed, Mapping) else {}
        elif content_type == "multipart/form-data":
            fields, image = await _read_form(call, body)
        elif content_type.startswith(_IMAGE_TYPES) and "inputs" in allowed:
            fields, image = {}, body
        else:
            expected = (
                "application/json, multipart/form-data or an image" if "inputs" in allowed else "application/json"
            )
            raise RequestRejectedError(
                "unsupported_media_type", f"Content-Type {content_type or '(none)'!r}; expected {expected}", status=415
            )
        check_fields(fields, allowed=allowed | ({"file"} if image is not None else set()), required=required)
        if image is None and "inputs" in allowed and "inputs" not in fields:
            raise _invalid("missing_field", "send 'inputs' (a JSON array) or an image upload in the form field 'file'")
        return fields, image

    async def _inputs(self, fields: Mapping[str, Any], image: bytes | None, *, batch: bool, size: int) -> np.ndarray:
        if image is not None:
            return await anyio.to_thread.run_sync(decode_image, image, self.spec)
        if size <= _INLINE_BODY:
            inputs = decode_json_inputs(fields["inputs"], self.spec)  # small: cheaper than a thread hop
        else:
            inputs = await anyio.to_thread.run_sync(decode_json_inputs, fields["inputs"], self.spec)
        if not batch and inputs.shape[0] != 1:
            raise _invalid("bad_shape", f"a submission holds one example, got a batch of {inputs.shape[0]}")
        return inputs


_CHECKS = {
    "predict": Validation._predict,
    "submissions": Validation._submission,
    "feedback": Validation._feedback,
    "review.decide": Validation._decision,
}


async def _read_form(call: Call, body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """A multipart form with at most one file (field ``file``) and a few short text fields."""
    call.request._body = body  # Starlette reads a cached body instead of the (already consumed) stream
    try:
        form = await call.request.form(max_files=1, max_fields=8, max_part_size=1024 * 1024)
    except Exception as error:  # python-multipart and Starlette raise several types for a bad form
        raise _invalid("malformed_form", f"the multipart form could not be parsed: {type(error).__name__}") from None
    fields: dict[str, Any] = {}
    image: bytes | None = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "file":
                raise _invalid("unknown_field", f"unexpected file field {name!r}; send the image as 'file'")
            image = await value.read()
        else:
            fields[name] = _form_value(name, value)
    return fields, image


def _form_value(name: str, value: str) -> object:
    if name == "label":
        return int(value) if value.strip().lstrip("-").isdigit() else value
    return value


def check_fields(fields: Mapping[str, Any], *, allowed: set[str], required: tuple[str, ...]) -> None:
    """Refuse unknown fields (naming them and the allowed ones) and missing required ones."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise _invalid("unknown_field", f"unknown fields {[_short(u) for u in unknown]}; expected {sorted(allowed)}")
    missing = [name for name in required if name not in fields]
    if missing:
        raise _invalid("missing_field", f"missing fields {missing}")


def check_label(value: object, num_classes: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < num_classes:
        raise _invalid("bad_label", f"'label' must be an integer class in [0, {num_classes - 1}], got {_show(value)}")
    return value


def check_id(value: object, name: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise _invalid("bad_field", f"{name!r} must be a 32-character hex id, got {_show(value)}")
    return value


def check_text(value: object, name: str) -> str:
    """Free text a person reads: any printable characters, no NUL or other control codes, bounded length."""
    if not isinstance(value, str):
        raise _invalid("bad_field", f"{name!r} must be a string, got {_show(value)}")
    if len(value) > MAX_TEXT:
        raise _invalid("text_too_long", f"{name!r} is {len(value)} characters; the limit is {MAX_TEXT}")
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value) or "\x7f" in value:
        raise _invalid("bad_text", f"{name!r} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _invalid("bad_text", f"{name!r} is not valid Unicode (lone surrogates)") from None
    return value


def _invalid(code: str, detail: str) -> RequestRejectedError:
    return RequestRejectedError(code, detail, status=422)


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
