"""Sample literature: synthetic PubMed baseline/update XML and PMC Open Access JATS articles.

The files follow the real structures (PubMed DTD: ``PubmedArticleSet/PubmedArticle/MedlineCitation``...;
JATS: ``article/front/article-meta``, ``body/sec``, ``back/ref-list``) so the parsers meet what NLM ships,
including the DOCTYPE lines that name remote DTDs (which must never be fetched).  The text is composed from
a small clinical-trial vocabulary, each section from sentence variants plus optional sentences, so that two
abstracts on one topic share well under the 80% of words that makes a near-duplicate; it is free of any
patient data, so this writer plants no PHI.

Also written: an update file (gzip) that revises one citation and deletes another, an article without an
abstract, and one malformed XML file the ingest stage must quarantine.
"""

from __future__ import annotations

import gzip
import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from medcurate.sample.people import Patient

PUBMED_DOCTYPE = (
    '<!DOCTYPE PubmedArticleSet PUBLIC "-//NLM//DTD PubMedArticle, 1st January 2025//EN" '
    '"https://dtd.nlm.nih.gov/ncbi/pubmed/out/pubmed_250101.dtd">'
)
JATS_DOCTYPE = (
    '<!DOCTYPE article PUBLIC "-//NLM//DTD JATS (Z39.96) Journal Archiving and Interchange DTD v1.3 20210610//EN" '
    '"JATS-archivearticle1-3.dtd">'
)
XLINK = "http://www.w3.org/1999/xlink"
ALI = "http://www.niso.org/schemas/ali/1.0/"
XML_NS = "http://www.w3.org/XML/1998/namespace"
ET.register_namespace("xlink", XLINK)
ET.register_namespace("ali", ALI)

BASELINE_ARTICLES = 20
PMC_ARTICLES = 4
FIRST_PMID = 38_100_001
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
JOURNALS = (
    "Journal of Clinical Medicine",
    "BMC Internal Medicine",
    "Clinical Trials in Practice",
    "Annals of Evidence-Based Care",
    "Open Heart Research",
)


@dataclass(frozen=True)
class Topic:
    condition: str
    intervention: str
    comparator: str
    outcome: str
    population: str
    mesh: tuple[str, ...]


TOPICS = (
    Topic("type 2 diabetes", "metformin plus lifestyle coaching", "metformin alone", "HbA1c at 12 months",
          "adults with newly diagnosed disease", ("Diabetes Mellitus, Type 2", "Metformin", "Glycated Hemoglobin")),
    Topic("heart failure with reduced ejection fraction", "sacubitril-valsartan", "enalapril",
          "hospitalization for heart failure", "outpatients in NYHA class II-III",
          ("Heart Failure", "Stroke Volume", "Angiotensin Receptor Antagonists")),
    Topic("community-acquired pneumonia", "a five-day antibiotic course", "a ten-day course", "clinical cure at day 15",
          "hospitalized adults", ("Pneumonia", "Anti-Bacterial Agents", "Community-Acquired Infections")),
    Topic("major depressive disorder", "internet-delivered cognitive behavioural therapy", "usual primary care",
          "remission at 24 weeks", "primary care patients",
          ("Depressive Disorder, Major", "Cognitive Behavioral Therapy")),
    Topic("chronic kidney disease", "dapagliflozin", "placebo", "a sustained decline in eGFR",
          "patients with albuminuria", ("Renal Insufficiency, Chronic", "Sodium-Glucose Transporter 2 Inhibitors")),
    Topic("atrial fibrillation", "apixaban", "warfarin", "stroke or systemic embolism", "patients aged 75 or older",
          ("Atrial Fibrillation", "Anticoagulants", "Stroke")),
    Topic("asthma", "as-needed budesonide-formoterol", "as-needed salbutamol", "severe exacerbations",
          "adolescents and adults with mild asthma", ("Asthma", "Budesonide, Formoterol Fumarate Drug Combination")),
    Topic("sepsis", "early restrictive fluid resuscitation", "liberal fluid resuscitation", "90-day mortality",
          "patients in the intensive care unit", ("Sepsis", "Fluid Therapy", "Intensive Care Units")),
    Topic("knee osteoarthritis", "supervised exercise therapy", "education alone", "pain at 6 months",
          "adults over 50", ("Osteoarthritis, Knee", "Exercise Therapy", "Pain Measurement")),
    Topic("hypertension", "intensive blood-pressure control", "standard control", "major cardiovascular events",
          "older adults at high risk", ("Hypertension", "Blood Pressure", "Cardiovascular Diseases")),
    Topic("acute ischaemic stroke", "endovascular thrombectomy", "medical management", "functional independence",
          "patients with large-vessel occlusion", ("Ischemic Stroke", "Thrombectomy")),
    Topic("iron-deficiency anaemia in pregnancy", "intravenous ferric carboxymaltose", "oral ferrous sulfate",
          "haemoglobin at delivery", "pregnant women in the second trimester",
          ("Anemia, Iron-Deficiency", "Pregnancy")),
)  # fmt: skip
DESIGNS = (
    ("randomized controlled trial", "Randomized Controlled Trial"),
    ("prospective cohort study", "Observational Study"),
    ("multicentre pragmatic trial", "Pragmatic Clinical Trial"),
    ("systematic review and meta-analysis", "Meta-Analysis"),
    ("retrospective registry analysis", "Observational Study"),
)
SETTINGS = ("12 hospitals in four countries", "a regional primary care network", "three academic centres",
            "a national registry", "28 community clinics")  # fmt: skip
