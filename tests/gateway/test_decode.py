"""Safe decoding: each rejection code on a real example, valid inputs round-tripping, fuzzing that only rejects."""

from __future__ import annotations

import io
import json
import math
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile
from sklearn.datasets import load_digits

from bastion.errors import BastionError, ConfigError, RequestRejectedError
from bastion.gateway.decode import (
    InputSpec,
    declared_image_format,
    decode_image,
    decode_json_inputs,
    parse_json_body,
)

MNIST = InputSpec(input_shape=(1, 28, 28), bounds=(0.0, 1.0))
TABULAR = InputSpec(input_shape=(30,), bounds=(-5.0, 5.0), max_batch=4)
DIGITS = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0))
CODES = {
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


def rejection(code: str, call: Callable[[], object], match: str | None = None) -> RequestRejectedError:
    """The rejection ``call`` raises, checked to carry ``code``, its status and a detail matching ``match``."""
    with pytest.raises(RequestRejectedError, match=match) as info:
        call()
    assert (info.value.code, info.value.status) == (code, CODES[code])
    return info.value


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def gray(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array.astype(np.uint8), mode="L")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(side: int) -> bytes:
    """A valid 1-bit black PNG of side x side pixels, written chunk by chunk: ~side^2/8 KB of zeros, deflated."""
    row = b"\x00" + b"\x00" * math.ceil(side / 8)  # filter byte "none", then the packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 1000
    block = row * rows_per_block
    idat = b"".join(compressor.compress(block) for _ in range(side // rows_per_block))
    idat += compressor.compress(row * (side % rows_per_block)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------
# parse_json_body
# ---------------------------------------------------------------------------------------------


def test_a_json_object_is_parsed() -> None:
    assert parse_json_body(b'{"inputs": [[0.5, 1]], "label": 3}') == {"inputs": [[0.5, 1]], "label": 3}


def test_nan_and_infinity_are_left_for_decode_json_inputs_to_refuse() -> None:
    body = parse_json_body(b'{"inputs": [NaN, Infinity, -Infinity]}')
    assert isinstance(body, dict)
    assert math.isnan(body["inputs"][0]) and body["inputs"][1:] == [math.inf, -math.inf]


def test_invalid_utf8_is_rejected_naming_the_byte() -> None:
    rejection("invalid_utf8", lambda: parse_json_body(b'{"label": "\xff\xfe"}'), match=r"byte 11")


def test_malformed_json_names_line_and_column() -> None:
    rejection(
        "malformed_json",
        lambda: parse_json_body(b'{"inputs": [1, 2],\n "label": }'),
        match="line 2 column 11: Expecting value",
    )


def test_an_integer_literal_beyond_pythons_digit_limit_is_malformed_json() -> None:
    rejection("malformed_json", lambda: parse_json_body(b'{"inputs": [' + b"9" * 10_000 + b"]}"))


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_a_hundred_thousand_nested_brackets_are_too_deep(opener: bytes) -> None:
    body = opener * 100_000
    rejection("too_deep", lambda: parse_json_body(b'{"inputs": ' + body + b"}"), match=r"more than 32 levels")


def test_depth_limit_is_exact() -> None:
    at_limit = b"[" * 31 + b"]" * 31
    assert parse_json_body(b'{"a": ' + at_limit + b"}") == {"a": json.loads(at_limit)}
    rejection("too_deep", lambda: parse_json_body(b'{"a": [' + at_limit + b"]}"))
    assert parse_json_body(b'{"a": [[1]]}', max_depth=3) == {"a": [[1]]}


def test_brackets_inside_strings_do_not_count_towards_depth() -> None:
    text = "[[[{{{" * 1000 + '\\"' + "]]]" * 100
    assert parse_json_body(json.dumps({"note": text}).encode()) == {"note": text}


def test_an_unterminated_string_full_of_escaped_quotes_is_malformed_not_slow() -> None:
    # Stripping strings must stay linear: a naive pattern restarts at every escaped quote.
    rejection("malformed_json", lambda: parse_json_body(b'{"a": "' + b'\\"[' * 300_000))


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"3", b"null", b"true"])
def test_the_top_level_must_be_an_object(body: bytes) -> None:
    rejection("bad_body", lambda: parse_json_body(body), match="expected a JSON object")


def test_a_body_that_is_not_bytes_is_rejected() -> None:
    rejection("bad_body", lambda: parse_json_body("{}"), match="got str")  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b'{"label": 1, "label": 2}', b'{"inputs": [{"x": 1, "x": 1}]}'])
