"""Safe decoding of what a gateway request carries: a JSON body, nested-list inputs and uploaded images.

Every function here either returns a value of the documented type or raises
:class:`~bastion.errors.RequestRejectedError` with a stable ``code``; no input makes them raise anything
else, and none allocates memory in proportion to a size the input merely *declares* (a pixel count
in an image header, a nesting depth): those are checked before the work is done.

Codes, with their HTTP status:

==========================  ======  =====================================================
``bad_body``                400     not bytes, or the JSON top level is not an object
``invalid_utf8``            400     the body is not UTF-8
``malformed_json``          400     not JSON (line and column named)
``too_deep``                400     JSON nested deeper than ``max_depth``
``duplicate_key``           400     an object repeats a key
``bad_shape``               422     inputs not a rectangular nested list of the model's shape
``bad_dtype``               422     a leaf that is not a number (booleans included)
``non_finite``              422     NaN or +-Infinity among the inputs
``out_of_range``            422     a value outside the model's bounds
``empty_batch``             422     no examples
``batch_too_large``         413     more examples than ``max_batch``
``image_too_large``         413     more bytes than ``max_image_bytes``
``too_many_pixels``         413     width x height over ``max_pixels`` (read from the header)
``unsupported_format``      415     an image format outside the allowlist, or none recognised
``images_not_accepted``     415     the model's input is not an image (C, H, W) with C in {1, 3}
``corrupt_image``           422     truncated or corrupt image data
==========================  ======  =====================================================

``NaN`` and ``Infinity`` literals: :func:`parse_json_body` accepts them (Python's parser does, and
they are valid numbers for any field other than the inputs); :func:`decode_json_inputs` rejects
them as ``non_finite``, so a model never sees them.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import struct
import sys
import zlib
from dataclasses import dataclass
from typing import NoReturn, TypeGuard

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from bastion.errors import BastionError, ConfigError, RequestRejectedError

__all__ = [
    "InputSpec",
    "declared_image_format",
    "decode_image",
    "decode_json_inputs",
    "parse_json_body",
]

logger = logging.getLogger(__name__)

# A value shown back to a client is cut to this many characters: details name the bad value,
# they must not echo a megabyte of it.
_SHOWN_CHARS = 60

_FLOAT32_MAX = float(np.finfo(np.float32).max)

# Each rejection code with its HTTP status (the table in the module docstring).
_STATUS = {
    "bad_body": 400,
    "invalid_utf8": 400,
    "malformed_json": 400,
    "too_deep": 400,
    "duplicate_key": 400,
    "bad_shape": 422,
    "bad_dtype": 422,
    "non_finite": 422,
    "out_of_range": 422,
    "empty_batch": 422,
    "batch_too_large": 413,
    "image_too_large": 413,
    "too_many_pixels": 413,
    "unsupported_format": 415,
    "images_not_accepted": 415,
    "corrupt_image": 422,
}


def _reject(code: str, detail: str) -> RequestRejectedError:
    """The rejection for ``code``, with the status the module docstring lists for it."""
    return RequestRejectedError(code, detail, status=_STATUS[code])


# ---------------------------------------------------------------------------------------------
# The specification of a model's inputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """What a deployed model accepts: its input shape and range, and the gateway's size limits."""

    input_shape: tuple[int, ...]  # one example, e.g. (1, 28, 28) for an image or (30,) for tabular
    bounds: tuple[float, float]  # the model's input range, e.g. (0.0, 1.0)
    max_batch: int = 64  # examples per request
    image_formats: tuple[str, ...] = ("PNG", "JPEG")  # Pillow format names allowed for uploads
    max_pixels: int = 4_000_000  # width x height, checked from the header before decoding
    max_image_bytes: int = 10_000_000  # size of an upload

    def __post_init__(self) -> None:
        _check_shape(self.input_shape)
        _check_bounds(self.bounds)
        for name in ("max_batch", "max_pixels", "max_image_bytes"):
            _check_positive_int(name, getattr(self, name))
        _check_formats(self.image_formats)


def _check_shape(shape: object) -> None:
    if not (isinstance(shape, tuple) and shape and all(_is_positive_int(d) for d in shape)):
        raise ConfigError(f"expected input_shape as a non-empty tuple of positive ints, got {shape!r}")


