"""The datasheet report in a real browser (Debian's headless Chromium renders it from the file, offline), and
what an auditor reads in it: a table of contents, a glossary of every reason code, plain tables, one count of
quarantine, the measured de-identification accuracy, a Data Docs link that works offline, and an audit head
that `medcurate audit verify` accepts."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path

import pytest
from browser import dom, screenshot_pixels

from governance.report_content import define, deid_method, glossary
from governance.report_html import SECTIONS
from medcurate.cli import main

pytestmark = pytest.mark.slow

SUBSECTIONS = (
    "sources",
    "funnel",
    "phi",
    "deid-method",
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
REPO = Path(__file__).resolve().parents[1]


def _report(sample_run) -> dict:
    return json.loads((sample_run.zones.governance / "report.json").read_text())


def _html(sample_run) -> str:
    return (sample_run.zones.governance / "report.html").read_text()


def _text(html: str) -> str:
    """What a reader sees: the body (or a fragment of it) without tags; the inline style sheet is not text."""
    body = html.split("<body>", 1)[-1]
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_report_renders_in_chromium_with_contents_sections_glossary_and_charts(sample_run, tmp_path):
    page = sample_run.zones.governance / "report.html"
    rendered = dom(tmp_path, page)
    for section, _ in SECTIONS:
        assert f'id="{section}"' in rendered, section
        assert f'href="#{section}"' in rendered.split('id="toc"', 1)[1].split("</nav>", 1)[0], section
    for section in SUBSECTIONS:
        assert f'id="{section}"' in rendered, section
    for chart in CHARTS:
        svg = rendered.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0]
        assert "<rect" in svg, chart
    report = _report(sample_run)
    glossary_html = rendered.split('id="glossary"', 1)[1]
    for code in report["reason_codes"]:
        entry = code if code in glossary() else next(k for k in glossary() if code.startswith(k))
        assert f'id="reason-{entry}"' in glossary_html, code
    assert report["manifest"]["merkle"]["root"] in rendered
    assert all(s["license"] in rendered for s in report["sources"])
    assert len(screenshot_pixels(tmp_path, page, size="1280,1400")) > 32, "the screenshot is blank"


def test_report_is_self_contained(sample_run):
    html = _html(sample_run)
    assert not re.search(r"https?://|<script|<link|@import|url\(", html, re.IGNORECASE)


def test_every_reason_code_of_the_run_is_in_the_glossary(sample_run):
    report = _report(sample_run)
    assert report["reason_codes"], "the sample run reports reason codes"
    assert {code: meaning for code, meaning in report["reason_codes"].items() if not meaning} == {}
    assert define("residual_phi:name") == glossary()["residual_phi:"]
    assert define("expect_column_values_to_not_be_null") == glossary()["expect_"]


def test_tables_are_plain_words_not_raw_dicts(sample_run):
    report, text = _report(sample_run), _text(_html(sample_run))
    assert "{" not in text and "}" not in text and "[]" not in text
    assert report["curation"]["decontamination"]["benchmarks"] == {}
    decontamination = _html(sample_run).split('id="facts-decontamination"', 1)[1].split("</table>", 1)[0]
    assert "<td>benchmarks</td><td>none configured</td>" in decontamination
    assert "documents scanned" in text


def test_quarantine_has_one_definition_and_one_count(sample_run):
    report, html = _report(sample_run), _html(sample_run)
    quarantine = report["quarantine"]
    index_rows = sum(q["count"] for q in quarantine["by_stage_and_reason"])
    assert quarantine["total"] == index_rows == quarantine["files"] + quarantine["records"]
    assert quarantine["files"] == report["input_files"]["quarantined"]
    assert f"<b>{quarantine['total']:,}</b>quarantined (files and records)" in html
    sentence = _text(html.split('id="quarantine-count">', 1)[1].split("</p>", 1)[0])
    assert sentence.startswith(f"{quarantine['total']:,} quarantined: {quarantine['files']:,} whole files and")
    assert quarantine["definition"].split(".")[0] in _text(html)


def test_deid_method_states_the_measured_figures_kept_in_one_place(sample_run):
    html, method = _html(sample_run), deid_method()
    docs = (REPO / "docs" / "deidentification.md").read_text()
    assert method["statement"].split(".")[0] in _text(html)
    for m in method["measurements"]:
        assert str(m["recall"]) in html and str(m["precision"]) in html
        assert str(m["recall"]) in docs and str(m["precision"]) in docs, "figures differ from the docs"
    for module in ("report.py", "report_data.py", "report_html.py"):
        assert "0.9093" not in (REPO / "governance" / module).read_text()


def test_the_reports_own_audit_head_verifies(sample_run, capsys):
    html = _html(sample_run)
    shown = re.search(r'<code id="audit-head">([0-9a-f]+)</code>', html).group(1)
    assert len(shown) == 64 and shown == _report(sample_run)["audit_head"]["hash"]
    data_root = str(sample_run.zones.root)
    assert main(["audit", "verify", "--data-root", data_root, "--expect-head", shown]) == 0
    assert main(["audit", "verify", "--data-root", data_root, "--expect-head", shown[:16]]) == 0
    assert "TAMPERED" not in capsys.readouterr().err


def test_data_docs_are_linked_by_a_relative_path_that_resolves(sample_run):
    report, html = _report(sample_run), _html(sample_run)
    link = report["data_docs"]
    assert link and not Path(link).is_absolute()
    assert (sample_run.zones.governance / link).is_file()
    assert f'id="data-docs" href="{link}"' in html


def test_report_funnel_is_monotonic_per_source(sample_run):
    for row in _report(sample_run)["funnel"]:
        counts = [row[c] for c in ("ingested", "de-identified", "validated", "filtered", "deduplicated", "sharded")]
        assert counts == sorted(counts, reverse=True), row


def test_funnel_from_the_catalog_agrees_with_the_run_before_any_erasure(sample_run):
    """The funnel counts documents as they stand (so erasures show); with none applied it is the run's own."""
    report = _report(sample_run)
    assert report["erasures"] == []
    stage_column = {"ingest": "ingested", "deid": "de-identified", "curate": "deduplicated", "shard": "sharded"}
    for row in report["funnel"]:
        for stage, column in stage_column.items():
            assert row[column] == report["stages"][stage]["by_source"][row["source"]]["output"], (row, stage)
    assert sum(row["sharded"] for row in report["funnel"]) == report["documents_in_shards"]