def test_duplicate_keys_are_rejected_at_any_depth(body: bytes) -> None:
    rejection("duplicate_key", lambda: parse_json_body(body), match="repeats the key")


def test_max_depth_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="max_depth"):
        parse_json_body(b"{}", max_depth=0)


# ---------------------------------------------------------------------------------------------
# decode_json_inputs
# ---------------------------------------------------------------------------------------------


def test_one_example_becomes_a_batch_of_one_in_float32() -> None:
    example = np.linspace(-5, 5, 30)
    decoded = decode_json_inputs(example.tolist(), TABULAR)
    assert decoded.shape == (1, 30) and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded[0], example.astype(np.float32))


def test_a_full_mnist_batch_round_trips() -> None:
    batch = np.random.default_rng(0).random((64, 1, 28, 28))
    decoded = decode_json_inputs(batch.tolist(), MNIST)
    assert decoded.shape == (64, 1, 28, 28) and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, batch.astype(np.float32))


def test_integers_and_the_bounds_themselves_are_accepted() -> None:
    decoded = decode_json_inputs([[-5, 0, 5] * 10], TABULAR)
    np.testing.assert_array_equal(decoded, np.array([[-5.0, 0.0, 5.0] * 10], dtype=np.float32))


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"x": [1.0]}, r"got an object"),
        (3.5, r"got a number"),
        ("0.5", r"got a string"),
        (None, r"got null"),
        ([0.0] * 29, r"shape \(29\); expected \(30,\) or \(n, 30\)"),
        ([[0.0] * 30, [0.0] * 29], r"inputs\[1\] is a list of 29; expected a list of 30"),
        ([[0.0] * 30, 1.0], r"inputs\[1\] is a number; expected a list of 30"),
        ([[[0.0] * 30]], r"shape \(1x1x30\)"),
        ([[0.0] * 29 + [[0.0]]], r"inputs\[0\]\[29\] is a list, nested deeper"),
        ([[]], r"shape \(1x0\)"),
    ],
)
def test_wrong_shapes_are_rejected_naming_what_was_got_and_expected(payload: object, match: str) -> None:
    rejection("bad_shape", lambda: decode_json_inputs(payload, TABULAR), match=match)


def test_a_deeply_nested_list_is_rejected_without_recursion() -> None:
    payload: list[Any] = [0.5]
    for _ in range(100_000):
        payload = [payload]
    rejection("bad_shape", lambda: decode_json_inputs(payload, MNIST), match=r"x\.\.\.\)")


@pytest.mark.parametrize(
    ("leaf", "match"),
    [
        (True, r"True \(a boolean\)"),
        ("1.0", r"'1.0' \(a string\)"),
        (None, r"None \(null\)"),
        ({}, r"\{\} \(an object\)"),
    ],
)
def test_leaves_that_are_not_numbers_are_rejected_with_their_place(leaf: object, match: str) -> None:
    row: list[object] = [0.0] * 30
    row[7] = leaf
    rejection(
        "bad_dtype", lambda: decode_json_inputs([[0.0] * 30, row], TABULAR), match=r"inputs\[1\]\[7\] is " + match
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected(value: float) -> None:
    row = [0.0] * 30
    row[3] = value
    rejection(
        "non_finite",
        lambda: decode_json_inputs([row], TABULAR),
        match=r"inputs\[0\]\[3\] is (nan|inf|-inf) \(1 non-finite",
    )


def test_non_finite_from_parsed_json_literals() -> None:
    body = parse_json_body(b'{"inputs": [' + b", ".join([b"0"] * 29 + [b"NaN"]) + b"]}")
    assert isinstance(body, dict)
    rejection("non_finite", lambda: decode_json_inputs(body["inputs"], TABULAR))


def test_values_outside_the_bounds_name_the_range_found_and_the_bounds() -> None:
    row = [0.0] * 30
    row[4], row[9] = -7.5, 6.0
    rejection(
        "out_of_range",
        lambda: decode_json_inputs([row], TABULAR),
        match=r"\[-7.5, 6\] \(inputs\[0\]\[4\] is -7.5\).*bounds \[-5, 5\]",
    )


def test_an_integer_too_large_for_a_float_is_out_of_range() -> None:
    row: list[object] = [0.0] * 30
    row[2] = 10**400
    rejection(
        "out_of_range", lambda: decode_json_inputs([row], TABULAR), match=r"inputs\[0\]\[2\] is an integer too large"
    )


def test_a_batch_over_max_batch_is_too_large() -> None:
    rejection(
        "batch_too_large", lambda: decode_json_inputs([[0.0] * 30] * 5, TABULAR), match="5 examples; the limit is 4"
    )


def test_an_empty_list_is_an_empty_batch() -> None:
    rejection("empty_batch", lambda: decode_json_inputs([], TABULAR))


# ---------------------------------------------------------------------------------------------
# InputSpec
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"input_shape": ()}, "input_shape"),
        ({"input_shape": (1, 0, 28)}, "input_shape"),
        ({"input_shape": [1, 28, 28]}, "input_shape"),
        ({"bounds": (1.0, 0.0)}, "bounds"),
        ({"bounds": (0.0, math.inf)}, "bounds"),
        ({"bounds": (0.0,)}, "bounds"),
        ({"bounds": (0.0, 1e300)}, "bounds"),
        ({"max_batch": 0}, "max_batch"),
        ({"max_pixels": True}, "max_pixels"),
        ({"max_image_bytes": 1.5}, "max_image_bytes"),
        ({"image_formats": ()}, "image_formats"),
        ({"image_formats": ("png",)}, "image_formats"),
        ({"image_formats": ("PNG", "SVG")}, "image_formats"),
    ],
)
def test_an_input_spec_refuses_bad_settings(overrides: dict[str, Any], match: str) -> None:
    settings_: dict[str, Any] = {"input_shape": (1, 28, 28), "bounds": (0.0, 1.0), **overrides}
    with pytest.raises(ConfigError, match=match):
        InputSpec(**settings_)


