"""report.html in a real browser (headless Chromium): no console errors, the charts and galleries render,
the thresholds show. The screenshot stays in the test's tmp dir (report.png) for a look.

Needs the `chromium` command (Debian: apt-get install chromium). Without it the test is skipped, unless
VLCURATE_REQUIRE_BROWSER=1 (CI sets it, and .ci/run installs Chromium), where that is a failure.
"""

import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from vlcurate.pipelines.clean import run_clean
from vlcurate.schemas.config import load_clean_config

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if BROWSER is None and os.environ.get("VLCURATE_REQUIRE_BROWSER") == "1":
    raise RuntimeError("VLCURATE_REQUIRE_BROWSER=1 but no chromium on PATH: apt-get install chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (apt-get install chromium)"),
]
THRESHOLD_RED = (192, 57, 43)  # report.py draws thresholds in #c0392b


def _chromium(*args: str, page: str) -> subprocess.CompletedProcess:
    command = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    return subprocess.run([*command, f"file://{page}"], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(synth_dir, tmp_path_factory):
    config = load_clean_config(os.path.join(synth_dir, "clean.yaml"))
    config.output.dir = str(tmp_path_factory.mktemp("browser") / "out")
    run_clean(config, progress=False)
    return os.path.join(config.output.dir, "report.html")


def test_the_report_renders_without_console_errors_and_shows_its_thresholds(report, tmp_path):
    screenshot = tmp_path / "report.png"
    shot = _chromium(
        f"--screenshot={screenshot}", "--window-size=1200,9000", "--hide-scrollbars", page=report
    )
    dom = _chromium("--dump-dom", page=report)
    console = [line for run in (shot, dom) for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert dom.returncode == 0 and "</html>" in dom.stdout
    # The rendered page holds the what-if curves (one polyline per curve and source at least), the
    # histograms, the thresholds table, and thumbnails.
    assert "<h2>What if</h2>" in dom.stdout and dom.stdout.count("<polyline") >= 10
    assert "<h2>Thresholds applied</h2>" in dom.stdout and "threshold default: 0.4" in dom.stdout
    assert len(re.findall(r"<img [^>]*src=\"data:image/jpeg;base64,", dom.stdout)) >= 8
    # The thresholds are visible: the screenshot has the red of their lines.
    with Image.open(screenshot) as image:
        pixels = image.convert("RGB").getdata()
        red = sum(1 for p in pixels if all(abs(a - b) <= 12 for a, b in zip(p, THRESHOLD_RED)))
    assert red >= 200, red