EVIDENCE_GAPS = (
    "Previous trials were small and short.",
    "Observational data suggest benefit, but confounding by indication is likely.",
    "Guidelines differ, and practice varies widely between centres.",
)
LIMITATIONS = (
    "Follow-up was shorter than planned because of slow recruitment.",
    "Outcome assessors were not blinded to allocation.",
    "The population was predominantly of European ancestry, which limits generalisability.",
    "Adherence was self-reported.",
)


BACKGROUNDS = (
    "Whether {intervention} improves outcomes in {condition} compared with {comparator} is uncertain.",
    "{Condition} carries substantial morbidity, and the place of {intervention} remains debated.",
    "Evidence comparing {intervention} with {comparator} for {condition} is limited.",
    "Current guidance on {condition} favours {comparator}, yet {intervention} is increasingly used.",
)
METHODS = (
    "In this {design} conducted at {setting}, we enrolled {n} {population} and assigned them to {intervention} "
    "or {comparator}. The primary outcome was {outcome}; participants were followed for a median of {months} "
    "months.",
    "We performed a {design} at {setting}. A total of {n} {population} received either {intervention} or "
    "{comparator} and were followed for {months} months. The primary end point was {outcome}.",
    "{n} {population} at {setting} were included in this {design}. Exposure was {intervention}, compared with "
    "{comparator}, and {outcome} was assessed over {months} months.",
)
EXTRA_METHODS = (
    "Randomisation was stratified by site and age group.",
    "Analyses followed the intention-to-treat principle.",
    "Missing data were handled by multiple imputation.",
    "Secondary outcomes included quality of life and all-cause mortality.",
    "An independent committee adjudicated all events.",
    "Propensity scores were used to balance baseline characteristics.",
)
RESULTS = (
    "The primary outcome occurred in {p1}% of the intervention group and {p2}% of the control group (hazard "
    "ratio {effect}; 95% CI {low} to {high}).",
    "{Outcome} was observed in {p1}% with {intervention} versus {p2}% with {comparator} (HR {effect}, 95% "
    "confidence interval {low}-{high}).",
    "Compared with {comparator}, {intervention} was associated with a hazard ratio of {effect} ({low} to {high}) "
    "for {outcome}; event rates were {p1}% and {p2}%.",
)
EXTRA_RESULTS = (
    "Serious adverse events were similar in both groups ({a1}% vs. {a2}%).",
    "Mean age was {age} years and {women}% were women.",
    "Adherence at the final visit was {adherence}%.",
    "Results were consistent across prespecified subgroups.",
    "{lost} participants were lost to follow-up.",
    "Discontinuation because of adverse events was more frequent with {intervention}.",
)
CONCLUSIONS = (
    "{Intervention} {led} to a significant difference in {outcome} compared with {comparator}.",
    "Among {population}, {intervention} {led} to a difference in {outcome}.",
    "These findings {support} the use of {intervention} over {comparator} in {condition}.",
)