# ---------------------------------------------------------------------------------------------
# decode_image
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digit_zero() -> np.ndarray:
    """The first 8x8 digit of scikit-learn's digits (a zero), its 0..16 levels as 0..240 grayscale."""
    digits = load_digits()
    assert digits.target[0] == 0
    return np.asarray(digits.images[0] * 15, dtype=np.uint8)


def test_a_png_of_a_known_digit_gives_the_expected_array(digit_zero: np.ndarray) -> None:
    decoded = decode_image(encode(gray(digit_zero), "PNG"), DIGITS)
    assert decoded.shape == (1, 1, 8, 8) and decoded.dtype == np.float32
    np.testing.assert_allclose(decoded[0, 0], digit_zero / 255.0, rtol=0, atol=1e-7)


def test_pixels_are_scaled_into_the_models_bounds(digit_zero: np.ndarray) -> None:
    spec = InputSpec(input_shape=(1, 8, 8), bounds=(-1.0, 1.0))
    decoded = decode_image(encode(gray(digit_zero), "PNG"), spec)
    np.testing.assert_allclose(decoded[0, 0], -1.0 + 2.0 * digit_zero / 255.0, atol=1e-6)


def test_a_larger_image_is_resized_bilinearly(digit_zero: np.ndarray) -> None:
    big = gray(np.kron(digit_zero, np.ones((5, 4))))  # 40 x 32
    expected = np.asarray(big.resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float64) / 255.0
    np.testing.assert_allclose(decode_image(encode(big, "PNG"), DIGITS)[0, 0], expected, atol=1e-6)


def test_a_constant_image_stays_constant_through_the_resize() -> None:
    decoded = decode_image(encode(gray(np.full((56, 70), 51)), "PNG"), MNIST)
    np.testing.assert_allclose(decoded, 0.2, atol=1e-6)


def test_rgb_channels_come_first_in_order() -> None:
    pixels = np.zeros((4, 4, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 2] = 255, 51  # red everywhere, a little blue
    spec = InputSpec(input_shape=(3, 4, 4), bounds=(0.0, 1.0))
    decoded = decode_image(encode(Image.fromarray(pixels, mode="RGB"), "PNG"), spec)
    assert decoded.shape == (1, 3, 4, 4)
    np.testing.assert_allclose(decoded[0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)


def test_colour_goes_to_grayscale_and_grayscale_to_rgb() -> None:
    colour = Image.fromarray(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8), mode="RGB")
    expected = np.asarray(colour.convert("L"), dtype=np.float64) / 255.0
    np.testing.assert_allclose(decode_image(encode(colour, "PNG"), DIGITS)[0, 0], expected, atol=1e-6)
    spec = InputSpec(input_shape=(3, 8, 8), bounds=(0.0, 1.0))
    as_rgb = decode_image(encode(gray(np.full((8, 8), 102)), "PNG"), spec)
    np.testing.assert_allclose(as_rgb, 0.4, atol=1e-6)


def test_a_16_bit_png_is_scaled_not_clipped() -> None:
    wide = Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16))
    assert wide.mode.startswith("I;16")
    np.testing.assert_allclose(decode_image(encode(wide, "PNG"), DIGITS), 32768 / 65535, atol=1e-6)