def _check_bounds(bounds: object) -> None:
    pair = bounds if isinstance(bounds, tuple) and len(bounds) == 2 else (None, None)
    low, high = (float(b) if _is_real(b) else math.nan for b in pair)
    if not -_FLOAT32_MAX <= low < high <= _FLOAT32_MAX:  # NaN (a missing or bad value) fails every comparison
        raise ConfigError(f"expected bounds as (low, high), finite float32 values with low < high, got {bounds!r}")


def _check_positive_int(name: str, value: object) -> None:
    if not _is_positive_int(value):
        raise ConfigError(f"expected {name} to be a positive int, got {value!r}")


def _check_formats(formats: object) -> None:
    Image.init()  # registers every Pillow plugin, so that Image.OPEN lists all readable formats
    known = sorted(Image.OPEN)
    if not (isinstance(formats, tuple) and formats and all(f in Image.OPEN for f in formats)):
        raise ConfigError(
            f"expected image_formats as a non-empty tuple of Pillow format names {known}, got {formats!r}"
        )


def _is_positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_real(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value: object) -> str:
    """``repr(value)``, cut short enough to go back to a client."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


# ---------------------------------------------------------------------------------------------
# The JSON body
# ---------------------------------------------------------------------------------------------

# A JSON string: from its opening quote to its closing one, or to the end of the body when it has
# none. The unrolled form never backtracks, so stripping strings stays linear even on hostile input
# (a body of escaped quotes); the \\?\Z branch makes an unterminated string swallow the rest.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = np.zeros(256, dtype=np.int8)
_BRACKET_STEP[list(b"[{")] = 1
_BRACKET_STEP[list(b"]}")] = -1
_DEPTH_CHUNK = 1 << 16


def parse_json_body(body: bytes, *, max_depth: int = 32) -> object:
    """Parse a request body into a JSON object (a dict), refusing bad UTF-8, bad JSON, deep nesting and duplicate keys.

    The nesting depth is measured on the raw bytes before the parser runs, so a body of 10^5
    brackets is refused in linear time instead of exhausting the parser's recursion. ``NaN`` and
    ``Infinity`` are accepted here (see the module docstring).
    """
    if not _is_positive_int(max_depth):
        raise ConfigError(f"expected max_depth to be a positive int, got {max_depth!r}")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise _reject("bad_body", f"expected the body as bytes, got {type(body).__name__}")
    raw = bytes(body)
    text = _utf8(raw)
    depth = _bracket_depth(raw, stop_above=max_depth)
    if depth > max_depth:
        raise _reject("too_deep", f"JSON nested more than {max_depth} levels deep; the limit is {max_depth}")
    value = _loads(text)
    if not isinstance(value, dict):
        raise _reject("bad_body", f"expected a JSON object at the top level, got {_json_kind(value)}")
    return value


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = raw[error.start : error.start + 4]
        raise _reject(
            "invalid_utf8", f"the body is not valid UTF-8: byte {error.start} starts {bad!r}; expected UTF-8 JSON"
        ) from None


def _bracket_depth(raw: bytes, *, stop_above: int) -> int:
    """The deepest bracket nesting outside strings; stops counting once it passes ``stop_above``."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    depth, deepest = 0, 0
    for start in range(0, len(brackets), _DEPTH_CHUNK):
        steps = _BRACKET_STEP[np.frombuffer(brackets[start : start + _DEPTH_CHUNK], dtype=np.uint8)]
        running = depth + np.cumsum(steps, dtype=np.int64)
        deepest = max(deepest, int(running.max()))
        depth = int(running[-1])
        if deepest > stop_above:
            break
    return deepest


