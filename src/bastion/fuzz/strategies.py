"""Hypothesis strategies for the pipeline fuzzer: structure-aware hostile inputs mixed with raw bytes.

Each strategy draws mostly *valid-ish* inputs (well-formed containers with hostile contents:
NaN, infinities, huge integers, deep nesting, duplicate keys, bad UTF-8, image headers declaring
absurd sizes) and some raw bytes or text, so that both the deep and the shallow checks are
exercised. Images are built in memory with Pillow and then patched, truncated or flipped.
"""

from __future__ import annotations

import email.utils
import io
import json
import pickle
import struct
import zlib
from typing import Any

import numpy as np
from hypothesis import strategies as st
from PIL import Image

__all__ = [
    "csv_files",
    "images",
    "json_bodies",
    "json_values",
    "npz_files",
    "number_arrays",
    "osv_records",
    "pickles",
    "remote_bodies",
    "requirements_files",
    "retry_after_values",
    "toml_texts",
]

# Numbers that break naive code: float32/float64 edges, int64 edges, beyond float64, signed zero.
_HOSTILE_NUMBERS: tuple[int | float, ...] = (
    0,
    -0.0,
    1e-45,
    3.4028235e38,
    3.5e38,
    1.7976931348623157e308,
    2**53 + 1,
    2**63,
    -(2**63) - 1,
    10**309,
    -(10**400),
)
_BAD_UTF8 = (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80")


def _numbers() -> st.SearchStrategy[int | float]:
    return st.one_of(
        st.floats(0.0, 1.0),
        st.integers(-3, 3),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(_HOSTILE_NUMBERS),
    )


def json_values(*, max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, numbers included NaN, infinities and integers beyond float64."""
    leaves = st.one_of(st.none(), st.booleans(), _numbers(), st.integers(), st.text(max_size=8))
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
        max_leaves=max_leaves,
    )


@st.composite
def number_arrays(draw: st.DrawFn, near: tuple[int, ...] = (2, 3)) -> Any:
    """Nested lists shaped like ``near`` (or a batch of it), or not quite: ragged, wrong rank, odd leaves."""
    shapes = st.sampled_from([near, (1, *near), (3, *near), (9, *near), near[:-1], (*near, 1)])
    shape = draw(shapes | st.lists(st.integers(0, 4), max_size=4).map(tuple))
    ragged = draw(st.integers(0, 9)) == 0
    leaf = _numbers() if draw(st.integers(0, 4)) else st.one_of(_numbers(), json_values(max_leaves=3))
    value = _nested(draw, shape, leaf, ragged)
    return draw(st.sampled_from([value, [value], {"inputs": value}])) if draw(st.integers(0, 9)) == 0 else value


def _nested(draw: st.DrawFn, shape: tuple[int, ...], leaf: st.SearchStrategy[Any], ragged: bool) -> Any:
    if not shape:
        return draw(leaf)
    size = draw(st.integers(0, shape[0] + 1)) if ragged else shape[0]
    return [_nested(draw, shape[1:], leaf, ragged) for _ in range(size)]


@st.composite
def _duplicate_keys(draw: st.DrawFn) -> bytes:
    key = json.dumps(draw(st.text(max_size=4)))
    first, second = (json.dumps(draw(json_values(max_leaves=3)), allow_nan=True) for _ in range(2))
    return f'{{"inputs": [0], {key}: {first}, {key}: {second}}}'.encode()


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([31, 32, 33, 64, 1000, 100_000]) | st.integers(1, 40))
    opener = draw(st.sampled_from([b"[", b'{"a":', b'["\\"[",']))
    closer = {b"[": b"]", b'{"a":': b"}", b'["\\"[",': b"]"}[opener]
    inner = b"1" if draw(st.booleans()) else b""
    return b'{"inputs":' + opener * depth + inner + closer * draw(st.sampled_from([depth, depth - 1, 0])) + b"}"


@st.composite
def _bad_utf8(draw: st.DrawFn) -> bytes:
    body = json.dumps({"inputs": draw(json_values(max_leaves=4))}, allow_nan=True).encode()
    cut = draw(st.integers(0, len(body)))
    return body[:cut] + draw(st.sampled_from(_BAD_UTF8)) + body[cut:]


def json_bodies() -> st.SearchStrategy[bytes]:
    """Request bodies: JSON objects with hostile values, duplicate keys, deep nesting, bad UTF-8, raw bytes."""
    documents = st.one_of(
        json_values().map(lambda value: {"inputs": value}),
        st.dictionaries(st.text(max_size=6), json_values(max_leaves=4), max_size=4),
        json_values(),
    )
    as_json = documents.map(lambda value: json.dumps(value, allow_nan=True).encode())
    return st.one_of(as_json, _duplicate_keys(), _deep(), _bad_utf8(), st.binary(max_size=64))


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------

_IMAGE_FORMATS = ("PNG", "GIF", "BMP", "JPEG", "TIFF", "PPM", "ICO")
_IMAGE_MODES = ("L", "RGB", "RGBA", "P", "1", "I;16", "LA", "I", "F", "CMYK")
_HOSTILE_SIDES = (0, 1, 65_535, 65_536, 100_000, 2**31 - 1, 2**32 - 1)
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"P5\n",
    b"RIFF\x00\x00\x00\x00WEBP",
)


@st.composite
def _pillow_image(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(_IMAGE_FORMATS))
    mode = draw(st.sampled_from(_IMAGE_MODES))
    size = (draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    image = Image.new(mode, size, draw(st.integers(0, 255)))
    for _ in range(draw(st.integers(0, 3))):
        image.putpixel(
            (draw(st.integers(0, size[0] - 1)), draw(st.integers(0, size[1] - 1))), draw(st.integers(0, 255))
        )
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode the format cannot hold
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


def _patch_png(data: bytes, width: int, height: int) -> bytes:
    """Set the IHDR width and height (big-endian at bytes 16..24) and fix the chunk's CRC."""
    if not data.startswith(b"\x89PNG") or len(data) < 33:
        return data
    ihdr = data[12:16] + struct.pack(">II", width, height) + data[24:29]
    return data[:16] + ihdr[4:] + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


def _patch_header(data: bytes, width: int, height: int) -> bytes:
    """Declare another size in the header of a PNG, GIF or BMP."""
    if data.startswith(b"\x89PNG"):
        return _patch_png(data, width, height)
    if data.startswith(b"GIF") and len(data) >= 10:
        return data[:6] + struct.pack("<HH", width & 0xFFFF, height & 0xFFFF) + data[10:]
    if data.startswith(b"BM") and len(data) >= 26:
        return data[:18] + struct.pack("<ii", _int32(width), _int32(height)) + data[26:]
    return data


def _int32(value: int) -> int:
    return value - 2**32 if value >= 2**31 else value


@st.composite
def _mutated_image(draw: st.DrawFn) -> bytes:
    data = draw(_pillow_image())
    action = draw(st.sampled_from(["none", "size", "truncate", "flip"]))
    if action == "size":
        return _patch_header(data, draw(st.sampled_from(_HOSTILE_SIDES)), draw(st.sampled_from(_HOSTILE_SIDES)))
    if action == "truncate":
        return data[: draw(st.integers(0, len(data)))]
    if action == "flip":
        at = draw(st.integers(0, len(data) - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def images() -> st.SearchStrategy[bytes]:
    """Images Pillow wrote (PNG, GIF, BMP, JPEG, TIFF, PPM, ICO), patched to hostile sizes, truncated or flipped."""
    raw = st.builds(lambda head, tail: head + tail, st.sampled_from(_SIGNATURES), st.binary(max_size=48))
    return st.one_of(_mutated_image(), raw, st.binary(max_size=32))


# ---------------------------------------------------------------------------------------------
# Text formats: TOML, CSV, requirements
# ---------------------------------------------------------------------------------------------

_TOML_SECTIONS = ("", "model", "server", "store", "rate_limit", "validation", "monitors.boundary", "output", "nope")
_TOML_KEYS = (
    "source", "input_shape", "bounds", "port", "max_body_bytes", "url", "per_key", "global", "max_batch",
    "image_formats", "max_pixels", "max_json_depth", "quantile", "client", "decimals", "guards", "enabled", "x",
)  # fmt: skip
_TOML_VALUES = st.one_of(
    st.integers().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-1", "true", "[]", "{}", '""', "1979-05-27", "0x10"]),
    st.floats(allow_nan=False).map(repr),
    st.text(max_size=8).map(json.dumps),
    st.lists(st.integers(-2, 70_000).map(str) | st.sampled_from(['"PNG"', '"10/second"', "1.5"]), max_size=4).map(
        lambda items: "[" + ", ".join(items) + "]"
    ),
)


@st.composite
def _toml_document(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        section = draw(st.sampled_from(_TOML_SECTIONS))
        if section:
            lines.append(f"[{section}]")
        for _ in range(draw(st.integers(0, 3))):
            lines.append(f"{draw(st.sampled_from(_TOML_KEYS))} = {draw(_TOML_VALUES)}")
    return "\n".join(lines) + "\n"


def toml_texts() -> st.SearchStrategy[str]:
    """Gateway configurations: known sections and keys with hostile values, unknown ones, and raw text."""
    return st.one_of(_toml_document(), st.text(max_size=40))


_CSV_CELLS = st.one_of(
    _numbers().map(str),
    st.sampled_from(["", "nan", "inf", "-inf", "label", "1e999", "0x1", " 1 ", '"1"', "1,5", "\x00"]),
    st.text(max_size=5),
)


@st.composite
def _csv_table(draw: st.DrawFn) -> bytes:
    width = draw(st.integers(1, 4))
    rows = [[draw(_CSV_CELLS) for _ in range(draw(st.sampled_from([width, width, width - 1, width + 1])))]]
    rows += [[draw(_numbers().map(str)) for _ in range(width)] for _ in range(draw(st.integers(0, 4)))]
    text = "\n".join(",".join(row) for row in rows).encode("utf-8", "surrogatepass")
    tail = draw(st.sampled_from([b"", b"\n", b"\xff", b'"unclosed', b"\r\n1,2", b"9" * 140_000]))
    return draw(st.sampled_from([b"", b"\xef\xbb\xbf"])) + text + tail


def csv_files() -> st.SearchStrategy[bytes]:
    """CSV files: headers or not, ragged rows, odd cells, a BOM, bad UTF-8, an oversized field, raw bytes."""
    return st.one_of(_csv_table(), st.binary(max_size=48))


_REQUIREMENT_LINES = st.one_of(
    st.sampled_from(
        [
            "numpy==1.26.4",
            "torch>=2",
            "pkg===1.0",
            "pkg==1.*",
            "pkg==1.0; python_version < '3'",
            "pkg==1.0 --hash=sha256:00",
            "pkg @ https://example.invalid/p.whl",
            "-e .",
            "-r missing.txt",
            "-c constraints.txt",
            "--index-url https://example.invalid",
            "# comment",
            "pkg==1.0 \\",
            "\\",
            "==1",
            "pkg[extra]==2",
            "pkg==",
        ]
    ),
    st.text(max_size=12),
)


def requirements_files() -> st.SearchStrategy[bytes]:
    """pip requirements files: pins, ranges, URLs, markers, options, continuations, junk, bad UTF-8."""
    lines = st.lists(_REQUIREMENT_LINES, max_size=5).map(
        lambda items: "\n".join(items).encode("utf-8", "surrogatepass")
    )
    corrupt = st.builds(lambda text, bad: text + bad, lines, st.sampled_from(_BAD_UTF8))
    return st.one_of(lines, corrupt, st.binary(max_size=32))


# ---------------------------------------------------------------------------------------------
# Structured binary and JSON formats: npz, OSV records, pickles, a remote model's answers
# ---------------------------------------------------------------------------------------------

_DTYPES = ("float32", "float64", "int64", "uint8", "bool", "complex64", "<U3", "S2", "float16", "V4")


@st.composite
def _npz(draw: st.DrawFn) -> bytes:
    arrays = {}
    for name in draw(st.lists(st.sampled_from(["x", "y", "X", "labels", "inputs", "z"]), max_size=3, unique=True)):
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=3)))
        values = draw(st.sampled_from([0.0, 1.0, -1.0, float("nan"), float("inf"), 0.5, 7.0]))
        arrays[name] = np.full(shape, values).astype(draw(st.sampled_from(_DTYPES)))
    buffer = io.BytesIO()
    save = np.savez_compressed if draw(st.booleans()) else np.savez
    save(buffer, **arrays)  # type: ignore[arg-type]
    data = buffer.getvalue()
    if draw(st.booleans()):
        return data
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] if draw(st.booleans()) else data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def npz_files() -> st.SearchStrategy[bytes]:
    """``.npz`` archives of odd arrays (names, shapes, dtypes, NaN), truncated or flipped, and raw bytes."""
    return st.one_of(_npz(), st.binary(max_size=48))


# Values of the wrong JSON type, to put in place of a proper field (cheaper to draw than json_values()).
_WRONG_TYPES = st.sampled_from([None, True, -1, 1.5, float("nan"), "", "x", [], [None], {}, {"": None}])


def _or_hostile(proper: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(proper, proper, _WRONG_TYPES)


@st.composite
def _osv_record(draw: st.DrawFn) -> dict[str, Any]:
    event = st.sampled_from(["introduced", "fixed", "last_affected", "limit", "bogus"])
    version = st.sampled_from(["0", "1.0", "2.0.1rc1", "1!2", "not-a-version", "", "1.0+local"]) | st.text(max_size=4)
    events = st.lists(st.dictionaries(event, version, min_size=1, max_size=2), max_size=3)
    range_ = st.fixed_dictionaries({"type": _or_hostile(st.sampled_from(["ECOSYSTEM", "SEMVER", "GIT"])),
                                    "events": _or_hostile(events)})  # fmt: skip
    package = st.fixed_dictionaries(
        {"ecosystem": _or_hostile(st.just("PyPI")), "name": _or_hostile(st.text(max_size=6))}
    )
    affected = st.fixed_dictionaries(
        {"package": _or_hostile(package)},
        optional={"ranges": _or_hostile(st.lists(range_, max_size=2)), "versions": _or_hostile(st.lists(version))},
    )
    return draw(
        st.fixed_dictionaries(
            {"id": _or_hostile(st.just("PYSEC-0"))},
            optional={
                "affected": _or_hostile(st.lists(affected, max_size=2)),
                "withdrawn": _or_hostile(st.just("2024-01-01")),
                "severity": _or_hostile(
                    st.lists(st.fixed_dictionaries({"type": st.just("CVSS_V3"), "score": version}))
                ),
                "database_specific": _or_hostile(st.fixed_dictionaries({"severity": st.text(max_size=6)})),
                "aliases": _or_hostile(st.lists(st.text(max_size=6), max_size=2)),
                "summary": _or_hostile(st.text(max_size=8)),
            },
        )
    )


def osv_records() -> st.SearchStrategy[bytes]:
    """OSV advisory records, each field proper or replaced by any JSON value, and raw bytes."""
    as_json = _osv_record().map(lambda record: json.dumps(record, allow_nan=True).encode())
    return st.one_of(as_json, json_values().map(lambda value: json.dumps(value, allow_nan=True).encode()),
                     st.binary(max_size=32))  # fmt: skip


_PICKLE_PIECES = (
    b"cos\nsystem\n",
    b"cbuiltins\neval\n",
    b"cnumpy\ndtype\n",
    b"(",
    b"(" * 2000,
    b"]",
    b"}",
    b"t",
    b"R",
    b"b",
    b"\x80\x05",
    b"\x95\x00\x00\x00\x00\x00\x00\x00\x00",
    b"X\xff\xff\xff\x7f",
    b"\x8c\x01a",
    b"\x93",
    b".",
    b"h\x00",
    b"g0\n",
    b"p0\n",
)


def pickles() -> st.SearchStrategy[bytes]:
    """Pickles of plain values at every protocol, opcode soups (globals, deep marks, bad lengths) and raw bytes."""
    values = st.recursive(
        st.none() | st.integers() | st.floats() | st.text(max_size=4) | st.binary(max_size=4),
        lambda children: st.lists(children, max_size=3) | st.tuples(children, children) | st.frozensets(st.integers()),
        max_leaves=8,
    )
    dumped = st.builds(pickle.dumps, values, st.integers(0, pickle.HIGHEST_PROTOCOL))
    soup = st.lists(st.sampled_from(_PICKLE_PIECES), max_size=8).map(b"".join)
    return st.one_of(dumped, soup, st.builds(lambda data, cut: data[:cut], dumped, st.integers(0, 40)),
                     st.binary(max_size=32))  # fmt: skip


def remote_bodies(*, rows: int = 2, classes: int = 3) -> st.SearchStrategy[bytes]:
    """A remote model's answers: the expected fields holding right, wrong, ragged or hostile rows, and raw bytes."""
    row = st.lists(_numbers(), min_size=classes - 1, max_size=classes + 1)
    scores = st.lists(row, min_size=rows - 1, max_size=rows + 1) | json_values(max_leaves=4)
    labels = st.lists(_numbers() | st.booleans(), min_size=rows - 1, max_size=rows + 1) | json_values(max_leaves=4)
    documents = st.one_of(
        st.builds(lambda items: {"predictions": [{"scores": item} for item in items]}, st.lists(row, max_size=3)),
        st.builds(lambda value: {"predictions": value}, scores),
        st.builds(lambda value: {"label": value}, labels),
        json_values(),
    )
    as_json = documents.map(lambda value: json.dumps(value, allow_nan=True).encode())
    return st.one_of(as_json, st.binary(max_size=24))


def retry_after_values() -> st.SearchStrategy[str]:
    """``Retry-After`` header values: seconds (negative, huge, fractional), HTTP dates (far past and future), junk."""
    seconds = st.one_of(st.integers().map(str), st.floats().map(repr), st.sampled_from(["1e999", "-0", " 5", "5 "]))
    dates = st.floats(-6.2e10, 2.5e11).map(lambda when: email.utils.formatdate(when, usegmt=True))
    odd_dates = st.sampled_from(["Sun, 06 Nov 1994 08:49:37 GMT", "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 99 Foo 0 GMT"])
    return st.one_of(seconds, dates, odd_dates, st.text(max_size=12))