def test_a_palette_png_with_transparency_decodes_without_warnings() -> None:
    palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="P")
    palette.putpalette([min(4 * i, 255) for i in range(256) for _ in range(3)])  # index i is gray 4i
    data = encode(palette, "PNG", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoded = decode_image(data, DIGITS)
    np.testing.assert_allclose(decoded[0, 0], np.arange(64).reshape(8, 8) * 4 / 255.0, atol=1e-6)


def test_a_jpeg_named_image_png_is_decoded_as_the_jpeg_it_is(digit_zero: np.ndarray) -> None:
    image_png = encode(gray(digit_zero), "JPEG", quality=95)  # what a client uploads as "image.png"
    assert declared_image_format(image_png) == "JPEG"
    expected = np.asarray(Image.open(io.BytesIO(image_png)), dtype=np.float64) / 255.0
    np.testing.assert_allclose(decode_image(image_png, DIGITS)[0, 0], expected, atol=1e-6)
    png_only = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0), image_formats=("PNG",))
    rejection(
        "unsupported_format", lambda: decode_image(image_png, png_only), match="a JPEG image; allowed formats: PNG"
    )


def test_a_gif_is_refused_when_only_png_and_jpeg_are_allowed(digit_zero: np.ndarray) -> None:
    rejection(
        "unsupported_format",
        lambda: decode_image(encode(gray(digit_zero), "GIF"), DIGITS),
        match="a GIF image; allowed formats: PNG, JPEG",
    )
    gif_ok = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0), image_formats=("GIF",))
    assert decode_image(encode(gray(digit_zero), "GIF"), gif_ok).shape == (1, 1, 8, 8)


def test_an_image_mode_pillow_cannot_convert_is_unsupported() -> None:
    lab_tiff = encode(Image.new("LAB", (8, 8), (50, 10, 10)), "TIFF")
    tiff_ok = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0), image_formats=("TIFF",))
    rejection("unsupported_format", lambda: decode_image(lab_tiff, tiff_ok), match="mode LAB cannot be converted")


