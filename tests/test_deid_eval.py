"""Evaluation metrics on a hand-made gold file, the presidio-research converter, and the synthetic gold sets."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pytest

from medcurate.sample import notes
from medcurate.sample.deid_gold import make_gold_set
from medcurate.sample.people import make_cohort
from pipelines.deid.engine import PhiSpan
from pipelines.deid.evaluate import convert_presidio_research, error_report, evaluate, predict, read_gold, score

PRESIDIO = Path("/work/shared/data/presidio-research/synth_dataset_v2.json")


def test_score_counts_half_coverage_and_char_precision():
    gold = [
        {
            "id": "a",
            "text": "x" * 40,
            "spans": [
                {"start": 0, "end": 10, "label": "NAME"},
                {"start": 20, "end": 30, "label": "DATE"},
            ],
        }
    ]
    predictions = {"a": [PhiSpan(0, 6, "NAME"), PhiSpan(20, 30, "ID"), PhiSpan(32, 36, "NAME")]}
    m = score(gold, predictions)
    assert m["recall"] == 1.0  # 6/10 of the name is covered: found, not strictly
    assert m["strict_recall"] == 0.5
    assert m["recall_by_label"] == {"DATE": 1.0, "NAME": 1.0}
    assert m["precision"] == round(2 / 3, 4)
    assert m["char_precision"] == round(16 / 20, 4)
    assert m["precision_by_label"] == {"ID": 1.0, "NAME": 0.5}


def test_evaluate_end_to_end_on_a_small_gold_file(tmp_path):
    text = "Seen by Dr. Okafor on 07/22/2019. BP 120/80."
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps(
            {
                "id": "d1",
                "text": text,
                "spans": [{"start": 12, "end": 18, "label": "NAME"}, {"start": 22, "end": 32, "label": "DATE"}],
            }
        )
        + "\n"
    )
    out = tmp_path / "pred.jsonl"
    metrics = evaluate(gold, predictions_out=out)
    assert metrics["recall"] == 1.0 and metrics["precision"] == 1.0
    predicted = json.loads(out.read_text())
    assert predicted["id"] == "d1" and "text" not in predicted


def test_leak_rate_counts_uncovered_gold_characters_and_years_are_no_phi():
    gold = [
        {
            "id": "a",
            "text": "Seen by Okafor in 1999 on 7/22.",
            "spans": [
                {"start": 8, "end": 14, "label": "NAME"},
                {"start": 18, "end": 22, "label": "DateYear"},
                {"start": 26, "end": 30, "label": "DATE"},
            ],
        }
    ]
    m = score(gold, {"a": [PhiSpan(8, 11, "NAME"), PhiSpan(18, 22, "DATE")]})
    assert m["gold_spans"] == 2 and "DateYear" not in m["recall_by_label"]
    assert m["leak_rate"] == round(7 / 10, 4)
    assert m["leak_rate_by_label"] == {"DATE": 1.0, "NAME": 0.5}
    assert m["precision"] == 1.0  # a redacted year is kept text lost, not a false positive


def test_error_report_lists_misses_and_false_positives_with_context():
    text = "Seen by Okafor today.\nBP stable."
    gold = [{"id": "a", "text": text, "spans": [{"start": 8, "end": 14, "label": "NAME"}]}]
    lines = error_report(gold, {"a": [PhiSpan(22, 24, "NAME")]}, limit=5)
    assert lines == [
        "== missed NAME: 1",
        "  Seen by [[Okafor]] today.|BP stable.",
        "== false positive NAME: 1",
        "  Seen by Okafor today.|[[BP]] stable.",
    ]


@pytest.mark.skipif(not PRESIDIO.exists(), reason="presidio-research data set not available")
def test_presidio_research_conversion(tmp_path):
    records = read_gold(convert_presidio_research(PRESIDIO, tmp_path / "p.jsonl"))
    assert len(records) == 1500
    labels = {s["label"] for r in records for s in r["spans"]}
    assert {"NAME", "ADDRESS", "PHONE", "EMAIL"} <= labels and "ORGANIZATION" not in labels
    years = [r["text"][s["start"] : s["end"]] for r in records for s in r["spans"] if s["label"] == "DATE"]
    assert years and not any(y.isdigit() and len(y) == 4 for y in years)  # a bare year is not PHI
    first = records[0]
    for s in first["spans"]:
        assert 0 <= s["start"] < s["end"] <= len(first["text"])


def test_dev_and_test_sets_differ_and_spans_are_exact():
    dev = make_gold_set("dev", 30, seed=1)
    test = make_gold_set("test", 30, seed=1)
    assert {r["text"] for r in dev}.isdisjoint({r["text"] for r in test})
    for record in dev + test:
        for s in record["spans"]:
            value = record["text"][s["start"] : s["end"]]
            assert value and value == value.strip()


def test_dev2_is_a_separate_style_family_with_exact_spans_in_every_case():
    dev2 = make_gold_set("dev2", 60, seed=5)
    assert dev2 == make_gold_set("dev2", 60, seed=5)
    others = {r["text"] for r in make_gold_set("dev", 30, seed=5) + make_gold_set("test", 30, seed=5)}
    assert {r["text"] for r in dev2}.isdisjoint(others)
    assert any(r["text"] == r["text"].lower() for r in dev2) and any(r["text"] == r["text"].upper() for r in dev2)
    labels = {s["label"] for r in dev2 for s in r["spans"]}
    assert {"NAME", "LOCATION", "HOSPITAL", "ADDRESS", "ZIP", "PHONE", "DATE"} <= labels
    for record in dev2:
        for s in record["spans"]:
            value = record["text"][s["start"] : s["end"]]
            assert value and value == value.strip()


def test_sample_notes_writer(tmp_path):
    planted = notes.write(tmp_path, make_cohort(12, 20261128), 20261128)
    files = sorted(p.name for p in (tmp_path / "incoming" / "notes").iterdir())
    assert files == ["notes_part1.csv", "notes_part2.csv.gz", "notes_truncated.csv.gz"]
    with pytest.raises((EOFError, OSError, zlib.error)):
        gzip.decompress((tmp_path / "incoming" / "notes" / "notes_truncated.csv.gz").read_bytes())
    gold = read_gold(tmp_path / "gold" / "notes_gold.jsonl")
    assert 36 <= len(gold) <= 48
    header = (tmp_path / "incoming" / "notes" / "notes_part1.csv").read_text().splitlines()[0]
    assert header == "note_id,subject_id,hadm_id,note_type,note_seq,charttime,storetime,text"
    assert all(p for p in planted) and any(p.isupper() for p in planted)


def evaluate_records(records: list[dict]) -> dict:
    return score(records, predict(records))


def test_phi_free_set_has_no_gold_and_the_engine_rarely_fires_on_it():
    """The PHI-free clinical set (vitals, labs, drugs, organisms, eponyms, relation words) is the precision
    check for the name and place rules: every predicted span on it is a false positive."""
    records = make_gold_set("clean", 40, seed=3)
    assert records == make_gold_set("clean", 40, seed=3)
    assert all(r["spans"] == [] for r in records)
    assert {r["text"] for r in records} & {r["text"].upper() for r in records}  # some notes are ALL CAPS
    metrics = evaluate_records(records)
    # Nearly every false positive here is a drug brand that the statistical NER calls a person or place
    # (measured: 287 spans on 300 notes).
    assert metrics["predicted_spans"] <= len(records) * 1.5
