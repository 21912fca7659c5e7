"""The HTML report: one self-contained, well-formed page with its plot, examples and escaped text."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import pytest

from bastion.errors import DataError
from bastion.report import Assessment, render_html

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Page(HTMLParser):
    """Collects tags, attributes and visible text, and checks that every element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(tag, name, value or "") for name, value in attrs]
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.open == []
    return parser


def test_page_is_well_formed_and_self_contained(assessment: Assessment) -> None:
    page = _parse(render_html(assessment))
    references = [value for _, name, value in page.attributes if name in ("src", "href")]
    assert references, "expected the plot and the examples as images"
    assert all(value.startswith("data:image/png;base64,") for value in references)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text := render_html(assessment))
    assert "url(" not in text
    assert "script" not in page.tags


def test_plot_and_three_images_per_example_are_embedded(assessment: Assessment) -> None:
    images = [value for tag, name, value in _parse(render_html(assessment)).attributes if tag == "img"]
    sources = [value for value in images if value.startswith("data:image/png;base64,")]
    assert len(sources) == 1 + 3 * len(assessment.examples)


def test_sections_show_the_figures(assessment: Assessment) -> None:
    text = " ".join(_parse(render_html(assessment)).text)
    for expected in (
        "digits-cnn",
        "failed",
        "worst case",
        "35.0%",
        "gradient_masking",
        "clean accuracy below 95%",
    ):
        assert expected in text
    assert "true 7 · clean prediction 7 · adversarial prediction 1" in " ".join(text.split())
    assert "8000" in text  # gradients of a PGD run


def test_model_name_with_a_script_tag_is_escaped(assessment: Assessment) -> None:
    name = '<script>alert("x")</script>'
    model = dataclasses.replace(assessment.model, name=name)
    page = render_html(dataclasses.replace(assessment, model=model))
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert name in "".join(_parse(page).text)


def test_empty_lists_say_none(assessment: Assessment) -> None:
    empty = dataclasses.replace(
        assessment, runs=(), worst_case=(), per_class=(), findings=(), examples=(), thresholds=()
    )
    page = _parse(render_html(empty))
    assert not [tag for tag in page.tags if tag == "img"]
    assert sum(chunk.strip().startswith("none") for chunk in page.text) == 6  # every section
    assert "no thresholds" in page.text


def test_colour_and_non_image_examples(assessment: Assessment) -> None:
    pixels = tuple(range(3 * 4 * 4))
    colour = dataclasses.replace(assessment.examples[0], shape=(3, 4, 4), clean=pixels, adversarial=pixels[::-1])
    tabular = dataclasses.replace(assessment.examples[0], shape=(5,), clean=(1,) * 5, adversarial=(2,) * 5)
    page = render_html(dataclasses.replace(assessment, examples=(colour, tabular)))
    assert page.count('alt="clean input"') == 1
    assert "input of shape (5,) is not an image" in page


def test_pixels_that_do_not_fit_the_shape_are_refused(assessment: Assessment) -> None:
    broken = dataclasses.replace(assessment.examples[0], clean=(0,) * 10)
    with pytest.raises(DataError, match=r"shape \(1, 8, 8\) needs 64 pixels, got 10"):
        render_html(dataclasses.replace(assessment, examples=(broken,)))