@pytest.mark.parametrize("data", [b"definitely not an image", b"<svg xmlns='http://www.w3.org/2000/svg'/>"])
def test_bytes_in_no_known_format_are_unsupported(data: bytes) -> None:
    rejection("unsupported_format", lambda: decode_image(data, DIGITS), match="no image format recognised")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_truncated_image_is_corrupt(fmt: str) -> None:
    noise = np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8)
    data = encode(gray(noise), fmt)
    rejection(
        "corrupt_image",
        lambda: decode_image(data[: len(data) // 2], MNIST),
        match=f"the {fmt} image is truncated or corrupt",
    )


def test_a_png_signature_before_garbage_is_corrupt() -> None:
    rejection(
        "corrupt_image",
        lambda: decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, MNIST),
        match="PNG image header is corrupt",
    )


def test_an_empty_upload_is_corrupt() -> None:
    rejection("corrupt_image", lambda: decode_image(b"", MNIST), match="empty")


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A real decompression bomb: 900 million pixels in about 110 KB."""
    data = bomb_png(30_000)
    assert len(data) < 200_000
    return data


def test_a_decompression_bomb_is_refused_from_its_header(bomb: bytes) -> None:
    rejection("too_many_pixels", lambda: decode_image(bomb, MNIST))


def test_the_pixel_limit_does_not_depend_on_pillows_global(monkeypatch: pytest.MonkeyPatch, bomb: bytes) -> None:
    # A host application may have switched Pillow's own bomb check off; the header is still read
    # first and no pixel is ever decoded.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    def never(*_: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    rejection(
        "too_many_pixels",
        lambda: decode_image(bomb, MNIST),
        match=r"30000x30000 = 900000000 pixels; the limit is 4000000",
    )


def test_the_pixel_limit_is_the_specs() -> None:
    spec = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0), max_pixels=63)
    rejection(
        "too_many_pixels",
        lambda: decode_image(encode(gray(np.zeros((8, 8))), "PNG"), spec),
        match=r"8x8 = 64 pixels; the limit is 63",
    )


def test_an_upload_over_max_image_bytes_is_too_large() -> None:
    spec = InputSpec(input_shape=(1, 8, 8), bounds=(0.0, 1.0), max_image_bytes=100)
    rejection(
        "image_too_large", lambda: decode_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, spec), match="the limit is 100"
    )


@pytest.mark.parametrize("shape", [(30,), (2, 8, 8), (8, 8), (1, 1, 8, 8)])
def test_images_are_refused_for_models_that_do_not_take_images(shape: tuple[int, ...], digit_zero: np.ndarray) -> None:
    spec = InputSpec(input_shape=shape, bounds=(0.0, 1.0))
    rejection(
        "images_not_accepted",
        lambda: decode_image(encode(gray(digit_zero), "PNG"), spec),
        match=r"images are accepted only for \(C, H, W\)",
    )


def test_decoding_is_refused_when_the_host_allows_truncated_images(
    monkeypatch: pytest.MonkeyPatch, digit_zero: np.ndarray
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(BastionError, match="LOAD_TRUNCATED_IMAGES"):
        decode_image(encode(gray(digit_zero), "PNG"), DIGITS)


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"GIF89a", "GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"II*\x00", "TIFF"),
        (b"BM", "BMP"),
        (b"\x00\x00\x00\x1cftypavif", "AVIF"),
        (b"P6\n", "PPM"),
        (b"hello", None),
        (b"", None),
    ],
)
def test_declared_image_format_reads_the_leading_bytes(head: bytes, name: str | None) -> None:
    assert declared_image_format(head + b"\x00" * 8) == name


# ---------------------------------------------------------------------------------------------
# Properties: any input gives a valid array or a rejection, never another exception
# ---------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
SMALL = InputSpec(input_shape=(2, 3), bounds=(-1.0, 1.0), max_batch=3)
IMAGE = InputSpec(input_shape=(1, 6, 5), bounds=(0.0, 1.0), max_pixels=10_000)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=40,
)
numbers = st.one_of(st.integers(-3, 3), st.floats(-1.5, 1.5), st.sampled_from([math.nan, math.inf, 10**400]))
near_shapes = st.recursive(
    st.lists(numbers, min_size=2, max_size=4),
    lambda children: st.lists(children, min_size=0, max_size=4),
    max_leaves=60,
)


def assert_valid(result: np.ndarray, spec: InputSpec) -> None:
    assert result.dtype == np.float32
    assert result.shape[1:] == spec.input_shape and 1 <= result.shape[0] <= spec.max_batch
    assert np.isfinite(result).all()
    assert result.min() >= spec.bounds[0] and result.max() <= spec.bounds[1]


def assert_rejection(error: RequestRejectedError) -> None:
    assert CODES[error.code] == error.status
    assert error.detail


@FUZZ
@given(payload=json_values | near_shapes)
def test_any_json_value_decodes_to_a_valid_batch_or_is_rejected(payload: object) -> None:
    try:
        result = decode_json_inputs(payload, SMALL)
    except RequestRejectedError as error:
        assert_rejection(error)
    else:
        assert_valid(result, SMALL)


@FUZZ
@given(body=st.binary(max_size=200) | json_values.map(lambda value: json.dumps(value).encode()))
def test_any_body_parses_to_an_object_or_is_rejected(body: bytes) -> None:
    try:
        result = parse_json_body(body, max_depth=4)
    except RequestRejectedError as error:
        assert_rejection(error)
    else:
        assert isinstance(result, dict)


@FUZZ
@given(value=st.dictionaries(st.text(max_size=5), json_values, max_size=4))
def test_json_objects_round_trip_through_parse_json_body(value: dict[str, Any]) -> None:
    body = json.dumps(value).encode()
    assert json.dumps(parse_json_body(body, max_depth=64)) == body.decode()  # compared as text: NaN != NaN


@pytest.fixture(scope="module")
def seeds() -> list[bytes]:
    """Valid images to mutate, so that fuzzing reaches the decoders and not only the sniffing."""
    rng = np.random.default_rng(3)
    noise = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), mode="RGB")
    return [encode(noise, "PNG"), encode(noise, "JPEG"), encode(noise.convert("L"), "PNG"), encode(noise, "GIF")]


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_decode_to_a_valid_image_or_are_rejected(data: bytes) -> None:
    try:
        result = decode_image(data, IMAGE)
    except RequestRejectedError as error:
        assert_rejection(error)
    else:
        assert_valid(result, IMAGE)


@FUZZ
@given(
    which=st.integers(0, 3),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000) | st.none(),
)
def test_mutated_images_decode_to_a_valid_image_or_are_rejected(
    seeds: list[bytes], which: int, edits: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(seeds[which])
    for position, byte in edits:
        data[position % len(data)] = byte
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    try:
        result = decode_image(bytes(data), IMAGE)
    except RequestRejectedError as error:
        assert_rejection(error)
    else:
        assert_valid(result, IMAGE)
