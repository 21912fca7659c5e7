"""The HTML report's pictures as PNG bytes: the robustness curve, the example thumbnails and universal patterns.

Matplotlib is imported inside :func:`robustness_plot` and drives a figure through its Agg
canvas directly, so importing the report package stays cheap and no global pyplot state or
backend choice is touched.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from bastion.errors import DataError
from bastion.report.model import Assessment, ExampleImage, UniversalRun

if TYPE_CHECKING:  # matplotlib is imported only when a plot is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ExampleThumbnails",
    "data_uri",
    "example_thumbnails",
    "figure_png",
    "finish_axes",
    "is_image_shape",
    "pattern_png",
    "robustness_plot",
]

# Thumbnails are enlarged by a whole factor (nearest neighbour, so pixels stay crisp) to about this size.
THUMBNAIL_PIXELS = 96
# A universal pattern, shown in the report and saved beside it, is enlarged the same way to about this size.
PATTERN_PIXELS = 256


@dataclass(frozen=True)
class ExampleThumbnails:
    """PNG bytes of one example: clean, adversarial and the magnified perturbation."""

    clean: bytes
    adversarial: bytes
    perturbation: bytes
    max_change: int  # largest |adversarial - clean| over all pixels, on the 0..255 scale


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI that embeds ``png`` in the page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def robustness_plot(assessment: Assessment) -> bytes:
    """Robust accuracy against epsilon, one line per attack plus the worst case, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import PercentFormatter

    figure = Figure(figsize=(7.0, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for attack, points in _curves(assessment).items():
        axes.plot(*zip(*points, strict=True), marker="o", linewidth=1.5, label=attack)
    if assessment.worst_case:
        worst = sorted((case.eps, case.robust_accuracy) for case in assessment.worst_case)
        axes.plot(
            *zip(*worst, strict=True),
            color="black",
            linewidth=2.5,
            linestyle="--",
            marker="s",
            label="worst case",
        )
    axes.axhline(assessment.clean_accuracy, color="grey", linestyle=":", linewidth=1, label="clean accuracy")
    axes.set(xlabel=f"epsilon ({assessment.settings.norm})", ylabel="robust accuracy", ylim=(-0.02, 1.02))
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    finish_axes(axes)
    return figure_png(figure)


def finish_axes(axes: Axes) -> None:
    """The light grid and small legend every report plot has."""
    axes.grid(True, alpha=0.3)
    axes.legend(loc="best", fontsize="small")


def figure_png(figure: Figure) -> bytes:
    """``figure`` laid out tightly and saved as PNG bytes."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _curves(assessment: Assessment) -> dict[str, list[tuple[float, float]]]:
    curves: dict[str, list[tuple[float, float]]] = {}
    for run in assessment.runs:
        curves.setdefault(run.attack, []).append((run.eps, run.robust_accuracy))
    return {attack: sorted(points) for attack, points in curves.items()}


def is_image_shape(shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` can be drawn: HxW or CxHxW with 1 (grey) or 3 (colour) channels."""
    return len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))


def example_thumbnails(example: ExampleImage) -> ExampleThumbnails:
    """Enlarged PNGs of an example's clean and adversarial inputs and of the change between them."""
    clean = _pixels(example.clean, example.shape, f"example {example.index} clean")
    adversarial = _pixels(example.adversarial, example.shape, f"example {example.index} adversarial")
    change = np.abs(adversarial.astype(np.int16) - clean.astype(np.int16))
    peak = int(change.max(initial=0))
    # Scale the change to fill 0..255 so even a tiny perturbation is visible; all black if none.
    magnified = (change * (255.0 / peak)).round().astype(np.uint8) if peak else change.astype(np.uint8)
    return ExampleThumbnails(_png(clean), _png(adversarial), _png(magnified), peak)


def pattern_png(run: UniversalRun) -> bytes:
    """The universal pattern of ``run`` as an enlarged PNG (a patch as it is printed, a perturbation grey at 0)."""
    return _png(_pixels(run.pixels, run.shape, f"{run.attack} pattern"), PATTERN_PIXELS)


def _pixels(values: tuple[int, ...], shape: tuple[int, ...], what: str) -> NDArray[np.uint8]:
    """Pixels as an HxW or HxWx3 array of bytes."""
    if not is_image_shape(shape):
        raise DataError(f"{what}: expected shape HxW, 1xHxW or 3xHxW, got {shape}")
    if len(values) != math.prod(shape):
        raise DataError(f"{what}: shape {shape} needs {math.prod(shape)} pixels, got {len(values)}")
    array = np.asarray(values, dtype=np.int64).reshape(shape)
    if array.size and (array.min() < 0 or array.max() > 255):
        raise DataError(f"{what}: expected pixels in 0..255, got {array.min()}..{array.max()}")
    if array.ndim == 3:
        array = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    return array.astype(np.uint8)


def _png(pixels: NDArray[np.uint8], size: int = THUMBNAIL_PIXELS) -> bytes:
    height, width = pixels.shape[:2]
    scale = max(1, size // max(height, width, 1))
    image = Image.fromarray(pixels).resize((width * scale, height * scale), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
