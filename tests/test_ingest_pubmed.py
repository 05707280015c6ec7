"""PubMed ingest: citations, deletions, gzip, streaming in bounded memory, and hostile XML refused."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from medcurate.core.schema import Document
from medcurate.sample import literature
from pipelines.ingest.base import BadInput, Deletion, RejectedRecord
from pipelines.ingest.pubmed import PubmedParser

HEAD = '<?xml version="1.0" encoding="utf-8"?>\n'


@pytest.fixture(scope="module")
def pubmed_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("literature")
    assert literature.write(out, [], seed=11) == []
    return out / "incoming" / "pubmed"


def _parse(path: Path) -> list:
    return list(PubmedParser().parse_file(path))


def _write(tmp_path: Path, body: str, name: str = "in.xml") -> Path:
    path = tmp_path / name
    path.write_text(HEAD + body, encoding="utf-8")
    return path


def test_baseline_articles_keep_sections_mesh_and_ids(pubmed_dir):
    docs = _parse(pubmed_dir / "pubmed26n0001.xml")
    assert len(docs) == 20 and all(isinstance(d, Document) for d in docs)
    first = docs[0]
    assert first.natural_key == f"pmid/{literature.FIRST_PMID}" and first.doc_type == "pubmed_abstract"
    assert first.patient_key is None and first.position == "article 0"
    meta = first.metadata
    assert meta["section_labels"] == ["BACKGROUND", "METHODS", "RESULTS", "CONCLUSIONS"]
    assert "\nBACKGROUND: " in first.text and "\nMETHODS: " in first.text
    assert first.text.startswith(meta["title"]) and "Humans" in meta["mesh_terms"]
    assert "Journal Article" in meta["publication_types"] and meta["language"] == "en"
    assert meta["doi"] == f"10.5555/sample.{literature.FIRST_PMID}" and meta["event_time"].year >= 2015
    assert meta["extra"]["pmid_version"] == "1"
    with_pmc = [d for d in docs if d.metadata["pmcid"]]
    assert with_pmc and all(d.metadata["pmcid"].startswith("PMC") for d in with_pmc)
    title_only = docs[5]
    assert title_only.text == title_only.metadata["title"] and title_only.metadata["section_labels"] is None
    assert sum(len(d.text.split()) for d in docs) > 1000


def test_gzip_update_revises_and_deletes(pubmed_dir):
    items = _parse(pubmed_dir / "pubmed26n0002.xml.gz")
    docs = [i for i in items if isinstance(i, Document)]
    assert [d.natural_key for d in docs][0] == f"pmid/{literature.FIRST_PMID + 2}"
    assert docs[0].metadata["extra"]["pmid_version"] == "2"
    assert [i for i in items if isinstance(i, Deletion)] == [Deletion(f"pmid/{literature.FIRST_PMID + 7}")]


def test_broken_files_are_refused_with_a_reason(pubmed_dir, tmp_path):
    with pytest.raises(BadInput) as caught:
        _parse(pubmed_dir / "pubmed26n0003.xml")
    assert caught.value.reason == "malformed_xml"
    data = (pubmed_dir / "pubmed26n0002.xml.gz").read_bytes()
    cut = tmp_path / "cut.xml.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInput) as caught:
        _parse(cut)
    assert caught.value.reason == "truncated_gzip"
    with pytest.raises(BadInput) as caught:
        _parse(_write(tmp_path, "<html><body/></html>"))
    assert caught.value.reason == "not_pubmed_xml"


def test_xml_bomb_is_refused_before_expansion(tmp_path):
    bomb = (
        '<!DOCTYPE PubmedArticleSet [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        + "]><PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>"
        "<ArticleTitle>&i;</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"
    )
    with pytest.raises(BadInput) as caught:
        _parse(_write(tmp_path, bomb))
    assert caught.value.reason == "unsafe_xml"


def test_external_entity_is_never_resolved(tmp_path):
    xxe = (
        '<!DOCTYPE PubmedArticleSet [<!ENTITY secret SYSTEM "file:///etc/passwd">]>'
        "<PubmedArticleSet><PubmedArticle><MedlineCitation><PMID>1</PMID><Article>"
        "<ArticleTitle>&secret;</ArticleTitle></Article></MedlineCitation></PubmedArticle></PubmedArticleSet>"
    )
    with pytest.raises(BadInput) as caught:
        _parse(_write(tmp_path, xxe))
    assert caught.value.reason == "unsafe_xml" and "passwd" not in str(caught.value)


def test_odd_records_inline_markup_and_dates(tmp_path):
    body = (
        "<PubmedArticleSet>"
        '<PubmedArticle><MedlineCitation><PMID Version="1">42</PMID><Article>'
        "<Journal><JournalIssue><PubDate><MedlineDate>1998 Dec-1999 Jan</MedlineDate></PubDate></JournalIssue>"
        "</Journal><ArticleTitle>CD4<sup>+</sup> cells in <i>HIV</i></ArticleTitle>"
        "<Abstract><AbstractText>Unstructured   abstract\n text.</AbstractText></Abstract>"
        "<Language>fre</Language></Article></MedlineCitation>"
        # A reference's ids must not be taken for the article's own.
        '<PubmedData><ArticleIdList><ArticleId IdType="pubmed">42</ArticleId></ArticleIdList><ReferenceList>'
        '<Reference><ArticleIdList><ArticleId IdType="doi">10.1/ref</ArticleId></ArticleIdList></Reference>'
        "</ReferenceList></PubmedData></PubmedArticle>"
        "<PubmedArticle><MedlineCitation><Article><ArticleTitle>No id</ArticleTitle></Article></MedlineCitation>"
        "</PubmedArticle>"
        "<PubmedBookArticle><BookDocument><PMID>7</PMID></BookDocument></PubmedBookArticle>"
        "</PubmedArticleSet>"
    )
    doc, no_pmid, book = _parse(_write(tmp_path, body))
    assert doc.text == "CD4+ cells in HIV\n\nUnstructured abstract text."
    assert doc.metadata["event_time"].year == 1998 and doc.metadata["language"] == "fr"
    assert doc.metadata["doi"] is None
    assert isinstance(no_pmid, RejectedRecord) and no_pmid.reason == "missing_pmid"
    assert isinstance(book, RejectedRecord) and book.reason == "unsupported_book_article"


def _write_large(path: Path, n_articles: int) -> None:
    abstract = "Background text about clinical outcomes and therapy in adults. " * 45
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
        out.write(HEAD + "<PubmedArticleSet>\n")
        for i in range(n_articles):
            out.write(
                f'<PubmedArticle><MedlineCitation><PMID Version="1">{i + 1}</PMID><Article>'
                f"<ArticleTitle>Article {i}</ArticleTitle><Abstract>"
                f'<AbstractText Label="BACKGROUND">{abstract}</AbstractText>'
                f'<AbstractText Label="RESULTS">{abstract}</AbstractText></Abstract>'
                f"<Language>eng</Language></Article></MedlineCitation></PubmedArticle>\n"
            )
        out.write("</PubmedArticleSet>\n")


def test_large_file_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.xml.gz"
    _write_large(path, 2000)
    with gzip.open(path, "rb") as f:
        uncompressed = sum(len(chunk) for chunk in iter(lambda: f.read(1 << 20), b""))
    assert uncompressed > 10_000_000
    count = 0
    tracemalloc.start()
    try:
        for item in PubmedParser().parse_file(path):
            count += isinstance(item, Document)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2000
    # Holding the tree would cost several times the file size; streaming stays at a few records' worth.
    assert peak < uncompressed / 20