def _loads(text: str) -> object:
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicates)
    except json.JSONDecodeError as error:
        raise _reject(
            "malformed_json", f"malformed JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:  # a safety net: the bracket scan already refuses deep bodies
        raise _reject("too_deep", "JSON nested too deeply to parse") from None
    except ValueError as error:  # e.g. an integer literal over Python's 4300-digit limit
        raise _reject("malformed_json", f"malformed JSON: {error}") from None


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise _reject("duplicate_key", f"the JSON object repeats the key {_shown(key)}; expected unique keys")
        obj[key] = value
    return obj


def _json_kind(value: object) -> str:
    """What a JSON value is, in words: "an array", "a number", "null" ..."""
    if _is_number(value):
        return "a number"
    kinds = {list: "an array", str: "a string", bool: "a boolean", type(None): "null", dict: "an object"}
    return kinds.get(type(value), f"a {type(value).__name__}")


# ---------------------------------------------------------------------------------------------
# Nested-list inputs
# ---------------------------------------------------------------------------------------------

_NUMBER_TYPES = frozenset({int, float})


def decode_json_inputs(payload: object, spec: InputSpec) -> np.ndarray:
    """The ``inputs`` field (one example or a batch of nested lists) as a float32 array ``(n, *input_shape)``.

    A cheap walk down the first elements finds the nesting depth (which must be ``len(input_shape)``
    for one example or one more for a batch) and the batch size is refused early when too large;
    a level-by-level pass then checks the nesting is rectangular and every leaf a number, and the
    flat leaves are converted with one ``np.asarray``.
    """
    if not isinstance(payload, list):
        raise _reject(
            "bad_shape",
            f"expected inputs as a nested list of numbers of shape {_expected(spec)}, got {_json_kind(payload)}",
        )
    if not payload:
        raise _reject("empty_batch", "inputs is an empty list; expected at least one example")
    full_shape = _full_shape(payload, spec)
    leaves = _leaves(payload, full_shape, spec)
    values = _as_float64(leaves, full_shape)
    _check_finite(values, full_shape)
    _check_range(values, full_shape, spec.bounds)
    batch = values.astype(np.float32).reshape(full_shape)
    return batch if len(full_shape) > len(spec.input_shape) else batch[None]  # one example: a batch of one


def _expected(spec: InputSpec) -> str:
    return f"{spec.input_shape} or (n, {', '.join(map(str, spec.input_shape))})"


def _full_shape(payload: list[object], spec: InputSpec) -> tuple[int, ...]:
    """The payload's shape, judged from its first elements: ``input_shape`` or ``(n, *input_shape)``."""
    rank = len(spec.input_shape)
    leading = _leading_shape(payload, limit=rank + 3)
    if len(leading) == rank + 1 and len(payload) > spec.max_batch:
        raise _reject("batch_too_large", f"the batch has {len(payload)} examples; the limit is {spec.max_batch}")
    if leading == spec.input_shape or leading[1:] == spec.input_shape:
        return leading
    shown = "x".join(map(str, leading[: rank + 2])) + ("x..." if len(leading) > rank + 2 else "")
    raise _reject("bad_shape", f"inputs has shape ({shown}); expected {_expected(spec)}")


def _leading_shape(payload: list[object], *, limit: int) -> tuple[int, ...]:
    """The lengths met walking down first elements, at most ``limit`` of them (no recursion)."""
    lengths: list[int] = []
    node: object = payload
    while isinstance(node, list) and len(lengths) < limit:
        lengths.append(len(node))
        if not node:
            break
        node = node[0]
    return tuple(lengths)


def _leaves(payload: list[object], full_shape: tuple[int, ...], spec: InputSpec) -> list[object]:
    """All leaves in C order, after checking every level is a list of the right length and every leaf a number."""
    level: list[object] = [payload]
    for axis, size in enumerate(full_shape):
        below: list[object] = []
        for flat, node in enumerate(level):
            if not isinstance(node, list) or len(node) != size:
                where = _path(np.unravel_index(flat, full_shape[:axis])) if axis else "inputs"
                got = f"a list of {len(node)}" if isinstance(node, list) else _json_kind(node)
                raise _reject("bad_shape", f"{where} is {got}; expected a list of {size} (shape {_expected(spec)})")
            below.extend(node)
        level = below
    if not all(leaf.__class__ in _NUMBER_TYPES for leaf in level):  # the fast test; JSON gives exact types
        bad = next((i for i, leaf in enumerate(level) if not _is_number(leaf)), None)
        if bad is not None:
            _reject_leaf(level[bad], _path(np.unravel_index(bad, full_shape)), spec)
    return level


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _reject_leaf(leaf: object, where: str, spec: InputSpec) -> NoReturn:
    if isinstance(leaf, list):
        raise _reject("bad_shape", f"{where} is a list, nested deeper than shape {_expected(spec)} allows")
    raise _reject("bad_dtype", f"{where} is {_shown(leaf)} ({_json_kind(leaf)}); expected a number")


def _path(index: tuple[np.intp, ...] | tuple[int, ...]) -> str:
    return "inputs" + "".join(f"[{int(i)}]" for i in index)


def _as_float64(leaves: list[object], full_shape: tuple[int, ...]) -> np.ndarray:
    try:
        return np.asarray(leaves, dtype=np.float64)
    except OverflowError:  # an integer literal beyond float64 (JSON allows 4300 digits)
        bad = next(i for i, leaf in enumerate(leaves) if isinstance(leaf, int) and abs(leaf) > sys.float_info.max)
        where = _path(np.unravel_index(bad, full_shape))
        raise _reject("out_of_range", f"{where} is an integer too large for a float ({_shown(leaves[bad])})") from None


def _check_finite(values: np.ndarray, full_shape: tuple[int, ...]) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.argmin(finite))
        where = _path(np.unravel_index(bad, full_shape))
        count = int(finite.size - finite.sum())
        raise _reject("non_finite", f"{where} is {values[bad]} ({count} non-finite values); expected finite numbers")


