"""Great Expectations Data Docs read offline in headless Chromium: the index lists the validation, the
validation page shows each expectation's status icon, and no page names a remote URL."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from browser import dom, screenshot_pixels

from pipelines.quality.data_docs_offline import STATIC, make_offline
from pipelines.quality.frame_partitions import FramePartitions
from pipelines.quality.gx_context import open_context, publish_data_docs, validate_partitions
from pipelines.quality.suites import SuiteConfig

pytestmark = pytest.mark.slow

SUITE = SuiteConfig(
    name="offline",
    max_failed_fraction=0.0,
    expectations=(
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "chars"}},
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "chars", "min_value": 0, "max_value": 50}},
    ),
)
# Bootstrap 4's text-success: the colour of a passed expectation's Font Awesome check icon, and of nothing else.
SUCCESS_GREEN = (40, 167, 69)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    governance = tmp_path_factory.mktemp("governance")
    context = open_context(governance)
    frame = pd.DataFrame({"chars": [10, 20, 90], "doc_id": ["a", "b", "c"], "row": [0, 1, 2]})
    partitions = FramePartitions(governance / "frames", len(frame), frame.iloc[:0])
    partitions.add(frame)
    outcome = validate_partitions(context, SUITE, "notes", partitions, {}, "run-offline")
    assert not outcome.success
    return Path(publish_data_docs(context)).parent


def test_no_page_names_a_remote_url(site):
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        assert not re.search(r"https?://", page.read_text(encoding="utf-8"), re.IGNORECASE), page


def test_rewriting_is_idempotent(site):
    pages = {page: page.read_text(encoding="utf-8") for page in site.rglob("*.html")}
    make_offline(site)
    assert {page: page.read_text(encoding="utf-8") for page in pages} == pages
    assert not any("Clear Filters</button>" in text for text in pages.values())


def test_every_local_reference_resolves(site):
    for page in site.rglob("*.html"):
        for ref in re.findall(r'(?:src|href)="([^"#?]+)"', page.read_text(encoding="utf-8")):
            if not ref.startswith(("javascript:", "mailto:")) and ref.endswith((".js", ".css", ".png", ".html")):
                assert (page.parent / ref).exists(), (page, ref)


def test_each_shipped_library_has_its_licence_beside_it():
    for library in (p for p in STATIC.iterdir() if p.is_dir()):
        assert any(f.name.upper().startswith("LICENSE") for f in library.iterdir()), library


def test_index_lists_the_validation_offline(site, tmp_path):
    rendered = dom(tmp_path, site / "index.html")
    rows = re.findall(r'<tr[^>]*data-href="(validations/[^"]+)"', rendered)
    assert rows and all((site / row).exists() for row in rows)
    assert "medcurate-offline-notes" in rendered


def test_validation_page_shows_statuses_offline(site, tmp_path):
    (page,) = site.glob("validations/offline/run-offline/*/*.html")
    rendered = dom(tmp_path, page)
    assert "fixed-table-container" in rendered, "bootstrap-table did not run"
    assert rendered.count("fa-check-circle") >= 1 and "fa-times" in rendered
    assert SUCCESS_GREEN in screenshot_pixels(tmp_path, page, size="1000,900"), "status icons not drawn"
