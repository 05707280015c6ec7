"""The whole pipeline on the bundled sample: what the issue's "done when" promises, checked on real output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import pytest
from tokenizers import Tokenizer

from medcurate.core.schema import RAW_DOCUMENT_SCHEMA
from medcurate.core.zones import read_zone
from medcurate.formats.date_text import shift_date_text
from pipelines.deid.config import default_config
from pipelines.deid.surrogates import Replacer

pytestmark = pytest.mark.slow


MONTH = (
    r"(january|february|march|april|may|june|july|august|september|october|november|december"
    r"|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)
NUMERIC_DATE = re.compile(r"(\d{1,2}|\d{4})[/.-]\d{1,2}([/.-](\d{2}|\d{4}))?([ T].*)?")


def _phi_strings(sample_dir: Path) -> list[str]:
    return json.loads((sample_dir / "gold" / "phi_strings.json").read_text())


def _is_date(value: str) -> bool:
    """Dates are checked per document: another patient's shifted date may legitimately read the same."""
    return bool(NUMERIC_DATE.fullmatch(value.strip()) or re.search(rf"\b{MONTH}\b", value, re.IGNORECASE))


def _is_bare_month(value: str) -> bool:
    """A month name alone (or with a year) survives date shifting often enough to be no evidence of a leak."""
    return bool(re.fullmatch(rf"{MONTH}(,?\s+\d{{4}})?", value.strip(), re.IGNORECASE))


def _phi_pattern(strings: list[str]) -> re.Pattern[str] | None:
    """Whole-token, case-insensitive match of every planted identifier of three or more characters.  A token
    ends at a separator only when no digit follows it: "12/29" inside a surrogate "12/29/2019" (another date of
    the document, shifted) is not that date."""
    usable = sorted({s for s in strings if len(s.strip()) >= 3}, key=len, reverse=True)
    if not usable:
        return None
    alternatives = "|".join(re.escape(s) for s in usable)
    return re.compile(rf"(?<![\w])(?<!\d[/.\-])({alternatives})(?![\w])(?![/.\-]\d)", re.IGNORECASE)


def _shard_texts(shards: Path):
    tokenizer = Tokenizer.from_file(str(shards / "tokenizer" / "tokenizer.json"))
    for split_dir in _split_dirs(shards):
        ds = datasets.load_from_disk(str(split_dir))
        for doc_id, ids in zip(ds["doc_id"], ds["input_ids"], strict=True):
            yield doc_id, tokenizer.decode(ids, skip_special_tokens=True)


def _split_dirs(shards: Path) -> list[Path]:
    return sorted(p.parent for p in shards.glob("*/dataset_info.json"))


def test_every_stage_ran_and_reported(sample_run):
    from medcurate.core.names import STAGE_NAMES

    assert [r.stage for r in sample_run.reports] == list(STAGE_NAMES)
    assert any(line.startswith("[1/") for line in sample_run.progress)
    for stage in STAGE_NAMES:
        assert (sample_run.zones.governance / "stages" / f"{stage}.json").exists()


def test_every_source_kind_reaches_the_shards(sample_run):
    shard_report = next(r for r in sample_run.reports if r.stage == "shard")
    reached = {source for source, counts in shard_report.sources.items() if counts.output > 0}
    assert reached == {s.name for s in sample_run.ctx.spec.sources}


def test_bad_input_files_are_quarantined_and_counted(sample_run):
    ingest = next(r for r in sample_run.reports if r.stage == "ingest")
    quarantined = [f for f in ingest.details["input_files"] if f["status"] == "quarantined"]
    assert quarantined, "the sample ships broken files; they must be quarantined, not dropped"
    assert all(f["reason"] for f in quarantined)
    copies = list((sample_run.zones.quarantine / "files").rglob("*"))
    assert len([c for c in copies if c.is_file()]) == len(quarantined)
    report = json.loads((sample_run.zones.governance / "report.json").read_text())
    assert report["input_files"]["quarantined"] == len(quarantined)


