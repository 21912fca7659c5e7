"""Load a user's own data: ``.npz`` (x, y), a folder of images per class, or CSV with a label column."""

from __future__ import annotations

import csv
import zipfile
import zlib
from pathlib import Path

import numpy as np

from bastion.data.dataset import Dataset
from bastion.data.demo import load_demo
from bastion.errors import DataError, NotFoundError

__all__ = ["IMAGE_SUFFIXES", "load_csv", "load_data", "load_image_folder", "load_npz"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_data(spec: str | Path, *, bounds: tuple[float, float] | None = None) -> Dataset:
    """Load ``demo:mnist``, ``demo:digits``, an ``.npz`` file, a ``.csv`` file, or a folder of images."""
    text = str(spec)
    if text.startswith("demo:"):
        name, _, split = text[5:].partition(":")
        return load_demo(name, split or "test")  # a ConfigError for an unknown name or split, as everywhere
    path = Path(spec)
    if not path.exists():
        raise NotFoundError(f"data not found: {path}")
    if path.is_dir():
        return load_image_folder(path)
    if path.suffix.lower() == ".npz":
        return load_npz(path, bounds=bounds)
    if path.suffix.lower() == ".csv":
        return load_csv(path, bounds=bounds)
    raise DataError(f"{path}: unknown data format; expected .npz, .csv, a folder of images, or demo:mnist")


def load_npz(path: Path, *, bounds: tuple[float, float] | None = None) -> Dataset:
    """Arrays ``x`` and ``y`` from an ``.npz`` file; objects (pickles) are never loaded."""
    try:
        with _open_npz(path) as archive:
            keys = set(archive.files)
            xkey = next((k for k in ("x", "X", "images", "inputs") if k in keys), None)
            ykey = next((k for k in ("y", "Y", "labels", "targets") if k in keys), None)
            if xkey is None or ykey is None:
                raise DataError(f"{path}: expected arrays named 'x' and 'y', found {sorted(keys) or 'none'}")
            x, y = archive[xkey], archive[ykey]
    except ValueError as exc:  # numpy refuses object arrays without allow_pickle
        raise DataError(f"{path}: could not read arrays ({exc}); object arrays are refused") from exc
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        # zlib.error: a damaged compressed member; NotImplementedError: zipfile meeting an unknown compression method
        raise DataError(f"{path}: not a readable .npz file: {exc}") from exc
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: expected numeric inputs, got dtype {x.dtype}")
    return Dataset.from_arrays(x, y, bounds=bounds or (0.0, 1.0), name=path.stem)


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    loaded = np.load(path, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # np.load reads a lone .npy array whatever its name
        raise DataError(f"{path}: expected an .npz archive of arrays x and y, got a single .npy array")
    return loaded


def load_csv(path: Path, *, bounds: tuple[float, float] | None = None) -> Dataset:
    """Rows of features with the label in a column named ``label`` (or ``y``, ``target``, else the last)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:  # -sig: drop the BOM spreadsheets write
            rows = [row for row in csv.reader(f) if any(cell.strip() for cell in row)]  # blank lines skipped
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: expected UTF-8 text, got undecodable bytes at offset {exc.start}") from exc
    except csv.Error as exc:  # e.g. a field over the csv module's size limit, a NUL byte
        raise DataError(f"{path}: not a readable CSV file: {exc}") from exc
    if not rows:
        raise DataError(f"{path}: the file is empty")
    header = rows[0]
    if len(header) < 2:
        raise DataError(f"{path}: expected at least two columns (features and a label), got {len(header)}")
    has_header = any(_not_number(cell) for cell in header)
    body = rows[1:] if has_header else rows
    for number, row in enumerate(body, start=2 if has_header else 1):
        if len(row) != len(header):
            raise DataError(f"{path}: row {number} has {len(row)} cells, expected {len(header)} like the first row")
    names = [h.strip().lower() for h in header] if has_header else []
    label_col = next((names.index(k) for k in ("label", "y", "target", "class") if k in names), len(header) - 1)
    try:
        table = np.array([[float(c) for c in row] for row in body], dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{path}: expected numeric cells, {exc}") from exc
    if table.ndim != 2 or table.shape[0] == 0:
        raise DataError(f"{path}: expected at least one row of features and a label")
    x = np.delete(table, label_col, axis=1).astype(np.float32)
    y = table[:, label_col]
    if bounds is None:
        bounds = (float(x.min()), float(x.max())) if x.min() < x.max() else (float(x.min()), float(x.min()) + 1)
    return Dataset.from_arrays(x, y, bounds=bounds, name=path.stem)


def load_image_folder(root: Path) -> Dataset:
    """``root/<class>/*.png``: one sub-folder per class, sorted by name; pixels scaled to [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{root}: expected one sub-folder of images per class, found none")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    mode = "L" if img.mode in ("1", "L", "I;16", "I") else "RGB"
                    images.append(np.asarray(img.convert(mode), dtype=np.float32) / 255.0)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{file}: not a readable image: {exc}") from exc
            labels.append(label)
    if not images:
        raise DataError(f"{root}: no images found (expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise DataError(f"{root}: all images must have the same size and mode, found shapes {sorted(shapes)}")
    stack = np.stack(images)
    x = stack[:, None] if stack.ndim == 3 else stack.transpose(0, 3, 1, 2)
    return Dataset.from_arrays(x, np.array(labels), bounds=(0.0, 1.0), name=root.name, class_names=tuple(classes))


def _not_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return True
    return False
