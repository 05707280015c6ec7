"""The datasheet report in a real browser: Debian's headless Chromium renders it, sections and charts are in the
rendered DOM, and a screenshot is taken (and is not blank)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# No network, no profile sync, no component updates: the report must render from the file alone.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SECTIONS = ("motivation", "composition", "collection", "preprocessing", "uses", "distribution", "maintenance")
SUBSECTIONS = (
    "sources",
    "funnel",
    "phi",
    "residual-phi",
    "validation",
    "quarantine",
    "dedup",
    "shards",
    "access",
    "erasures",
    "audit",
)
CHARTS = ("chart-funnel", "chart-phi", "chart-tokens")


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (CI: apt-get install -y chromium)")
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


def _png_pixels(path: Path) -> bytes:
    """The decompressed scanlines of a PNG (filter bytes included): enough to tell a blank page from a report."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return zlib.decompress(idat)


def test_report_renders_in_chromium_with_sections_and_charts(sample_run, tmp_path):
    html = sample_run.zones.governance / "report.html"
    dom = _chromium(tmp_path, "--dump-dom", html.as_uri()).stdout
    for section in SECTIONS + SUBSECTIONS:
        assert f'id="{section}"' in dom, section
    for chart in CHARTS:
        assert f'id="{chart}"' in dom and "<rect" in dom.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0], chart
    report = json.loads((sample_run.zones.governance / "report.json").read_text())
    assert report["manifest"]["merkle"]["root"] in dom
    assert report["audit_head"]["hash"] in dom
    assert all(s["license"] in dom for s in report["sources"])

    screenshot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2400", html.as_uri())
    pixels = _png_pixels(screenshot)
    assert len(set(pixels)) > 32, "the screenshot is blank"


def test_report_funnel_is_monotonic_per_source(sample_run):
    report = json.loads((sample_run.zones.governance / "report.json").read_text())
    for row in report["funnel"]:
        counts = [row[c] for c in ("ingested", "de-identified", "validated", "filtered", "deduplicated", "sharded")]
        assert all(c is not None for c in counts), row["source"]
        assert counts == sorted(counts, reverse=True), row