def test_shards_load_and_manifest_tokens_match(sample_run):
    shards = sample_run.zones.shards
    manifest = json.loads((shards / "manifest.json").read_text())
    total = 0
    for split_dir in _split_dirs(shards):
        ds = datasets.load_from_disk(str(split_dir))
        total += sum(len(ids) for ids in ds["input_ids"])
    assert total > 0
    assert manifest["totals"]["tokens"] == total


def test_no_planted_identifier_anywhere_in_shards(sample_run):
    """Names, MRNs, phones, emails, SSNs, addresses: none may appear in any shard document."""
    pattern = _phi_pattern([p for p in _phi_strings(sample_run.sample_dir) if not _is_date(p)])
    leaks = [
        (doc_id, m.group(0)) for doc_id, text in _shard_texts(sample_run.zones.shards) for m in pattern.finditer(text)
    ]
    assert not leaks, f"{len(leaks)} planted identifiers survived into shards, e.g. {leaks[:3]}"


def test_no_document_keeps_its_own_phi(sample_run):
    """Every planted string (dates included) found in a document's raw text is gone from its shard text.

    A date may legitimately reappear when another of the document's dates, moved back by the patient's offset,
    lands on it (a two-day stay shifted by two days): such a date is a surrogate, not a leak.
    """
    replacer = Replacer(sample_run.ctx.secret_key, default_config())
    raw = {r["doc_id"]: r for r in read_zone(sample_run.zones.raw, RAW_DOCUMENT_SCHEMA).to_pylist()}
    planted = _phi_pattern([p for p in _phi_strings(sample_run.sample_dir) if not _is_bare_month(p)])
    leaks = []
    for doc_id, text in _shard_texts(sample_run.zones.shards):
        own = {m.group(0) for m in planted.finditer(raw[doc_id]["text"])}
        offset = replacer.date_offset_days(raw[doc_id]["patient_key"] or "")
        surrogates = {shift_date_text(value, -offset) for value in own if _is_date(value)}
        pattern = _phi_pattern(sorted(own - surrogates))
        if pattern is not None:
            leaks.extend((doc_id, m.group(0)) for m in pattern.finditer(text))
    assert not leaks, f"{len(leaks)} of documents' own PHI strings survived, e.g. {leaks[:3]}"


def test_no_gold_phi_in_logs_reports_or_progress(sample_run):
    pattern = _phi_pattern([p for p in _phi_strings(sample_run.sample_dir) if not _is_date(p)])
    leaks = [line for line in sample_run.progress if pattern.search(line)]
    for path in sample_run.zones.governance.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".html", ".log", ".txt", ".csv", ".yml", ".yaml"}:
            for match in pattern.finditer(path.read_text(errors="replace")):
                leaks.append(f"{path.relative_to(sample_run.zones.root)}: {len(match.group(0))}-char identifier")
    assert not leaks, leaks[:5]


def test_phi_zones_are_owner_only(sample_run):
    for zone in (sample_run.zones.raw, sample_run.zones.quarantine):
        assert zone.stat().st_mode & 0o077 == 0
        for path in zone.rglob("*"):
            assert path.stat().st_mode & 0o077 == 0, path


def test_report_counts_stages_sources_and_phi(sample_run):
    report = json.loads((sample_run.zones.governance / "report.json").read_text())
    assert set(report["stages"]) >= {"ingest", "deid", "curate", "shard"}
    assert {row["source"] for row in report["funnel"]} == {s.name for s in sample_run.ctx.spec.sources}
    assert report["phi_by_type"] and all(n > 0 for n in report["phi_by_type"].values())
    assert report["validations"] and all("success" in v for v in report["validations"])
    assert report["manifest"]["totals"]["tokens"] > 0
    html = (sample_run.zones.governance / "report.html").read_text()
    for section in ("sources", "funnel", "phi", "quarantine", "validation", "shards"):
        assert f'id="{section}"' in html
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
