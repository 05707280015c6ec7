"""The curate steps one by one, on small synthetic documents: every filter, each dedup level, decontamination,
the residual-PHI gate and the raw identifier extractors.  Real ftfy, py3langid and datasketch; no GX here."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasketch import MinHashLSH
from pydicom.dataset import Dataset

from medcurate.core import address_policy
from medcurate.core.context import StageReport
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.schema import CSV_ROW_KEY, DEID_DOCUMENT_SCHEMA, FHIR_JSON_KEY, HL7_MESSAGE_KEY
from medcurate.core.spec import SpecError, parse_spec
from medcurate.core.zones import Zones
from medcurate.sample import literature
from pipelines.deid.dicom import DicomDeidentifier, _check_address_rules
from pipelines.deid.dicom_profile import Profile, ProfileRule, load_profile
from pipelines.ingest.dicom import instance_document
from pipelines.quality import dedup_index
from pipelines.quality.clean_pass import cleaned_batches
from pipelines.quality.curation_config import Benchmark, DedupConfig, curation_config
from pipelines.quality.decontam import BenchmarkNgrams, Decontaminator
from pipelines.quality.dedup import (
    LSH_WEIGHTS,
    CopyForwardDedup,
    ExactDedup,
    NearDedup,
    candidate_threshold,
    minhash_signatures,
    published_entries,
    shingles,
)
from pipelines.quality.dedup_index import PublishedIndex, save_index
from pipelines.quality.dedup_store import DocRegister, SequenceCache
from pipelines.quality.filters import (
    BoilerplateStripper,
    CharacterRatioFilter,
    LanguageFilter,
    LengthFilter,
    MojibakeRepair,
    NearEmptyFilter,
    RepeatedLinesFilter,
    filter_steps,
)
from pipelines.quality.lsh_buckets import BandedBuckets, band_groups
from pipelines.quality.phi_gate import RawPatientIndex, ResidualPhiGate, load_gate_config
from pipelines.quality.raw_identifiers import dicom_identifiers, identifiers
from pipelines.quality.steps import Ledger, run_steps
from pipelines.quality.text_norm import exact_key, mask_numbers, words
from pipelines.quality.word_similarity import WordSequence
from pipelines.quality.zone_io import relaxed

SOURCES = {"notes": "notes_csv", "ehr": "fhir", "lab": "hl7v2", "pubmed": "pubmed", "pmc": "pmc"}

NOTE = (
    "Progress Note - MICU\n"
    "S: patient c/o abdominal pain 6/10, nausea and vomiting overnight. Tolerating clear liquids this morning.\n"
    "O: Tmax 100.4, HR 96, BP 112/68, RR 18, SpO2 96% on 2L. I/O 1.2L/800cc.\n"
    "Gen: no acute distress, alert and oriented. Abd: soft, mild right upper quadrant tenderness.\n"
    "A/P: 54 y/o with cholecystitis s/p percutaneous cholecystostomy. Continue piperacillin-tazobactam,\n"
    "surgery following, HIDA scan tomorrow. DVT prophylaxis with subcutaneous heparin. Full code."
)
ABSTRACT = (
    "Background: whether early restrictive fluid resuscitation improves outcomes in sepsis compared with "
    "liberal fluid resuscitation is uncertain. Methods: in this randomized controlled trial conducted at a "
    "national registry, we enrolled 3718 patients in the intensive care unit and assigned them to early "
    "restrictive fluid resuscitation or liberal fluid resuscitation. The primary outcome was 90-day mortality. "
    "Results: the primary outcome occurred in 13.5% of the intervention group and 32.9% of the control group. "
    "Conclusions: early restrictive resuscitation led to a significant difference in 90-day mortality."
)


def doc(doc_id: str, source: str, text: str, **extra) -> dict:
    row = {
        "doc_id": doc_id,
        "source": source,
        "source_kind": SOURCES[source],
        "source_file": "src-00000000000000aa",
        "source_sha256": "0" * 64,
        "position": "line 1",
        "doc_type": "clinical_note" if SOURCES[source] in ("notes_csv", "fhir", "hl7v2") else "abstract",
        "text": text,
        "metadata": {"event_time": None},
        "patient_pseudonym": None,
    }
    row.update(extra)
    return row


@pytest.fixture
def zones(tmp_path: Path) -> Zones:
    return Zones(tmp_path / "data").ensure()


@pytest.fixture
def ledger(zones: Zones) -> Ledger:
    return Ledger(QuarantineWriter(zones, "curate", "run-test"), StageReport(stage="curate", run_id="run-test"))


def quarantined(ledger: Ledger, zones: Zones) -> list[tuple[str, str, str]]:
    ledger.writer.flush()
    rows = [r for p in sorted((zones.quarantine / "curate").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return sorted((r["doc_id"], r["reason"], r["detail"]) for r in rows)


def thresholds(tmp_path: Path, overrides: dict | None = None) -> dict:
    data = {
        "sources": [{"name": "n", "kind": "notes_csv", "paths": ["x"], "license": "l", "legal_basis": "waiver"}],
        "quality": {"filters": overrides or {}},
    }
    return curation_config(parse_spec(data, tmp_path)).filters


# ---- filters ------------------------------------------------------------------------------------------------


def test_mojibake_is_repaired_not_dropped(tmp_path: Path, ledger: Ledger) -> None:
    broken = doc("d1", "notes", NOTE.replace("Tmax 100.4", "Tmax 38.0Â°C").replace("c/o", "câ€™o"))
    kept = run_steps([MojibakeRepair(thresholds(tmp_path))], [broken], ledger)
    assert [d["doc_id"] for d in kept] == ["d1"]
    assert "38.0°C" in kept[0]["text"] and "c’o" in kept[0]["text"]
    assert ledger.tallies["mojibake_repair"].modified["notes"] == {"mojibake_repaired": 1}


def test_boilerplate_lines_are_stripped(tmp_path: Path, ledger: Ledger) -> None:
    signed = doc("d1", "notes", NOTE + "\nElectronically signed by Dr. [NAME] on 06/01/2019 16:42\nPage 1 of 1")
    step = BoilerplateStripper(thresholds(tmp_path))
    (kept,) = run_steps([step], [signed], ledger)
    assert kept["text"] == NOTE
    assert step.summary() == {"lines_removed": 2}


def test_near_empty_after_deid_is_dropped(tmp_path: Path, ledger: Ledger, zones: Zones) -> None:
    tags_only = doc("d1", "notes", "[NAME] [NAME], MRN [ID], DOB [DATE], phone [PHONE], [ADDRESS] [LOCATION] [ZIP]")
    kept = run_steps([NearEmptyFilter(thresholds(tmp_path))], [tags_only, doc("d2", "notes", NOTE)], ledger)
    assert [d["doc_id"] for d in kept] == ["d2"]
    assert [(d, r) for d, r, _ in quarantined(ledger, zones)] == [("d1", "near_empty_after_deid")]


def test_length_bounds_per_kind(tmp_path: Path, ledger: Ledger, zones: Zones) -> None:
    limits = thresholds(tmp_path, {"notes_csv": {"max_chars": 300}})
    docs = [doc("short", "pubmed", "Aspirin in stroke."), doc("long", "notes", NOTE), doc("ok", "pubmed", ABSTRACT)]
    kept = run_steps([LengthFilter(limits)], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["ok"]
    assert [(d, r) for d, r, _ in quarantined(ledger, zones)] == [("long", "too_long"), ("short", "too_short")]


def test_character_ratios_are_loose_for_clinical_text_and_tight_for_literature(
    tmp_path: Path, ledger: Ledger, zones: Zones
) -> None:
    table_junk = "Table 2 " + " ".join(f"{i * 37 % 1000} {i * 13 % 97}" for i in range(40))
    ascii_art = "Results\n" + "+----+----+----+\n| -- | ** | == |\n" * 6 + "see figure"
    vitals = "Vitals 06:00 HR 96 BP 112/68 RR 18 SpO2 96% T 37.9\n" * 2 + NOTE
    docs = [doc("junk", "pubmed", table_junk), doc("art", "pmc", ascii_art), doc("vitals", "notes", vitals)]
    kept = run_steps([CharacterRatioFilter(thresholds(tmp_path))], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["vitals"]
    reasons = {d: r for d, r, _ in quarantined(ledger, zones)}
    assert reasons == {"junk": "digit_ratio", "art": "symbol_ratio"}


def test_repeated_lines_are_dropped(tmp_path: Path, ledger: Ledger, zones: Zones) -> None:
    looped = "\n".join(["Pain assessment: see flowsheet."] * 8 + ["Patient resting comfortably."])
    kept = run_steps([RepeatedLinesFilter(thresholds(tmp_path))], [doc("loop", "notes", looped)], ledger)
    assert kept == []
    assert [(d, r) for d, r, _ in quarantined(ledger, zones)] == [("loop", "repeated_lines")]


def test_language_identification_keeps_clinical_english_and_drops_other_languages(
    tmp_path: Path, ledger: Ledger, zones: Zones
) -> None:
    german = (
        "Der Patient klagt seit zwei Tagen über starke Bauchschmerzen im rechten Oberbauch und Übelkeit. "
        "Die Laborwerte zeigen eine Leukozytose. Wir empfehlen eine Sonographie des Abdomens und eine "
        "antibiotische Therapie. Der Patient wird auf die chirurgische Station verlegt."
    )
    caps = (
        "NURSING PROGRESS NOTE\nNEURO: A&OX3, PERRLA, MAE. DENIES PAIN. GCS 15.\n"
        "CV: HR 88 NSR, BP 120/70, NO EDEMA. K 3.4 REPLETED PER SLIDING SCALE.\n"
        "RESP: LS CLEAR, SPO2 95% ON 2L NC. GI/GU: NPO AFTER MN FOR EGD. FOLEY DRAINING CLEAR YELLOW URINE."
    )
    docs = [doc("de", "notes", german), doc("caps", "notes", caps), doc("en", "pubmed", ABSTRACT)]
    kept = run_steps([LanguageFilter(thresholds(tmp_path))], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["caps", "en"]
    ((doc_id, reason, detail),) = quarantined(ledger, zones)
    assert (doc_id, reason) == ("de", "language_not_allowed") and "detected de" in detail


def test_filter_thresholds_come_from_the_spec_and_typos_are_rejected(tmp_path: Path) -> None:
    limits = thresholds(tmp_path, {"default": {"min_chars": 5}, "pubmed": {"languages": ["en", "fr"]}})
    assert limits["notes_csv"].min_chars == 5 and limits["pubmed"].min_chars == 5
    assert limits["pubmed"].languages == ("en", "fr") and limits["dicom"].languages == ()
    assert limits["notes_csv"].max_digit_ratio > limits["pubmed"].max_digit_ratio
    with pytest.raises(SpecError, match="max_digit_ration"):
        thresholds(tmp_path, {"notes_csv": {"max_digit_ration": 0.2}})
    with pytest.raises(SpecError, match="unknown source kind"):
        thresholds(tmp_path, {"notes": {"min_chars": 5}})


# ---- dedup --------------------------------------------------------------------------------------------------


def _order(d: dict) -> tuple:
    return list(SOURCES).index(d["source"]), d["doc_id"]


def test_exact_duplicate_across_two_sources_keeps_the_earlier_source(ledger: Ledger, zones: Zones) -> None:
    docs = [
        doc("pmc-1", "pmc", ABSTRACT.replace(" ", "  ").upper()),  # same text after normalization
        doc("pubmed-9", "pubmed", ABSTRACT),
        doc("pubmed-2", "pubmed", ABSTRACT.replace("sepsis", "septic shock")),
    ]
    step = ExactDedup(PublishedIndex(), _order)
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["pubmed-9", "pubmed-2"]
    assert quarantined(ledger, zones) == [("pmc-1", "exact_duplicate", "exact_dedup: kept twin pubmed-9")]
    assert step.summary() == {"dropped": 1, "clusters": {"2": 1}}


def _long_note(seed: int) -> str:
    rng = random.Random(seed)
    sentences = [
        f"Day {rng.randint(1, 9)} of admission for community acquired pneumonia, now afebrile for "
        f"{rng.randint(12, 48)} hours with WBC trending down from {rng.randint(14, 19)} to {rng.randint(8, 12)}.",
        f"Blood cultures from admission remain negative at {rng.randint(2, 5)} days, sputum grew pan-sensitive "
        "Streptococcus pneumoniae and antibiotics were narrowed to ceftriaxone alone.",
        f"Oxygen weaned to room air overnight with saturations of {rng.randint(92, 97)} percent at rest and "
        "mild desaturation with ambulation, physical therapy will reassess mobility tomorrow morning.",
        "Chronic kidney disease stage three with creatinine at baseline, home lisinopril held while volume "
        "status is reassessed and will be restarted at discharge if blood pressure allows.",
        "Type two diabetes managed with basal insulin glargine and a correction scale, fingersticks between "
        f"{rng.randint(110, 140)} and {rng.randint(150, 210)}, metformin held during the acute illness.",
        "Discussed the plan with the patient and daughter at the bedside, who agree with transition to oral "
        "amoxicillin to complete a seven day course and discharge home with outpatient follow up.",
        "Deep vein thrombosis prophylaxis with subcutaneous heparin, diet advanced to regular consistent "
        "carbohydrate, code status confirmed as full code after discussion with the family.",
    ]
    return " ".join(sentences * 2)


def test_near_duplicate_with_ten_percent_of_words_changed_is_caught(ledger: Ledger, zones: Zones) -> None:
    """The copy has new values (vitals, labs: 5% of words) and one reworded passage (5% of words)."""
    original = _long_note(1)
    copy = _long_note(2).split()
    changed_values = sum(a != b for a, b in zip(original.split(), copy, strict=True))
    start = len(copy) // 2
    reworded = max(1, len(copy) // 10 - changed_values)
    copy[start : start + reworded] = [f"revised{i}" for i in range(reworded)]
    changed = sum(a != b for a, b in zip(original.split(), copy, strict=True))
    assert 0.09 <= changed / len(copy) <= 0.11
    docs = [
        doc("b-copy", "notes", " ".join(copy)),
        doc("a-original", "notes", original),
        doc("c-other", "notes", NOTE),
    ]
    step = NearDedup(DedupConfig(), PublishedIndex(), _order)
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["a-original", "c-other"]
    ((doc_id, reason, detail),) = quarantined(ledger, zones)
    assert (doc_id, reason) == ("b-copy", "near_duplicate") and "kept twin a-original" in detail
    assert step.summary()["clusters"] == {"2": 1}


DISCHARGE = (
    "Hospital course: seventy two year old woman admitted from the emergency department with three days of "
    "productive cough, fever and worsening shortness of breath. Chest radiograph showed a right lower lobe "
    "consolidation and she was started on ceftriaxone and azithromycin. Blood cultures remained negative and "
    "sputum culture grew Haemophilus influenzae sensitive to the current regimen. Her oxygen requirement peaked "
    "at four liters by nasal cannula on the second day and she was weaned to room air by the fourth day. Her "
    "home metoprolol was held for soft blood pressures and restarted once she was eating and drinking. Acute "
    "kidney injury on admission resolved with intravenous fluids and her creatinine returned to baseline. She "
    "worked with physical therapy, walked the hallway independently and was cleared for discharge home with "
    "her daughter. Antibiotics were changed to oral amoxicillin clavulanate to complete a seven day course. "
    "Follow up with her primary care physician in one week with a repeat chest radiograph in six weeks to "
    "document resolution. Return precautions for fever, chest pain or breathing difficulty were reviewed with "
    "the patient and her daughter, who both voiced understanding of the plan and the medication changes."
)
REWORDINGS = ["markedly", "again", "still", "mildly", "briefly", "notably", "slowly", "fully", "then", "now"]


def _ten_percent_changed(text: str, how: str) -> str:
    tokens = text.split()
    count = len(tokens) // 10
    rng = random.Random(7)
    if how == "scattered":
        positions = sorted(rng.sample(range(len(tokens)), count))
    else:
        start = rng.randrange(len(tokens) - count)
        positions = list(range(start, start + count))
    for i in positions:
        tokens[i] = rng.choice([w for w in REWORDINGS if w != tokens[i]])
    return " ".join(tokens)


@pytest.mark.parametrize("how", ["scattered", "one passage"])
def test_near_duplicate_with_ten_percent_of_words_changed_anywhere_is_caught(
    how: str, ledger: Ledger, zones: Zones
) -> None:
    """10% of the words replaced, at random positions or in one passage: 90% of the words are shared in order
    although, scattered, barely half of the 5-word shingles survive."""
    copy = _ten_percent_changed(DISCHARGE, how)
    a, b = shingles(DISCHARGE, 5), shingles(copy, 5)
    assert len(a & b) / len(a | b) < (0.6 if how == "scattered" else 0.85)
    docs = [doc("b-copy", "notes", copy), doc("a-original", "notes", DISCHARGE), doc("c-other", "notes", NOTE)]
    step = NearDedup(DedupConfig(), PublishedIndex(), _order)
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["a-original", "c-other"]
    ((doc_id, reason, detail),) = quarantined(ledger, zones)
    assert (doc_id, reason) == ("b-copy", "near_duplicate")
    assert detail == "near_dedup: kept twin a-original (0.90 of words shared in order)"


def _templated_note(assessment: str) -> str:
    """A progress note template: the same headings and standard lines, the assessment written per patient."""
    return (
        "Progress Note - General Medicine\n"
        "Subjective: patient seen and examined at the bedside this morning, overnight events reviewed with nursing.\n"
        "Objective: T 37.2, HR 84, BP 128/76, RR 16, SpO2 97% on room air. Exam as documented in the flowsheet.\n"
        f"Assessment and plan: {assessment}\n"
        "Prophylaxis: subcutaneous heparin. Diet: regular. Code status: full code. Dispo: pending clinical course."
    )


def _two_patients_one_template() -> tuple[str, str]:
    """Two notes of one template about different patients: they share far fewer than 80% of their words."""
    return (
        _templated_note(
            "community acquired pneumonia improving on ceftriaxone and azithromycin, afebrile for two days, "
            "transition to oral antibiotics tomorrow if still afebrile and discharge home once ambulating."
        ),
        _templated_note(
            "alcohol withdrawal on symptom triggered lorazepam, last dose overnight, thiamine and folate daily, "
            "social work consulted for outpatient treatment options before discharge."
        ),
    )


def test_notes_from_one_template_with_different_content_are_not_merged(ledger: Ledger, zones: Zones) -> None:
    """Same template, other patients: their shingle sets overlap enough for LSH to propose the pair, but they
    share fewer than 80% of their words, so the word-count screen keeps both without reading their words."""
    first, second = _two_patients_one_template()
    a, b = shingles(first, 5), shingles(second, 5)
    assert len(a & b) / len(a | b) > candidate_threshold(DedupConfig())
    step = NearDedup(DedupConfig(), PublishedIndex(), _order)
    kept = run_steps([step], [doc("n1", "notes", first), doc("n2", "notes", second)], ledger)
    assert [d["doc_id"] for d in kept] == ["n1", "n2"]
    summary = step.summary()
    assert (summary["candidate_pairs_proposed"], summary["candidate_pairs_checked"], step.twins.as_dict()) == (1, 0, {})


def test_near_dedup_against_an_earlier_run_keeps_the_published_document(ledger: Ledger, zones: Zones) -> None:
    """The earlier run's words come back from the saved index, so a scattered rewording is verified across runs."""
    config = DedupConfig()
    exact, earlier = ExactDedup(PublishedIndex(), _order), NearDedup(config, PublishedIndex(), _order)
    published = run_steps([exact, earlier], [doc("old", "notes", DISCHARGE)], ledger)
    save_index(zones.governance, config, PublishedIndex(), published_entries(published, exact, earlier, "run-1"))
    later = NearDedup(config, PublishedIndex.load(zones.governance, config, pa.array([], pa.string())), _order)
    new = _ten_percent_changed(DISCHARGE, "scattered")
    kept = run_steps([later], [doc("new", "notes", new), doc("other", "notes", NOTE)], ledger)
    assert [d["doc_id"] for d in kept] == ["other"]
    assert later.twins.as_dict() == {"new": "old"}