def _abstract_sections(topic: Topic, design: str, rng: random.Random) -> list[tuple[str, str]]:
    """The four structured-abstract sections, each phrased from sentence variants with optional sentences, so
    two abstracts on one topic read as different papers (as they do) rather than as near-duplicates."""
    effect = round(rng.uniform(0.55, 0.97), 2)
    low, high = round(effect - rng.uniform(0.05, 0.2), 2), round(min(effect + rng.uniform(0.05, 0.2), 1.2), 2)
    significant = high < 1
    words = {
        "intervention": topic.intervention,
        "Intervention": topic.intervention.capitalize(),
        "comparator": topic.comparator,
        "condition": topic.condition,
        "Condition": topic.condition.capitalize(),
        "outcome": topic.outcome,
        "Outcome": topic.outcome.capitalize(),
        "population": topic.population,
        "design": design,
        "setting": rng.choice(SETTINGS),
        "n": str(rng.randint(180, 4200)),
        "months": str(rng.choice((6, 12, 18, 24, 36))),
        "p1": f"{rng.randint(5, 30)}.{rng.randint(0, 9)}",
        "p2": f"{rng.randint(10, 40)}.{rng.randint(0, 9)}",
        "effect": f"{effect:.2f}",
        "low": f"{low:.2f}",
        "high": f"{high:.2f}",
        "a1": str(rng.randint(2, 12)),
        "a2": str(rng.randint(2, 12)),
        "age": str(rng.randint(45, 78)),
        "women": str(rng.randint(20, 70)),
        "adherence": str(rng.randint(60, 95)),
        "lost": str(rng.randint(3, 90)),
        "led": "led" if significant else "did not lead",
        "support": "support" if significant else "do not support",
    }

    def text(variants: tuple[str, ...], extras: tuple[str, ...] = (), low_extra: int = 0, tail: str = "") -> str:
        sentences = [rng.choice(variants)] + rng.sample(extras, rng.randint(low_extra, min(3, len(extras))))
        return " ".join(s.format_map(words) for s in sentences + ([tail] if tail else []))

    return [
        ("BACKGROUND", text(BACKGROUNDS, EVIDENCE_GAPS)),
        ("METHODS", text(METHODS, EXTRA_METHODS)),
        ("RESULTS", text(RESULTS, EXTRA_RESULTS, 1)),
        ("CONCLUSIONS", text(CONCLUSIONS, LIMITATIONS, 1)),
    ]


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    elem = ET.SubElement(parent, tag, attrs)
    if text is not None:
        elem.text = text
    return elem


def _date(parent: ET.Element, tag: str, year: int, month: int, day: int, **attrs: str) -> None:
    date = _sub(parent, tag, **attrs)
    _sub(date, "Year", str(year))
    _sub(date, "Month", MONTHS[month - 1] if tag == "PubDate" else f"{month:02d}")
    _sub(date, "Day", f"{day:02d}")


def _pubmed_article(pmid: int, rng: random.Random, version: int = 1, with_abstract: bool = True) -> ET.Element:
    topic = rng.choice(TOPICS)
    design, publication_type = rng.choice(DESIGNS)
    year, month, day = rng.randint(2015, 2025), rng.randint(1, 12), rng.randint(1, 28)
    root = ET.Element("PubmedArticle")
    citation = _sub(root, "MedlineCitation", Status="MEDLINE", Owner="NLM")
    _sub(citation, "PMID", str(pmid), Version=str(version))
    article = _sub(citation, "Article", PubModel="Print-Electronic")
    journal = _sub(article, "Journal")
    _sub(journal, "ISSN", f"{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}", IssnType="Electronic")
    issue = _sub(journal, "JournalIssue", CitedMedium="Internet")
    _sub(issue, "Volume", str(rng.randint(5, 90)))
    _date(issue, "PubDate", year, month, day)
    _sub(journal, "Title", rng.choice(JOURNALS))
    title = _sub(article, "ArticleTitle", f"{topic.intervention.capitalize()} versus {topic.comparator} in ")
    italic = _sub(title, "i", topic.condition)
    italic.tail = f": a {design}."
    _sub(article, "ELocationID", f"10.5555/sample.{pmid}", EIdType="doi", ValidYN="Y")
    if with_abstract:
        abstract = _sub(article, "Abstract")
        for label, text in _abstract_sections(topic, design, rng):
            _sub(abstract, "AbstractText", text, Label=label, NlmCategory=label)
    _sub(article, "Language", "eng")
    types = _sub(article, "PublicationTypeList")
    _sub(types, "PublicationType", "Journal Article", UI="D016428")
    _sub(types, "PublicationType", publication_type)
    _date(article, "ArticleDate", year, month, day, DateType="Electronic")
    mesh = _sub(citation, "MeshHeadingList")
    for term in ("Humans", *topic.mesh):
        heading = _sub(mesh, "MeshHeading")
        _sub(heading, "DescriptorName", term, MajorTopicYN="N")
    pubmed_data = _sub(root, "PubmedData")
    _sub(pubmed_data, "PublicationStatus", "ppublish")
    ids = _sub(pubmed_data, "ArticleIdList")
    _sub(ids, "ArticleId", str(pmid), IdType="pubmed")
    _sub(ids, "ArticleId", f"10.5555/sample.{pmid}", IdType="doi")
    if pmid % 3 == 0:
        _sub(ids, "ArticleId", f"PMC{pmid + 7_000_000}", IdType="pmc")
    return root


