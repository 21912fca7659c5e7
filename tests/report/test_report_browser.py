"""A real browser opens the written report.html and draws something: headless Chromium, then Pillow.

Chromium comes from ``scripts/system-deps.sh``. Without it the test is skipped, except on CI
(``CI=true``), where a missing browser must not pass silently.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from bastion.report import Assessment, write_report

BROWSER_SECONDS = 60


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (scripts/system-deps.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_report_renders_in_headless_chromium(assessment: Assessment, tmp_path: Path) -> None:
    chromium = _chromium()
    page = write_report(assessment, tmp_path / "report")["html"]
    screenshot = tmp_path / "out.png"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
        f"--user-data-dir={tmp_path / 'profile'}",  # never share a profile with another run
        f"--screenshot={screenshot}",
        "--window-size=1200,2000",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=BROWSER_SECONDS)
    assert screenshot.is_file(), f"no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    with Image.open(screenshot) as image:
        pixels = image.convert("RGB")
        assert pixels.size == (1200, 2000)
        colours = pixels.getcolors(maxcolors=1_000_000) or []
    # A blank page has one colour; text, badges, the plot and the thumbnails give hundreds.
    assert len(colours) >= 50
    background = max(colours)[0]
    assert background < 0.98 * 1200 * 2000, "the page is almost all one colour"
