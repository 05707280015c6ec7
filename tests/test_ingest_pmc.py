"""PMC JATS ingest: sections under headings, captions kept, references dropped, licence kept, XML safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcurate.sample import literature
from pipelines.ingest.base import BadInput
from pipelines.ingest.pmc import PmcParser

NS = 'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:ali="http://www.niso.org/schemas/ali/1.0/"'


@pytest.fixture(scope="module")
def pmc_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("literature")
    literature.write(out, [], seed=5)
    return sorted((out / "incoming" / "pmc").glob("*.nxml"))


def _parse(path: Path):
    [doc] = PmcParser().parse_file(path)
    return doc


def _article(tmp_path: Path, meta: str, body: str = "") -> Path:
    path = tmp_path / "a.nxml"
    path.write_text(
        f'<?xml version="1.0"?>\n<article {NS} article-type="review-article"><front><article-meta>{meta}'
        f"</article-meta></front><body>{body}</body></article>",
        encoding="utf-8",
    )
    return path


def test_sample_article_keeps_sections_captions_and_licence(pmc_files):
    assert len(pmc_files) == literature.PMC_ARTICLES
    doc = _parse(pmc_files[0])
    meta = doc.metadata
    assert doc.natural_key == f"pmc/{pmc_files[0].stem}" and doc.doc_type == "pmc_article"
    assert meta["pmcid"] == pmc_files[0].stem and meta["pmid"] and meta["doi"].startswith("10.5555/")
    assert meta["section_labels"] == ["Introduction", "Methods", "Results", "Discussion"]
    assert meta["language"] == "en" and meta["publication_types"] == ["research-article"]
    assert meta["extra"]["license"] == "open-access"
    assert meta["extra"]["license_url"] == "https://creativecommons.org/licenses/by/4.0/"
    text = doc.text
    assert text.startswith(meta["title"] + "\n\nAbstract\n\nBackground\n\n")
    assert "\n\nStudy design\n\n" in text and "\n\nOutcomes\n\n" in text  # nested sec titles
    assert "Enrolment is shown in Figure 1. Baseline characteristics are given in Table 1." in text
    assert "\n\nFigure 1. Participant flow. Screening, randomisation" in text
    assert "\n\nTable 1. Baseline characteristics of the participants." in text
    assert "Age, years" not in text  # table bodies dropped, captions kept
    assert "Reference trial of" not in text and "References" not in text  # back matter dropped
    assert "Earlier work [1]." in text


def test_ids_fallbacks_and_licence_variants(tmp_path):
    doc = _parse(
        _article(
            tmp_path,
            '<article-id pub-id-type="pmc">12345</article-id><title-group><article-title>T</article-title>'
            "</title-group><permissions><license><ali:license_ref>https://example.org/lic</ali:license_ref>"
            "</license></permissions>",
            "<p>Body <list><list-item><p>one</p></list-item><list-item><p>two</p></list-item></list></p>",
        )
    )
    assert doc.natural_key == "pmc/PMC12345" and doc.metadata["extra"]["license"] == "https://example.org/lic"
    assert doc.text == "T\n\nBody\n\n- one\n- two"
    doc = _parse(
        _article(
            tmp_path,
            '<article-id pub-id-type="pmid">777</article-id><permissions><license>'
            "<license-p>Free to read.</license-p></license></permissions>",
        )
    )
    assert doc.natural_key == "pmid/777" and doc.metadata["extra"]["license"] == "Free to read."
    with pytest.raises(BadInput) as caught:
        _parse(_article(tmp_path, "<title-group><article-title>No ids</article-title></title-group>"))
    assert caught.value.reason == "missing_article_id"


@pytest.mark.parametrize(
    "doctype, reason",
    [
        ('<!DOCTYPE article [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>', "unsafe_xml"),
        ('<!DOCTYPE article [<!ENTITY secret SYSTEM "file:///etc/passwd">]>', "unsafe_xml"),
    ],
)
def test_entities_are_refused(tmp_path, doctype, reason):
    path = tmp_path / "evil.nxml"
    path.write_text(
        f'<?xml version="1.0"?>{doctype}<article><front><article-meta><article-id pub-id-type="pmc">PMC1'
        "</article-id><title-group><article-title>&b;&secret;</article-title></title-group>"
        "</article-meta></front></article>"
    )
    with pytest.raises(BadInput) as caught:
        _parse(path)
    assert caught.value.reason == reason


def test_non_article_and_malformed_files_are_refused(tmp_path):
    not_jats = tmp_path / "x.xml"
    not_jats.write_text("<PubmedArticleSet/>")
    with pytest.raises(BadInput) as caught:
        _parse(not_jats)
    assert caught.value.reason == "not_jats_article"
    broken = tmp_path / "y.nxml"
    broken.write_text("<article><front>")
    with pytest.raises(BadInput) as caught:
        _parse(broken)
    assert caught.value.reason == "malformed_xml"