def _check_range(values: np.ndarray, full_shape: tuple[int, ...], bounds: tuple[float, float]) -> None:
    low, high = bounds
    found_min, found_max = float(values.min()), float(values.max())
    if found_min < low or found_max > high:
        bad = int(np.argmax((values < low) | (values > high)))
        where = _path(np.unravel_index(bad, full_shape))
        raise _reject(
            "out_of_range",
            f"inputs range over [{found_min:g}, {found_max:g}] ({where} is {values[bad]:g}); "
            f"expected values within the model's bounds [{low:g}, {high:g}]",
        )


# ---------------------------------------------------------------------------------------------
# Uploaded images
# ---------------------------------------------------------------------------------------------

# Leading bytes of common image formats, named as Pillow names them. Sniffed without Pillow, so a
# format outside the allowlist is named and refused before any of its parsers runs.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x02\x00", "CUR"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"),
    (b"\xff\x4f\xff\x51", "JPEG2000"),
    (b"qoif", "QOI"),
    (b"DDS ", "DDS"),
    (b"icns", "ICNS"),
    (b"%!PS", "EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
)
_PPM = re.compile(rb"P[1-7]\s")
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1")

# Pillow opens some files as a subtype of the format the allowlist names.
_FORMAT_ALIASES = {"MPO": "JPEG"}

# Modes Pillow holds 16-bit samples in; converting them to "L" would clip at 255, not scale.
_WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

# What Pillow raises on truncated or malformed data, from its parsers and its decoders.
_PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
)


def declared_image_format(data: bytes) -> str | None:
    """The image format the leading bytes declare (a Pillow format name), or None when none is recognised."""
    head = bytes(data[:32])
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand in _AVIF_BRANDS else "HEIF" if brand in _HEIF_BRANDS else None
    return "PPM" if _PPM.match(head) else None


def decode_image(data: bytes, spec: InputSpec) -> np.ndarray:
    """An uploaded image as a float32 array ``(1, C, H, W)`` in the model's bounds.

    The format comes from the content alone; the pixel count from the header is checked against
    ``max_pixels`` before any pixel is decoded (Pillow's own decompression-bomb limit is a global
    that a host application may have changed, so it is not relied on). The image is converted to
    grayscale or RGB (alpha dropped), resized bilinearly to the model's H x W, and scaled from
    0..255 (0..65535 for 16-bit images) into ``spec.bounds``.
    """
    channels, height, width = _image_shape(spec)
    raw = _image_bytes(data, spec)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # The host application switched off Pillow's truncation errors; this gateway does not switch
        # them back on (that would change every other user of Pillow), so it refuses to decode.
        logger.error("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; refusing to decode uploads")
        raise BastionError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set; truncated uploads would pass unnoticed")
    with _open_image(raw, spec) as image:
        _check_pixels(image.size, spec)
        _load(image)
        try:
            pixels = _pixels(image, channels, (width, height))
        except _PILLOW_ERRORS as error:  # a mode Pillow cannot convert, such as LAB
            raise _unsupported(f"the {image.format} image's mode {image.mode} cannot be converted: {error}") from None
    low, high = spec.bounds
    scaled = np.clip(low + pixels * (high - low), low, high).astype(np.float32)
    return np.ascontiguousarray(scaled[None])