def test_the_earlier_runs_index_is_read_a_row_group_at_a_time_with_the_same_decisions(
    ledger: Ledger, zones: Zones
) -> None:
    """The cross-run index is never held whole: each dedup step and the save read it again a row group at a
    time.  Groups of one row must give the decisions and the saved index that one group gives, with the
    documents this run curates again left out of both (the group holding only "other-0" is skipped)."""
    config = DedupConfig()
    others = [
        "Ambulating in the hall with a walker, tolerating a regular diet.",
        "Wound dressing changed, no drainage, edges well approximated.",
        "Afebrile overnight, blood cultures pending, continue antibiotics.",
        "Family meeting held, goals of care discussed with the daughter.",
        "Physical therapy recommends discharge to a rehabilitation facility.",
    ]
    first = [doc("old", "notes", DISCHARGE), doc("copied", "notes", NOTE)]
    first += [doc(f"other-{i}", "notes", text) for i, text in enumerate(others)]
    exact, near = ExactDedup(PublishedIndex(), _order), NearDedup(config, PublishedIndex(), _order)
    published = run_steps([exact, near], first, ledger)
    assert len(published) == len(first)
    path = dedup_index.index_path(zones.governance)
    save_index(zones.governance, config, PublishedIndex(), published_entries(published, exact, near, "run-1"))
    first_index = path.read_bytes()
    later_docs = [
        doc("new", "notes", _ten_percent_changed(DISCHARGE, "scattered")),
        doc("again", "notes", NOTE),
        doc("other-0", "notes", "A corrected record replaces its own earlier version in the index."),
    ]

    def later_run(group_rows: int) -> tuple[int, dict[str, str], dict[str, str], list[str]]:
        path.write_bytes(first_index)
        pq.write_table(pq.read_table(path), path, row_group_size=group_rows)  # the index is read a group at a time
        assert pq.ParquetFile(path).num_row_groups == -(-len(first) // group_rows)
        previous = PublishedIndex.load(zones.governance, config, pa.array(["other-0"], pa.string()))
        exact, near = ExactDedup(previous, _order), NearDedup(config, previous, _order)
        kept = run_steps([exact, near], [dict(d) for d in later_docs], ledger)
        save_index(zones.governance, config, previous, published_entries(kept, exact, near, "run-2"))
        index = pq.read_table(path)
        return previous.rows, exact.twins.as_dict(), near.twins.as_dict(), index.column("run_id").to_pylist()

    whole, sliced = later_run(1_000), later_run(1)
    assert whole == sliced
    assert whole == (6, {"again": "copied"}, {"new": "old"}, ["run-1"] * 6 + ["run-2"])
    assert pq.read_table(path).column("doc_id").to_pylist() == [
        "old",
        "copied",
        *(f"other-{i}" for i in range(1, 5)),
        "other-0",
    ]


def _unrelated_text(rng: random.Random) -> str:
    """Thirty made-up words: no two such texts are near-duplicates."""
    return " ".join("".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(30))


def test_the_index_keeps_whole_row_groups_through_later_runs_and_erasure(
    ledger: Ledger, zones: Zones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving and erasing stream the index a row group at a time; the groups they write hold ``WRITE_ROWS``
    rows (the last one fewer) whatever groups they read and however many rows were left out, so the groups do
    not shrink run after run, and the rows are those a whole-table rewrite would give."""
    monkeypatch.setattr(dedup_index, "WRITE_ROWS", 3)
    config = DedupConfig()
    path = dedup_index.index_path(zones.governance)

    def published(run: str, ids: list[str]) -> list[dedup_index.PublishedEntry]:
        exact, near = ExactDedup(PublishedIndex(), _order), NearDedup(config, PublishedIndex(), _order)
        docs = [doc(i, "notes", _unrelated_text(random.Random(f"{run}-{i}"))) for i in ids]
        return published_entries(run_steps([exact, near], docs, ledger), exact, near, run)

    save_index(zones.governance, config, PublishedIndex(), published("run-1", ["a", "b", "c", "d"]))
    pq.write_table(pq.read_table(path), path, row_group_size=1)  # four one-row groups, as an older save left them
    previous = PublishedIndex.load(zones.governance, config, pa.array(["c"], pa.string()))
    rows = save_index(zones.governance, config, previous, published("run-2", ["c", "e", "f", "g"]))

    def groups() -> list[int]:
        parquet = pq.ParquetFile(path)
        return [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)]

    def ids() -> list[str]:
        return pq.read_table(path).column("doc_id").to_pylist()

    assert rows == 7 and groups() == [3, 3, 1]
    assert ids() == ["a", "b", "d", "c", "e", "f", "g"]
    assert dedup_index.count_documents(zones.governance, {"b", "e", "nobody"}) == 2
    assert dedup_index.drop_documents(zones.governance, {"b", "e", "nobody"}) == 2
    assert groups() == [3, 2] and ids() == ["a", "d", "c", "f", "g"]
    assert json.loads(pq.ParquetFile(path).schema_arrow.metadata[dedup_index.PARAMS_KEY]) == (
        dedup_index.minhash_params(config)
    )
    assert dedup_index.drop_documents(zones.governance, set(), source="notes") == 5
    assert groups() == [0] and dedup_index.count_documents(zones.governance, set(), source="notes") == 0


def test_banded_buckets_below_their_cap_propose_what_datasketch_proposes() -> None:
    """BandedBuckets replaced datasketch's MinHashLSH only to bound its buckets and lay them out as arrays:
    below the cap, on templated abstracts that share many bands, every query returns exactly datasketch's
    candidates, also when the walk reads the bands' bucket ids back a few positions at a time."""
    config = DedupConfig()
    rng = random.Random(3)
    texts = []
    for i in range(120):
        article = literature._pubmed_article(literature.FIRST_PMID + i, rng)
        texts.append(" ".join(e.text or "" for e in article.iter("AbstractText")))
    signatures = minhash_signatures([WordSequence.of(mask_numbers(words(t))) for t in texts], config)
    theirs = MinHashLSH(threshold=candidate_threshold(config), num_perm=config.num_perm, weights=LSH_WEIGHTS)
    values = np.array([m.hashvalues for m in signatures])
    bands, rows = theirs.b, theirs.r
    blocks = (values[:, b * rows : (b + 1) * rows] for b in range(bands))
    ours = BandedBuckets(band_groups(blocks), len(texts), cap=len(texts), chunk=7)
    proposed = 0
    for i, minhash in enumerate(signatures):
        found = {f"d{p}" for p in ours.query(i).tolist()}
        assert found == set(theirs.query(minhash))
        proposed += len(found)
        ours.insert(i)
        theirs.insert(f"d{i}", minhash)
    assert proposed > len(texts) and NearDedup(config, PublishedIndex(), _order).bands == bands


def test_banded_buckets_keep_the_first_documents_inserted_up_to_the_cap() -> None:
    """One bucket shared by five documents, cap 2: later documents see only the first two inserted, and an
    insert into the full bucket is counted."""
    groups = [np.array([0, 0, 0, 0, 0]), np.array([0, 1, 2, 3, 4])]
    buckets = BandedBuckets(groups, 5, cap=2)
    assert buckets.shared_memberships == 5
    for position in range(5):
        if position != 1:  # position 1 was a duplicate: queried, never inserted
            buckets.insert(position)
    assert buckets.query(4).tolist() == [0, 2] and buckets.full_buckets_hit == 2


def test_candidate_screen_keeps_a_pair_sharing_eighty_percent_of_words(ledger: Ledger, zones: Zones) -> None:
    """A copy with 20% of its words replaced in one passage shares exactly 0.8 of its words in order: the
    in-memory screen (length ratio, word counts by hash bucket) must let it through to verification, and the
    template notes sharing less must be screened out before their words are read."""
    tokens = DISCHARGE.split()
    passage = len(tokens) // 5
    at_threshold = tokens[:passage] + [f"other{i}" for i in range(passage)] + tokens[2 * passage :]
    first, second = _two_patients_one_template()
    docs = [
        doc("a-original", "notes", DISCHARGE),
        doc("b-copy", "notes", " ".join(at_threshold)),
        doc("n1", "notes", first),
        doc("n2", "notes", second),
    ]
    step = NearDedup(DedupConfig(), PublishedIndex(), _order)
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["a-original", "n1", "n2"]
    assert step.twins.details(["b-copy", "n1"]) == ["kept twin a-original (0.80 of words shared in order)", None]
    assert step.candidates_proposed == 2 and step.candidates_checked == 1


def test_near_twins_in_different_batches_and_ranks_are_caught_deterministically(ledger: Ledger, zones: Zones) -> None:
    """Observed in two batches, the later-ranked copy arriving first: the kept twin is the first in dedup order
    (source order, then doc_id) whatever the batches, and its id is read back from the on-disk register."""
    copy = _ten_percent_changed(DISCHARGE, "one passage")
    docs = [doc("z-copy", "notes", copy), doc("c-other", "notes", NOTE), doc("m-original", "notes", DISCHARGE)]
    decisions = []
    for batches in ([docs[:1], docs[1:]], [docs[2:], docs[:2]], [docs]):
        step = NearDedup(DedupConfig(), PublishedIndex(), _order)
        for batch in batches:
            step.observe([dict(d) for d in batch])
        step.decide()
        decisions.append(step.twins.as_dict())
    assert decisions == [{"z-copy": "m-original"}] * 3


def test_exact_twins_in_different_batches_keep_the_earlier_source(ledger: Ledger, zones: Zones) -> None:
    step = ExactDedup(PublishedIndex(), _order)
    step.observe([doc("pubmed-1", "pubmed", ABSTRACT)])
    step.observe([doc("pmc-9", "pmc", ABSTRACT.upper()), doc("pmc-2", "pmc", ABSTRACT)])
    step.decide()
    assert step.twins.as_dict() == {"pmc-9": "pubmed-1", "pmc-2": "pubmed-1"}
    assert step.key_of(["pmc-2"]) == [exact_key(ABSTRACT)]


def test_full_lsh_buckets_bound_the_candidates_and_keep_decisions(ledger: Ledger, zones: Zones) -> None:
    """Forty notes from one template, each with its own lab values (numbers are masked in shingles, so their
    shingles are the same, but their words are not), fill the template's LSH buckets; with buckets of 2 each
    document has at most bands * 2 candidates (uncapped: every earlier note), the scattered copy of the
    discharge summary is still caught, and the decisions do not depend on the order the documents arrive in."""
    rng = random.Random(14)
    docs = [
        doc(f"t{i:02d}", "notes", _templated_note("labs " + " ".join(str(rng.randint(10, 999)) for _ in range(40))))
        for i in range(40)
    ]
    docs += [
        doc("b-copy", "notes", _ten_percent_changed(DISCHARGE, "scattered")),
        doc("a-original", "notes", DISCHARGE),
    ]
    uncapped = NearDedup(DedupConfig(), PublishedIndex(), _order, bucket_cap=len(docs))
    run_steps([uncapped], [dict(d) for d in docs], ledger)
    capped = NearDedup(DedupConfig(), PublishedIndex(), _order, bucket_cap=2)
    run_steps([capped], [dict(d) for d in reversed(docs)], ledger)
    assert capped.summary()["candidate_bucket_full_inserts"] > 0
    assert capped.candidates_proposed <= len(docs) * capped.bands * 2
    assert capped.candidates_proposed < uncapped.candidates_proposed
    assert capped.twins.as_dict()["b-copy"] == "a-original"
    assert capped.twins.as_dict() == uncapped.twins.as_dict()


def test_word_shingles_mask_numbers() -> None:
    assert shingles("HR 96 BP 112/68 on 2L", 5) == shingles("hr 104, bp 140/90 on 3l", 5)


def test_copy_forward_paragraphs_are_removed_from_later_notes_of_the_same_patient(ledger: Ledger, zones: Zones) -> None:
    history = (
        "HPI: 67 year old with heart failure with reduced ejection fraction, admitted with three days of "
        "worsening dyspnea on exertion and orthopnea after running out of furosemide."
    )
    day1 = history + "\n\nPlan: IV furosemide 40 mg twice daily, daily weights, strict intake and output."
    day2 = history + "\n\nInterval: diuresed 2 liters overnight, creatinine stable, breathing easier today."
    day3 = history + "\n\nPlan: IV furosemide 40 mg twice daily, daily weights, strict intake and output."
    other_patient = history + "\n\nPlan: start metoprolol, recheck potassium in the morning."

    def note(doc_id: str, text: str, day: int, patient: str = "P1") -> dict:
        when = datetime(2020, 3, day, tzinfo=UTC)
        return doc(doc_id, "notes", text, patient_pseudonym=patient, metadata={"event_time": when})

    docs = [
        note("z-day3", day3, 3),
        note("y-day2", day2, 2),
        note("x-day1", day1, 1),
        note("w", other_patient, 2, "P2"),
    ]
    step = CopyForwardDedup(DedupConfig())
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["y-day2", "x-day1", "w"]
    assert kept[0]["text"] == day2.split("\n\n")[1] and kept[1]["text"] == day1 and kept[2]["text"] == other_patient
    assert quarantined(ledger, zones) == [
        ("z-day3", "copy_forward", "copy_forward: 2 paragraphs copied, e.g. from x-day1")
    ]
    assert step.summary() == {"paragraphs_removed": 3, "documents_trimmed": 1, "dropped": 1}


# ---- decontamination ----------------------------------------------------------------------------------------


def test_documents_sharing_a_13_gram_with_a_benchmark_are_removed(tmp_path: Path, ledger: Ledger, zones: Zones) -> None:
    items = [
        {"question": "Which drug is first line for type 2 diabetes?", "answer": "metformin", "context": ""},
        {
            "question": "A trial enrolled 3718 patients in the intensive care unit and assigned them to early "
            "restrictive fluid resuscitation. What was the primary outcome?",
            "answer": ["90-day mortality", "length of stay"],
        },
    ]
    path = tmp_path / "medqa.jsonl"
    path.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    twelve_shared = "we enrolled 3718 patients in the intensive care unit and assigned them to early care"
    step = Decontaminator([BenchmarkNgrams.load(Benchmark("medqa", path), 13)], 13)
    docs = [
        doc("leaked", "pubmed", ABSTRACT),
        doc("metformin", "pubmed", "Metformin remains first line therapy for type 2 diabetes in most guidelines."),
        doc("twelve", "notes", twelve_shared.replace("to early care", "to usual care")),
    ]
    kept = run_steps([step], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["metformin", "twelve"]
    assert quarantined(ledger, zones) == [
        ("leaked", "decontaminated:medqa", "decontamination: shares a 13-gram with medqa line 2")
    ]
    assert step.summary()["benchmarks"]["medqa"]["documents_removed"] == 1


# ---- residual-PHI gate and raw identifiers ------------------------------------------------------------------


HL7_RAW = (
    "Patient: Zelda Quorvik\nMRN: 48213007\nBirth date: 1956-03-14\nSex: F\n"
    "Address: 12 Larkspur Lane, Fenwick, MA 02138\nPhone: 617-555-0182\n\nCBC (2023-03-14 08:00)\nWBC: 14.2"
)


HL7_MESSAGE = (
    "MSH|^~\\&|LAB|HOSP|||20230314||ORU^R01|1|P|2.5\r"
    "PID|1||48213007||Quorvik^Zelda||19560314|F|||12 Larkspur Lane^Apt 4^Fenwick^Massachusetts^02138^USA||617-555-0182"
)


def _raw_row(
    doc_id: str, kind: str, text: str, key: str = "48213007", when: datetime | None = None, extra: list | None = None
) -> dict:
    return {
        "doc_id": doc_id,
        "source_kind": kind,
        "doc_type": "lab_report",
        "patient_key": key,
        "text": text,
        "metadata": {"event_time": when, "extra": extra or []},
    }


def test_header_extractor_reads_hl7_and_fhir_demographics() -> None:
    found = set(identifiers(_raw_row("h", "hl7v2", HL7_RAW, extra=[(HL7_MESSAGE_KEY, HL7_MESSAGE)])))
    assert {("name", "Zelda Quorvik"), ("name", "Quorvik"), ("identifier", "48213007")} <= found
    assert {("birth_date", "1956-03-14"), ("birth_date", "03/14/1956"), ("birth_date", "March 14, 1956")} <= found
    assert {("address", v) for v in ("12 Larkspur Lane", "Apt 4", "Fenwick", "02138")} <= found
    assert ("phone", "617-555-0182") in found
    # What Safe Harbor keeps and de-identification keeps on purpose is never searched for.
    assert not {("address", "Massachusetts"), ("address", "USA")} & found
    assert not any(value == "CBC" for _, value in found)  # the header ends at the first blank line


def test_fhir_addresses_are_searched_for_what_the_policy_removes_only() -> None:
    patient = {
        "resourceType": "Patient",
        "address": [{"line": ["9 Quay St", "Unit 2"], "city": "Salem", "district": "Essex", "state": "Massachusetts"}],
    }
    bundle = json.dumps({"resourceType": "Bundle", "entry": [{"resource": patient}]})
    row = _raw_row("t", "fhir", "Patient: Zelda Quorvik\n", extra=[(FHIR_JSON_KEY, bundle)]) | {
        "doc_type": "patient_timeline"
    }
    addresses = {value for kind, value in identifiers(row) if kind == "address"}
    assert addresses == {"9 Quay St", "Unit 2", "Salem", "Essex"}


def test_dicom_extractor_reads_patient_attributes_from_dicom_json() -> None:
    header = {
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Quorvik^Zelda"}]},
        "00100020": {"vr": "LO", "Value": ["48213007"]},
        "00100030": {"vr": "DA", "Value": ["19560314"]},
    }
    row = {"metadata": {"extra": [("dicom_json", json.dumps(header))]}}
    found = set(dicom_identifiers(row))
    assert {("name", "Zelda Quorvik"), ("name", "Quorvik"), ("identifier", "48213007")} <= found
    assert ("birth_date", "1956-03-14") in found


def test_patient_name_left_in_a_deidentified_note_blocks_that_note(ledger: Ledger, zones: Zones) -> None:
    config = load_gate_config()
    index = RawPatientIndex()
    raw_note = "Zelda Quorvik seen today for CHF follow up. BP 142/88, seen 03/14/2023, labs reviewed."
    index.add(_raw_row("lab-1", "hl7v2", HL7_RAW, when=datetime(2023, 3, 14, 8, tzinfo=UTC)), config.full_date)
    for doc_id in ("leak", "clean", "ssn", "date"):
        index.add(_raw_row(doc_id, "notes_csv", raw_note, when=datetime(2023, 3, 14, tzinfo=UTC)), config.full_date)
    shifted = {"event_time": datetime(2023, 1, 3, tzinfo=UTC)}  # the patient's dates moved back 70 days
    docs = [
        doc("leak", "notes", "quorvik seen today for CHF follow up. BP 142/88, seen 01/03/2023.", metadata=shifted),
        doc(
            "clean",
            "notes",
            "Ilse Brandvik seen today for CHF follow up. BP 142/88, seen 01/03/2023.",
            metadata=shifted,
        ),
        doc("ssn", "notes", "[NAME] seen today, SSN 123-45-6789 on file, seen 01/03/2023.", metadata=shifted),
        doc("date", "notes", "[NAME] seen today for CHF follow up, seen 03/14/2023.", metadata=shifted),
        doc("pub", "pubmed", "Contact the corresponding author at trial@example.org or 617-555-0100."),
    ]
    gate = ResidualPhiGate(index, config)
    kept = run_steps([gate], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["clean", "pub"]
    assert [(d, r) for d, r, _ in quarantined(ledger, zones)] == [
        ("date", "residual_phi:unshifted_date"),
        ("leak", "residual_phi:name"),
        ("ssn", "residual_phi:ssn"),
    ]
    assert gate.summary()["blocked_by_kind"] == {"name": 1, "ssn": 1, "unshifted_date": 1}
    details = " ".join(detail for _, _, detail in quarantined(ledger, zones))
    assert "Quorvik" not in details and "quorvik" not in details and "123-45" not in details


def test_the_cleaning_pass_on_ray_actors_accounts_for_every_document_as_the_driver_does(tmp_path: Path) -> None:
    """Curate's cleaning pass runs the gate and the filters on Ray actors; the driver replays what they told
    their ledgers and takes their counts.  Two actors and two batches must leave the quarantine records, the
    step tallies and summaries, the survivors and their dedup fingerprints that the driver alone leaves."""
    config = load_gate_config()
    index = RawPatientIndex()
    raw_note = "Zelda Quorvik seen today for CHF follow up. BP 142/88, seen 03/14/2023, labs reviewed."
    index.add(_raw_row("lab-1", "hl7v2", HL7_RAW, when=datetime(2023, 3, 14, 8, tzinfo=UTC)), config.full_date)
    for doc_id in ("leak", "clean"):
        index.add(_raw_row(doc_id, "notes_csv", raw_note, when=datetime(2023, 3, 14, tzinfo=UTC)), config.full_date)
    shifted = {"event_time": datetime(2023, 1, 3, tzinfo=UTC)}
    signed = NOTE + "\nElectronically signed by Dr. [NAME] on 06/01/2019 16:42\nPage 1 of 1"
    first = [
        doc("leak", "notes", "quorvik seen today for CHF follow up. BP 142/88, seen 01/03/2023.", metadata=shifted),
        doc("clean", "notes", signed, metadata=shifted, patient_pseudonym="p1"),
        doc("short", "pubmed", "Too short."),
    ]
    second = [doc("abstract", "pubmed", ABSTRACT), doc("ssn", "notes", NOTE + " SSN 123-45-6789 on file.")]
    tables = [pa.Table.from_pylist(batch, schema=relaxed(DEID_DOCUMENT_SCHEMA)) for batch in (first, second)]

    def clean(workers: int, run: str) -> tuple:
        zones = Zones(tmp_path / run).ensure()
        ledger = Ledger(QuarantineWriter(zones, "curate", run), StageReport(stage="curate", run_id=run))
        gate = ResidualPhiGate(index, config)
        gate.observe(first + second)
        gate.decide()
        steps = [gate, *filter_steps(thresholds(tmp_path))]
        survivors, fingerprints = [], []
        for batch in cleaned_batches(tables, steps, DedupConfig(), workers):
            ledger.replay(batch.ledger)
            survivors.append(batch.table)
            fingerprints.append((batch.exact, batch.near.signatures.tolist(), batch.notes))
        return (
            pa.concat_tables(survivors).to_pylist(),
            fingerprints,
            quarantined(ledger, zones),
            ledger.steps_summary(),
            ledger.report.sources,
            [step.summary() for step in steps],
        )

    alone, on_actors = clean(1, "driver"), clean(2, "actors")
    assert on_actors == alone
    survivors, _, records, _, _, summaries = alone
    assert [d["doc_id"] for d in survivors] == ["clean", "abstract"]
    assert [(d, r) for d, r, _ in records] == [
        ("leak", "residual_phi:name"),
        ("short", "near_empty_after_deid"),
        ("ssn", "residual_phi:ssn"),
    ]
    assert summaries[0]["blocked_by_kind"] == {"name": 1, "ssn": 1} and summaries[2] == {"lines_removed": 2}


DICOM_ADDRESS = "12 Larkspur Lane, Fenwick, Massachusetts, 02138"


def _dicom_dataset() -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.PatientAddress = "48213007", "Quorvik^Zelda", DICOM_ADDRESS
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "CT", "1.2.3", "1.2.3.4", "1.2.3.4.5"
    return ds


def test_a_dicom_patient_address_is_one_value_removed_whole_and_its_state_is_no_hit(ledger: Ledger, zones: Zones):
    # The raw row as DICOM ingest writes it, from a pydicom dataset.
    document = instance_document(_dicom_dataset())
    row = _raw_row("ct-1", "dicom", document.text, extra=list(document.metadata["extra"].items()))
    addresses = {value for kind, value in identifiers(row) if kind == "address"}
    assert addresses == {DICOM_ADDRESS}  # never split on commas: "Massachusetts" alone is no identifier

    # De-identification removes it whole, as the policy says, so nothing of it is kept.
    deidentified = _dicom_dataset()
    DicomDeidentifier(b"test-key-for-dicom-deid-0123456789").deidentify_dataset(deidentified)
    assert not deidentified.get("PatientAddress")

    # The gate: the patient's state in another of their documents is kept; the address itself blocks.
    config = load_gate_config()
    index = RawPatientIndex()
    index.add(row, config.full_date)
    for doc_id in ("state", "whole"):
        index.add(_raw_row(doc_id, "notes_csv", "Seen for follow up of a cough."), config.full_date)
    docs = [
        doc("state", "notes", "[NAME] moved back to Massachusetts last spring; follow up of the cough in clinic."),
        doc("whole", "notes", f"[NAME] lives at {DICOM_ADDRESS.lower()}; follow up of the cough in clinic."),
    ]
    kept = run_steps([ResidualPhiGate(index, config)], docs, ledger)
    assert [d["doc_id"] for d in kept] == ["state"]
    assert [(d, r) for d, r, _ in quarantined(ledger, zones)] == [("whole", "residual_phi:address")]


def test_the_dicom_profile_must_remove_what_the_address_policy_removes_whole():
    keeps = ProfileRule("00101040", "PatientAddress", "K", modified_dates=False, clean_descriptors=False)
    with pytest.raises(ValueError, match="keeps PatientAddress"):
        _check_address_rules(Profile([keeps]))
    _check_address_rules(load_profile())  # the shipped Annex E table removes it


def test_notes_csv_address_cells_are_searched_for_what_the_policy_removes_only(monkeypatch) -> None:
    cells = {"note_id": "n1", "subject_id": "48213007", "City": "Fenwick", "state": "Massachusetts", "zip": "02138"}
    row = _raw_row("n1", "notes_csv", "Seen for a cough.", extra=[(CSV_ROW_KEY, json.dumps(cells))])
    assert {value for kind, value in identifiers(row) if kind == "address"} == {"Fenwick", "02138"}
    # One definition: the gate follows the policy's list of what is kept, as de-identification does.
    monkeypatch.setattr(address_policy, "KEPT", frozenset({address_policy.Part.COUNTRY}))
    assert {value for kind, value in identifiers(row) if kind == "address"} == {"Fenwick", "Massachusetts", "02138"}


def test_the_sequence_cache_holds_a_budget_of_words_and_drops_the_least_recently_used() -> None:
    reads: list[int] = []

    def read(index: int) -> WordSequence:
        reads.append(index)
        return WordSequence(np.arange(index * 10, dtype=np.uint32))  # document i has 10 * i words

    cache = SequenceCache(read, words=60)
    assert [len(cache(i)) for i in (1, 2, 3, 1)] == [10, 20, 30, 10]  # 60 words: all held, 1 read once
    assert reads == [1, 2, 3] and cache.held == 60
    cache(4)  # 40 more words: 2 and 3, the least recently used, go (1 was used after them)
    assert cache.held == 50 and cache.misses == 4
    assert cache(1) is cache(1) and reads == [1, 2, 3, 4]
    cache(2)
    assert reads == [1, 2, 3, 4, 2] and cache.held == 30  # 4 went first (1 was just used), then nothing more
    cache(9)  # a sequence over the whole budget is still held, alone
    assert cache.held == 90 and reads[-1] == 9
    cache.clear()
    assert cache.held == 0
    assert cache(9) is cache(9) and reads.count(9) == 2


def test_exact_and_near_dedup_sharing_one_register_decide_as_with_their_own(ledger: Ledger, zones: Zones) -> None:
    """The curate pipeline gives both levels one DocRegister (they observe the same documents); both also add the
    earlier run's documents when deciding, which the shared register must hold once, at the same indexes."""
    config = DedupConfig()
    exact, earlier = ExactDedup(PublishedIndex(), _order), NearDedup(config, PublishedIndex(), _order)
    published = run_steps([exact, earlier], [doc("old", "notes", DISCHARGE)], ledger)
    save_index(zones.governance, config, PublishedIndex(), published_entries(published, exact, earlier, "run-1"))
    previous = PublishedIndex.load(zones.governance, config, pa.array([], pa.string()))
    docs = [
        doc("reworded", "notes", _ten_percent_changed(DISCHARGE, "scattered")),
        doc("copy", "notes", NOTE),
        doc("again", "notes", NOTE),
        doc("other", "notes", "Patient ambulating in hall with walker, tolerating diet, pain controlled on oral meds."),
    ]

    def decisions(register: DocRegister | None) -> tuple[dict[str, str], dict[str, str], list[str]]:
        exact = ExactDedup(previous, _order, register=register)
        near = NearDedup(config, previous, _order, register=register)
        for step in (exact, near):
            step.observe([dict(d) for d in docs])
        exact.decide()
        near.decide(skip=exact.twins.doc_ids())
        entries = published_entries([{"doc_id": "other", "source": "notes"}], exact, near, "run-2")
        return exact.twins.as_dict(), near.twins.as_dict(), [e.exact_key for e in entries]

    shared = decisions(DocRegister())
    assert shared == decisions(None)
    assert shared[0] == {"copy": "again"} and shared[1] == {"reworded": "old"}  # the smaller doc_id is kept

    register = DocRegister()
    ExactDedup(previous, _order, register=register).observe([dict(docs[0])])
    with pytest.raises(ValueError, match="same documents"):
        NearDedup(config, previous, _order, register=register).observe([dict(d) for d in docs[:2]])
