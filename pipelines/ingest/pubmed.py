"""PubMed baseline/update XML (``PubmedArticleSet``) -> one document per citation, deletions as ``Deletion``.

Baseline files are up to ~2 GB uncompressed, so the file is streamed: each ``PubmedArticle`` is turned into a
``Document`` the moment its end tag is seen and then cleared from the tree, keeping memory flat whatever the
file size.  Update files also carry ``DeleteCitation`` blocks; each PMID in them becomes a
``Deletion("pmid/<PMID>")`` so the earlier record is withdrawn instead of lingering in the corpus.

The natural key is the PMID alone (not its version): a revised citation replaces the earlier one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element

from medcurate.core.schema import Document
from pipelines.ingest.base import BadInput, Deletion, ParsedItem, Parser, RejectedRecord
from pipelines.ingest.xml_safety import iterparse_xml

MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
# PubMed writes ISO 639-2 codes; the rest of the pipeline (language filter) speaks ISO 639-1.
ISO_639_1 = {
    "eng": "en", "fre": "fr", "ger": "de", "spa": "es", "ita": "it", "por": "pt", "dut": "nl", "rus": "ru",
    "jpn": "ja", "chi": "zh", "kor": "ko", "pol": "pl", "swe": "sv", "dan": "da", "nor": "no", "tur": "tr",
}  # fmt: skip
RECORD_TAGS = {"PubmedArticle", "PubmedBookArticle", "DeleteCitation"}


def _text(elem: Element | None) -> str:
    """All text under ``elem`` (inline markup like <i>, <sup> flattened), whitespace collapsed."""
    return " ".join("".join(elem.itertext()).split()) if elem is not None else ""


def _month(value: str) -> int | None:
    value = value.strip().lower()
    if value.isdigit():
        return int(value) if 1 <= int(value) <= 12 else None
    return MONTHS.get(value[:3])


def _date(elem: Element | None) -> datetime | None:
    """A PubDate/ArticleDate as a datetime; missing month/day default to 1, MedlineDate keeps its year."""
    if elem is None:
        return None
    year = elem.findtext("Year")
    if year is None:
        found = re.search(r"\b(\d{4})\b", elem.findtext("MedlineDate") or "")
        return datetime(int(found.group(1)), 1, 1) if found else None
    if not year.strip().isdigit():
        return None
    month = _month(elem.findtext("Month") or "") or 1
    day_text = (elem.findtext("Day") or "").strip()
    try:
        return datetime(int(year), month, int(day_text) if day_text.isdigit() else 1)
    except ValueError:
        return datetime(int(year), 1, 1)


def _abstract(article: Element) -> tuple[list[str], list[str]]:
    """Abstract paragraphs as "LABEL: text" lines, and the labels in order."""
    lines, labels = [], []
    for part in article.findall("Abstract/AbstractText"):
        body = _text(part)
        if not body:
            continue
        label = (part.get("Label") or "").strip()
        if label:
            labels.append(label)
            lines.append(f"{label}: {body}")
        else:
            lines.append(body)
    return lines, labels


def article_document(elem: Element, index: int) -> Document | RejectedRecord:
    """One ``PubmedArticle`` element -> ``Document`` (or a rejection when it has no PMID)."""
    position = f"article {index}"
    citation = elem.find("MedlineCitation")
    pmid_elem = citation.find("PMID") if citation is not None else None
    pmid = (pmid_elem.text or "").strip() if pmid_elem is not None else ""
    if citation is None or not pmid:
        return RejectedRecord(position, index, "missing_pmid", "PubmedArticle without MedlineCitation/PMID")
    article = citation.find("Article")
    if article is None:
        return RejectedRecord(position, index, "missing_article", "MedlineCitation without Article")

    title = _text(article.find("ArticleTitle")) or _text(article.find("VernacularTitle"))
    abstract_lines, labels = _abstract(article)
    ids = {a.get("IdType"): (a.text or "").strip() for a in elem.findall("PubmedData/ArticleIdList/ArticleId")}
    doi = ids.get("doi") or next(
        ((e.text or "").strip() for e in article.findall("ELocationID") if e.get("EIdType") == "doi"), None
    )
    languages = [(lang.text or "").strip().lower() for lang in article.findall("Language")]
    metadata = {
        "title": title or None,
        "language": ISO_639_1.get(languages[0], languages[0]) if languages else None,
        "event_time": _date(article.find("Journal/JournalIssue/PubDate")) or _date(article.find("ArticleDate")),
        "section_labels": labels or None,
        "mesh_terms": [_text(d) for d in citation.findall("MeshHeadingList/MeshHeading/DescriptorName")] or None,
        "publication_types": [_text(p) for p in article.findall("PublicationTypeList/PublicationType")] or None,
        "pmid": pmid,
        "pmcid": ids.get("pmc") or None,
        "doi": doi or None,
        "extra": {
            "pmid_version": pmid_elem.get("Version"),
            "journal": _text(article.find("Journal/Title")) or None,
            "keywords": "; ".join(_text(k) for k in citation.findall("KeywordList/Keyword")) or None,
            "citation_status": citation.get("Status"),
        },
    }
    text = "\n\n".join(part for part in (title, "\n".join(abstract_lines)) if part)
    return Document(
        natural_key=f"pmid/{pmid}",
        position=position,
        record_index=index,
        doc_type="pubmed_abstract",
        text=text,
        patient_key=None,
        metadata=metadata,
    )


class PubmedParser(Parser):
    """Streams ``PubmedArticleSet`` files (plain or gzip); see the module docstring."""

    kind = "pubmed"

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        root: Element | None = None
        index = 0
        for event, elem in iterparse_xml(path, self.limits, record_tags=RECORD_TAGS):
            if root is None:
                root = elem
                if elem.tag != "PubmedArticleSet":
                    raise BadInput("not_pubmed_xml", "root element is not PubmedArticleSet")
                continue
            if event != "end" or elem.tag not in RECORD_TAGS:
                continue
            if elem.tag == "PubmedArticle":
                yield article_document(elem, index)
            elif elem.tag == "DeleteCitation":
                for pmid in elem.iter("PMID"):
                    if (pmid.text or "").strip():
                        yield Deletion(natural_key=f"pmid/{pmid.text.strip()}")
            else:
                yield RejectedRecord(f"article {index}", index, "unsupported_book_article", "PubmedBookArticle")
            if elem.tag != "DeleteCitation":
                index += 1
            # Drop everything parsed so far: only the current record is ever held in memory.
            root.clear()