def _image_shape(spec: InputSpec) -> tuple[int, int, int]:
    shape = spec.input_shape
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise _reject(
            "images_not_accepted",
            f"the model's input shape is {shape}; images are accepted only for (C, H, W) inputs with C in (1, 3)",
        )
    return shape[0], shape[1], shape[2]


def _image_bytes(data: object, spec: InputSpec) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _reject("bad_body", f"expected the image as bytes, got {type(data).__name__}")
    if len(data) > spec.max_image_bytes:
        raise _reject("image_too_large", f"the image is {len(data)} bytes; the limit is {spec.max_image_bytes}")
    if not data:
        raise _reject("corrupt_image", "the image is empty (0 bytes); expected image data")
    return bytes(data)


def _open_image(raw: bytes, spec: InputSpec) -> ImageFile.ImageFile:
    """Identify the image from its bytes (headers only) among the allowed formats."""
    allowed = ", ".join(spec.image_formats)
    declared = declared_image_format(raw)
    if declared is not None and declared not in spec.image_formats:
        raise _unsupported(f"the upload is a {declared} image; allowed formats: {allowed}")
    try:
        image = Image.open(io.BytesIO(raw), formats=spec.image_formats)
    except UnidentifiedImageError:
        if declared is None:
            raise _unsupported(f"no image format recognised (leading bytes {raw[:8]!r}); allowed: {allowed}") from None
        raise _reject("corrupt_image", f"the {declared} image header is corrupt") from None
    except Image.DecompressionBombError as error:
        raise _reject("too_many_pixels", f"image refused by Pillow: {error}") from None
    except _PILLOW_ERRORS as error:
        raise _reject("corrupt_image", f"the image header is corrupt: {error}") from None
    found = _FORMAT_ALIASES.get(image.format or "", image.format)
    if found not in spec.image_formats:  # a safety net: Pillow was only offered the allowed plugins
        image.close()
        raise _unsupported(f"the upload is a {image.format} image; allowed formats: {allowed}")
    return image


def _unsupported(detail: str) -> RequestRejectedError:
    return _reject("unsupported_format", detail)


def _check_pixels(size: tuple[int, int], spec: InputSpec) -> None:
    width, height = size
    if width * height > spec.max_pixels:
        raise _reject(
            "too_many_pixels",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {spec.max_pixels}",
        )
    if width < 1 or height < 1:
        raise _reject("corrupt_image", f"the image is {width}x{height} pixels; expected at least 1x1")


def _load(image: ImageFile.ImageFile) -> None:
    """Decode the pixels (after the header checks); truncated or corrupt data is rejected."""
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise _reject("too_many_pixels", f"image refused by Pillow: {error}") from None
    except _PILLOW_ERRORS as error:
        logger.debug("image decoding failed: %r", error)
        raise _reject("corrupt_image", f"the {image.format} image is truncated or corrupt: {error}") from None


def _pixels(image: Image.Image, channels: int, size: tuple[int, int]) -> np.ndarray:
    """The image as (C, H, W) float values in [0, 1], in the model's channels and size."""
    converted, full_scale = _to_channels(image, channels)
    if converted.size != size:
        converted = converted.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.float64) / full_scale
    if array.ndim == 2:  # L or F: one plane, repeated for an RGB model
        return np.repeat(array[None], channels, axis=0)
    return array.transpose(2, 0, 1)


def _to_channels(image: Image.Image, channels: int) -> tuple[Image.Image, float]:
    """The image in mode L (1 channel) or RGB (3), or F for 16-bit images, with its full-scale value."""
    if image.mode in _WIDE_MODES:
        return image.convert("F"), 65535.0
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # Pillow warns when a palette with transparency goes straight to RGB
    return image.convert("L" if channels == 1 else "RGB"), 255.0