def _xml_text(root: ET.Element, doctype: str) -> str:
    ET.indent(root)
    return f'<?xml version="1.0" encoding="utf-8"?>\n{doctype}\n{ET.tostring(root, encoding="unicode")}\n'


def _write_pubmed(pubmed_dir: Path, rng: random.Random) -> None:
    pmids = [FIRST_PMID + i for i in range(BASELINE_ARTICLES)]
    baseline = ET.Element("PubmedArticleSet")
    for i, pmid in enumerate(pmids):
        baseline.append(_pubmed_article(pmid, rng, with_abstract=i != 5))
    (pubmed_dir / "pubmed26n0001.xml").write_text(_xml_text(baseline, PUBMED_DOCTYPE), encoding="utf-8")

    update = ET.Element("PubmedArticleSet")
    update.append(_pubmed_article(pmids[2], rng, version=2))  # a revised citation replaces the baseline one
    update.append(_pubmed_article(FIRST_PMID + BASELINE_ARTICLES, rng))
    delete = _sub(update, "DeleteCitation")
    _sub(delete, "PMID", str(pmids[7]), Version="1")
    (pubmed_dir / "pubmed26n0002.xml.gz").write_bytes(
        gzip.compress(_xml_text(update, PUBMED_DOCTYPE).encode(), mtime=0)
    )
    broken_set = ET.Element("PubmedArticleSet")
    broken_set.append(_pubmed_article(FIRST_PMID + 99, rng))
    broken = _xml_text(broken_set, PUBMED_DOCTYPE)
    (pubmed_dir / "pubmed26n0003.xml").write_text(broken[: len(broken) // 2], encoding="utf-8")


def _paragraph(parent: ET.Element, text: str, xref: str | None = None) -> ET.Element:
    p = _sub(parent, "p", text)
    if xref:
        ref = _sub(p, "xref", xref, **{"ref-type": "bibr", "rid": "r1"})
        ref.tail = "."
    return p


def _pmc_article(index: int, rng: random.Random) -> ET.Element:
    topic = TOPICS[(index * 5) % len(TOPICS)]
    design, _ = DESIGNS[index % len(DESIGNS)]
    sections = _abstract_sections(topic, design, rng)
    pmcid, pmid = f"PMC{9_100_000 + index}", str(FIRST_PMID + 500 + index)
    root = ET.Element("article", {"article-type": "research-article", f"{{{XML_NS}}}lang": "en"})
    front = _sub(root, "front")
    journal_meta = _sub(front, "journal-meta")
    _sub(_sub(journal_meta, "journal-title-group"), "journal-title", JOURNALS[index % len(JOURNALS)])
    meta = _sub(front, "article-meta")
    _sub(meta, "article-id", pmid, **{"pub-id-type": "pmid"})
    _sub(meta, "article-id", pmcid, **{"pub-id-type": "pmc"})
    _sub(meta, "article-id", f"10.5555/pmc.{index}", **{"pub-id-type": "doi"})
    _sub(_sub(meta, "title-group"), "article-title", f"{topic.intervention.capitalize()} for {topic.condition}")
    date = _sub(meta, "pub-date", **{"pub-type": "epub"})
    for tag, value in (("day", rng.randint(1, 28)), ("month", rng.randint(1, 12)), ("year", rng.randint(2016, 2025))):
        _sub(date, tag, str(value))
    url = "https://creativecommons.org/licenses/by/4.0/"
    license_ = _sub(_sub(meta, "permissions"), "license", **{"license-type": "open-access", f"{{{XLINK}}}href": url})
    _sub(license_, f"{{{ALI}}}license_ref", url)
    _sub(license_, "license-p", "This is an open access article distributed under the terms of the CC BY licence.")
    abstract = _sub(meta, "abstract")
    for label, text in sections:
        sec = _sub(abstract, "sec")
        _sub(sec, "title", label.capitalize())
        _paragraph(sec, text)
    keywords = _sub(meta, "kwd-group")
    for term in topic.mesh:
        _sub(keywords, "kwd", term)

    body = _sub(root, "body")
    intro = _sub(body, "sec", id="s1")
    _sub(intro, "title", "Introduction")
    _paragraph(intro, f"{topic.condition.capitalize()} is common and costly. {sections[0][1]} Earlier work ", "[1]")
    methods = _sub(body, "sec", id="s2")
    _sub(methods, "title", "Methods")
    outcomes = f"The primary outcome was {topic.outcome}, assessed by investigators unaware of group assignment."
    for sub_title, text in (("Study design", sections[1][1]), ("Outcomes", outcomes)):
        sub = _sub(methods, "sec")
        _sub(sub, "title", sub_title)
        _paragraph(sub, text)
    results = _sub(body, "sec", id="s3")
    _sub(results, "title", "Results")
    paragraph = _paragraph(results, f"{sections[2][1]} Enrolment is shown in ")
    _sub(paragraph, "xref", "Figure 1", **{"ref-type": "fig", "rid": "f1"}).tail = ". "
    fig = _sub(paragraph, "fig", id="f1")  # JATS allows a float inside the paragraph that cites it
    fig.tail = "Baseline characteristics are given in Table 1."
    _sub(fig, "label", "Figure 1")
    caption = _sub(fig, "caption")
    _sub(caption, "title", "Participant flow.")
    _sub(caption, "p", f"Screening, randomisation and follow-up of {topic.population}.")
    _sub(fig, "graphic", **{f"{{{XLINK}}}href": f"fig{index}.jpg"})
    table_wrap = _sub(results, "table-wrap", id="t1")
    _sub(table_wrap, "label", "Table 1")
    _sub(_sub(table_wrap, "caption"), "p", "Baseline characteristics of the participants.")
    row = _sub(_sub(_sub(table_wrap, "table"), "tbody"), "tr")
    for cell in ("Age, years", f"{rng.randint(45, 78)} ± {rng.randint(6, 14)}"):
        _sub(row, "td", cell)
    discussion = _sub(body, "sec", id="s4")
    _sub(discussion, "title", "Discussion")
    _paragraph(discussion, sections[3][1])

    back = _sub(root, "back")
    refs = _sub(back, "ref-list")
    _sub(refs, "title", "References")
    ref = _sub(refs, "ref", id="r1")
    _sub(ref, "mixed-citation", f"Reference trial of {topic.comparator}. Sample Journal. 2014;3:1-9.")
    return root


def write(out_dir: Path, cohort: list[Patient], seed: int) -> list[str]:
    """Write ``incoming/pubmed/`` and ``incoming/pmc/``; literature carries no patient PHI, so returns []."""
    rng = random.Random(seed)
    pubmed_dir = out_dir / "incoming" / "pubmed"
    pmc_dir = out_dir / "incoming" / "pmc"
    pubmed_dir.mkdir(parents=True, exist_ok=True)
    pmc_dir.mkdir(parents=True, exist_ok=True)
    _write_pubmed(pubmed_dir, rng)
    for index in range(PMC_ARTICLES):
        article = _pmc_article(index, rng)
        (pmc_dir / f"PMC{9_100_000 + index}.nxml").write_text(_xml_text(article, JATS_DOCTYPE), encoding="utf-8")
    return []
