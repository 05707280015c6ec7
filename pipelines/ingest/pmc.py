"""PMC Open Access JATS articles (``.nxml``) -> one full-text document per file.

The text keeps what a language model should read: title, abstract, body sections under their headings
(nested ``sec/title``), paragraphs, lists, and figure/table captions.  It drops what would only add noise:
the whole back matter (reference lists, acknowledgements, footnotes), table bodies, formulas, graphics and
supplementary-material stubs.  The article's licence (from ``<permissions><license>``) is kept in
``extra["license"]`` because open-access reuse terms differ per article, not per source.

A JATS file holds one article, so it is parsed whole, through the same entity-refusing parser as PubMed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from xml.etree.ElementTree import Element

from medcurate.core.schema import Document
from pipelines.ingest.base import BadInput, ParsedItem, Parser
from pipelines.ingest.xml_safety import parse_xml

ALI_LICENSE_REF = "{http://www.niso.org/schemas/ali/1.0/}license_ref"
XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
CAPTIONED = {"fig", "table-wrap"}
# Containers whose children are rendered in place; anything not named here or below is dropped.
PASS_THROUGH = {"fig-group", "table-wrap-group", "boxed-text", "disp-quote", "body", "abstract", "floats-group"}
# Inline children of a paragraph that are blocks of their own (rendered after the paragraph, or dropped).
SPLIT_OUT_OF_PARAGRAPH = CAPTIONED | {"fig-group", "table-wrap-group", "list", "disp-formula", "table", "graphic"}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _inline_text(elem: Element, split_out: list[Element]) -> str:
    """Text of ``elem`` with block-level children removed (their tails kept) and collected in ``split_out``."""
    parts = [elem.text or ""]
    for child in elem:
        if child.tag in SPLIT_OUT_OF_PARAGRAPH:
            split_out.append(child)
        else:
            parts.append(_inline_text(child, split_out))
        parts.append(child.tail or "")
    return "".join(parts)


def _caption(elem: Element) -> str:
    """'Figure 1. Title. Caption paragraphs.' for a fig or table-wrap; empty when it has no caption."""
    caption = elem.find("caption")
    if caption is None:
        return ""
    label = _flat("".join(elem.find("label").itertext())) if elem.find("label") is not None else ""
    body = _flat(" ".join(_inline_text(part, []) for part in caption))
    return f"{label}. {body}" if label and body else body


def _render(elem: Element, blocks: list[str], headings: list[str] | None = None) -> None:
    """Append the readable blocks of ``elem``'s children to ``blocks`` (empty ones are dropped at the end).

    Top-level section titles also go to ``headings``.
    """
    for child in elem:
        _render_block(child, blocks, headings)


def _render_block(elem: Element, blocks: list[str], headings: list[str] | None = None) -> None:
    tag = elem.tag
    if tag == "sec":
        title = _flat("".join(elem.find("title").itertext())) if elem.find("title") is not None else ""
        if title:
            blocks.append(title)
            if headings is not None:
                headings.append(title)
        _render(elem, blocks)
    elif tag == "p":
        split_out: list[Element] = []
        blocks.append(_flat(_inline_text(elem, split_out)))
        for block in split_out:
            _render_block(block, blocks)
    elif tag == "list":
        items = [_flat(_inline_text(item, [])) for item in elem.findall("list-item")]
        blocks.append("\n".join(f"- {item}" for item in items if item))
    elif tag in CAPTIONED:
        blocks.append(_caption(elem))
    elif tag in PASS_THROUGH:
        _render(elem, blocks)


def _pub_date(meta: Element) -> datetime | None:
    for date in meta.findall("pub-date"):
        year = (date.findtext("year") or "").strip()
        if not year.isdigit():
            continue
        month = (date.findtext("month") or "").strip()
        day = (date.findtext("day") or "").strip()
        try:
            return datetime(int(year), int(month) if month.isdigit() else 1, int(day) if day.isdigit() else 1)
        except ValueError:
            return datetime(int(year), 1, 1)
    return None


def _license(meta: Element) -> tuple[str | None, str | None]:
    """(licence name, licence URL): license-type, else ali:license_ref, else the license-p sentence."""
    lic = meta.find("permissions/license")
    if lic is None:
        return None, None
    ref = _flat(lic.findtext(ALI_LICENSE_REF) or "")
    url = ref or (lic.get(XLINK_HREF) or "").strip()
    paragraph = _flat(" ".join("".join(p.itertext()) for p in lic.findall("license-p")))
    name = (lic.get("license-type") or "").strip() or ref or paragraph
    return name or None, url or None


def _article_ids(meta: Element) -> dict[str, str]:
    ids = {a.get("pub-id-type"): _flat(a.text or "") for a in meta.findall("article-id")}
    pmcid = ids.get("pmcid") or ids.get("pmc") or ""
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    return {"pmcid": pmcid.upper(), "pmid": ids.get("pmid", ""), "doi": ids.get("doi", "")}


def article_document(root: Element) -> Document:
    """One JATS ``<article>`` -> ``Document``; raises ``BadInput`` when it is not an identifiable article."""
    meta = root.find("front/article-meta")
    if root.tag != "article" or meta is None:
        raise BadInput("not_jats_article", "root is not <article> with front/article-meta")
    ids = _article_ids(meta)
    if ids["pmcid"]:
        natural_key = f"pmc/{ids['pmcid']}"
    elif ids["pmid"]:
        natural_key = f"pmid/{ids['pmid']}"
    elif ids["doi"]:
        natural_key = f"doi/{ids['doi'].lower()}"
    else:
        raise BadInput("missing_article_id", "article-meta has no pmcid, pmid or doi")

    title_elem = meta.find("title-group/article-title")
    title = _flat("".join(title_elem.itertext())) if title_elem is not None else ""
    abstracts = meta.findall("abstract")
    abstract = next((a for a in abstracts if a.get("abstract-type") is None), abstracts[0] if abstracts else None)
    blocks: list[str] = [title] if title else []
    if abstract is not None:
        blocks.append("Abstract")
        _render(abstract, blocks)
    headings: list[str] = []
    for part in ("body", "floats-group"):
        found = root.find(part)
        if found is not None:
            _render(found, blocks, headings)
    license_name, license_url = _license(meta)
    keywords = [_flat("".join(k.itertext())) for k in meta.findall("kwd-group/kwd")]
    journal = root.findtext("front/journal-meta/journal-title-group/journal-title")
    language = (root.get(XML_LANG) or "").strip().lower()
    metadata = {
        "title": title or None,
        "language": re.split(r"[-_]", language)[0] or None,
        "event_time": _pub_date(meta),
        "section_labels": headings or None,
        "publication_types": [root.get("article-type")] if root.get("article-type") else None,
        "pmid": ids["pmid"] or None,
        "pmcid": ids["pmcid"] or None,
        "doi": ids["doi"] or None,
        "extra": {
            "license": license_name,
            "license_url": license_url,
            "journal": _flat(journal) if journal else None,
            "keywords": "; ".join(k for k in keywords if k) or None,
        },
    }
    return Document(
        natural_key=natural_key,
        position="article",
        record_index=0,
        doc_type="pmc_article",
        text="\n\n".join(block for block in blocks if block),
        patient_key=None,
        metadata=metadata,
    )


class PmcParser(Parser):
    """One JATS article per file; see the module docstring."""

    kind = "pmc"

    def parse_file(self, path: Path) -> Iterator[ParsedItem]:
        yield article_document(parse_xml(path, self.limits))
