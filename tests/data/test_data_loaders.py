"""Loaders for a user's own data: .npz, CSV, image folders, and the ``load_data`` dispatch."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bastion.data import load_csv, load_data, load_image_folder, load_npz
from bastion.errors import ConfigError, DataError, NotFoundError


def write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


# --- npz -----------------------------------------------------------------------------------------


def test_npz(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((5, 1, 3, 3), dtype=np.float32)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=np.array([0, 1, 2, 1, 0]))
    data = load_npz(path)
    assert data.name == "set" and data.input_shape == (1, 3, 3)
    np.testing.assert_array_equal(data.x.numpy(), x)
    assert data.y.tolist() == [0, 1, 2, 1, 0]


def test_npz_alternative_names_and_bounds(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, images=np.full((2, 4), 200.0), labels=np.array([1, 0]))
    with pytest.raises(DataError, match=r"within bounds \[0.0, 1.0\], found values in \[200, 200\]"):
        load_npz(path)
    assert load_npz(path, bounds=(0.0, 255.0)).bounds == (0.0, 255.0)


def test_npz_missing_arrays(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, features=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(DataError, match=r"expected arrays named 'x' and 'y', found \['features', 'y'\]"):
        load_npz(path)


class _Boom:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_npz_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "set.npz"
    np.savez(path, x=np.array([_Boom(marker), _Boom(marker)], dtype=object), y=np.zeros(2))
    with pytest.raises(DataError, match=r"could not read arrays .*object arrays are refused"):
        load_npz(path)
    assert not marker.exists()


def test_npz_text_inputs(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    np.savez(path, x=np.array(["a", "b"]), y=np.zeros(2))
    with pytest.raises(DataError, match="expected numeric inputs, got dtype <U1"):
        load_npz(path)


@pytest.mark.parametrize(
    "content",
    [b"not a zip at all", b"PK\x03\x04truncated"],
    ids=["garbage", "truncated-zip"],
)
def test_npz_unreadable(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "set.npz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"set\.npz"):
        load_npz(path)


def test_npy_named_npz(tmp_path: Path) -> None:
    path = tmp_path / "set.npz"
    with path.open("wb") as f:
        np.save(f, np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"set\.npz: expected an \.npz archive of arrays x and y, got a single \.npy"):
        load_npz(path)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_with_header_and_label_column(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("label,a,b\n1,0.5,2\n0,1.5,3\n")
    data = load_csv(path)
    assert data.y.tolist() == [1, 0]
    assert data.x.tolist() == [[0.5, 2.0], [1.5, 3.0]]
    assert data.bounds == (0.5, 3.0)  # inferred from the features when not given
    assert data.name == "table"


def test_csv_without_header_uses_the_last_column(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("0.1,0.2,1\n0.3,0.4,0\n0.5,0.6,2\n")
    data = load_csv(path, bounds=(0.0, 1.0))
    assert data.y.tolist() == [1, 0, 2]
    assert data.x.shape == (3, 2)
    assert data.bounds == (0.0, 1.0)


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    # Spreadsheets often save "UTF-8 with BOM": the first header cell must still read "label".
    path = tmp_path / "table.csv"
    path.write_text("label,a,b\n1,0.5,2\n0,1.5,3\n", encoding="utf-8-sig")
    data = load_csv(path)
    assert data.y.tolist() == [1, 0]
    assert data.x.tolist() == [[0.5, 2.0], [1.5, 3.0]]


def test_csv_constant_features_get_a_valid_range(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_text("a,y\n0.5,0\n0.5,1\n")
    assert load_csv(path).bounds == (0.5, 1.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("a,b,label\n", "expected at least one row of features and a label"),
        ("a,label\n1,x\n", "expected numeric cells"),
        ("a,label\n0.5,-1\n", "labels must be >= 0, found -1"),
        ("a,label\nnan,1\n", "NaN or Inf"),
        ("\n\n", "the file is empty"),
        ("7\n", "expected at least two columns"),
        ("a,b,label\n1,2,0\n1,2\n", "row 3 has 2 cells, expected 3"),
        ("a,label\n" + "1" * 200_000 + ",0\n", "not a readable CSV file"),
    ],
    ids=["empty", "header-only", "text-cell", "negative-label", "nan", "blank", "one-column", "ragged", "huge-field"],
)
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_csv(path, bounds=(0.0, 1.0))


# --- image folders -------------------------------------------------------------------------------


def test_image_folder_with_two_classes(tmp_path: Path) -> None:
    root = tmp_path / "pets"
    write_png(root / "cat" / "a.png", np.full((4, 5), 255))
    write_png(root / "cat" / "b.png", np.zeros((4, 5)))
    write_png(root / "dog" / "c.png", np.full((4, 5), 51))
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "README").write_text("files at the top are ignored")
    data = load_image_folder(root)
    assert data.class_names == ("cat", "dog")
    assert data.y.tolist() == [0, 0, 1]
    assert data.x.shape == (3, 1, 4, 5)
    assert data.x[:, 0, 0, 0].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert data.name == "pets" and data.bounds == (0.0, 1.0)


def test_image_folder_in_colour(tmp_path: Path) -> None:
    pixels = np.zeros((3, 3, 3))
    pixels[..., 0] = 255  # red
    write_png(tmp_path / "a" / "x.png", pixels)
    write_png(tmp_path / "b" / "y.png", pixels)
    data = load_image_folder(tmp_path)
    assert data.x.shape == (2, 3, 3, 3)
    assert torch.equal(data.x[0, 0], torch.ones(3, 3)) and float(data.x[0, 1:].abs().sum()) == 0.0


def test_image_folder_with_mixed_sizes(tmp_path: Path) -> None:
    write_png(tmp_path / "a" / "x.png", np.zeros((4, 4)))
    write_png(tmp_path / "b" / "y.png", np.zeros((5, 4)))
    with pytest.raises(DataError, match=r"same size and mode, found shapes \[\(4, 4\), \(5, 4\)\]"):
        load_image_folder(tmp_path)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="expected one sub-folder of images per class, found none"):
        load_image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(DataError, match=r"no images found \(expected files ending in .png"):
        load_image_folder(tmp_path)
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: not a readable image"):
        load_image_folder(tmp_path)


# --- load_data -----------------------------------------------------------------------------------


def test_load_data_dispatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "set.npz", x=np.zeros((2, 3)), y=np.array([0, 1]))
    (tmp_path / "table.csv").write_text("a,label\n0.25,1\n")
    write_png(tmp_path / "images" / "only" / "x.png", np.zeros((2, 2)))
    assert load_data(tmp_path / "set.npz").input_shape == (3,)
    assert load_data(str(tmp_path / "table.csv"), bounds=(0.0, 1.0)).bounds == (0.0, 1.0)
    assert load_data(tmp_path / "images").class_names == ("only",)
    assert len(load_data("demo:digits")) == 360
    assert len(load_data("demo:digits:train")) == 1437


def test_load_data_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"data not found: .*absent\.npz"):
        load_data(tmp_path / "absent.npz")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(DataError, match=r"data\.json: unknown data format; expected \.npz, \.csv, a folder of images"):
        load_data(tmp_path / "data.json")
    with pytest.raises(ConfigError, match="unknown demo dataset 'cifar': expected one of breast-cancer, digits, mnist"):
        load_data("demo:cifar")
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        load_data("demo:digits:dev")


def test_csv_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(b"a,label\n\xff\xfe,1\n")
    with pytest.raises(DataError, match=r"expected UTF-8 text, got undecodable bytes at offset 8"):
        load_csv(path)


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.float32(1), "y": np.array([0])}, "expected inputs with a leading example axis"),
        ({"x": np.zeros((2, 2, 0), np.float32), "y": np.array([0, 1])}, r"inputs of shape \(2, 0\) hold no values"),
    ],
    ids=["scalar-x", "empty-features"],
)
def test_npz_with_degenerate_inputs_is_refused(tmp_path: Path, arrays: dict[str, np.ndarray], message: str) -> None:
    path = tmp_path / "data.npz"
    path.write_bytes(_npz_bytes(**arrays))
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_with_a_damaged_compressed_member_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_npz_bytes(x=np.random.default_rng(0).random((20, 8)).astype(np.float32), y=np.zeros(20)))
    start = raw.index(b"x.npy") + len("x.npy")
    raw[start + 10 : start + 40] = bytes(30)  # zeros in the middle of x's deflate stream
    path = tmp_path / "data.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"not a readable \.npz file"):
        load_npz(path, bounds=(0.0, 1.0))


def test_npz_with_an_unknown_compression_method_is_refused(tmp_path: Path) -> None:
    raw = bytearray(_npz_bytes(x=np.zeros((2, 3), np.float32), y=np.zeros(2)))
    central = raw.index(b"PK\x01\x02")  # zipfile reads the method from the central directory
    raw[central + 10 : central + 12] = (99).to_bytes(2, "little")
    path = tmp_path / "data.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"not a readable \.npz file"):
        load_npz(path)
