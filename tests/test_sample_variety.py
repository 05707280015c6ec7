"""The sample's documents are as varied as real ones: only the duplicates planted on purpose are duplicates.

Near-duplicate detection drops documents sharing 80% of their words in order; a sample whose notes are one
template filled with other names would lose most of them to it, and the demo would show nothing else.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import pytest

from medcurate.sample import clinical, literature, notes, people
from pipelines.deid.evaluate import read_gold
from pipelines.deid.surrogates import RESERVED_NAMES_FILE
from pipelines.quality.text_norm import words
from pipelines.quality.word_similarity import WordSequence, longest_common_subsequence

SEED = 20261128
# Well under the 0.8 threshold: de-identification then replaces names and dates with surrogates, which can
# only bring two notes closer.
MAX_SHARED = 0.7


def _shared(a: str, b: str) -> float:
    x, y = words(a), words(b)
    return longest_common_subsequence(WordSequence.of(x).ids.tolist(), WordSequence.of(y).ids.tolist()) / max(
        len(x), len(y)
    )


@pytest.fixture(scope="module")
def sample_notes(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("notes")
    notes.write(out, people.make_cohort(12, SEED), SEED)
    return read_gold(out / "gold" / "notes_gold.jsonl")


def test_notes_differ_except_the_planted_duplicates(sample_notes):
    close = sorted(
        (round(_shared(a["text"], b["text"]), 2), a["id"], b["id"])
        for a, b in itertools.combinations(sample_notes, 2)
        if _shared(a["text"], b["text"]) >= MAX_SHARED
    )
    # The addendum (the original plus one sentence) and the interface resend (identical), each of one patient.
    assert len(close) == 2 and 0.9 < close[0][0] < 1.0 == close[1][0], close
    for _, a, b in close:
        assert a.split("-")[0] == b.split("-")[0]


def test_notes_are_deterministic_and_keep_exact_gold_spans(sample_notes, tmp_path):
    notes.write(tmp_path, people.make_cohort(12, SEED), SEED)
    assert read_gold(tmp_path / "gold" / "notes_gold.jsonl") == sample_notes
    for record in sample_notes:
        for span in record["spans"]:
            value = record["text"][span["start"] : span["end"]]
            assert value and value == value.strip()


def test_clinical_pools_hold_no_name_city_or_street():
    """A planted identifier found in the output must be a leak, never a clinical word that reads like one."""
    identifiers = {w.lower() for w in (*people.FIRST_NAMES, *people.LAST_NAMES, *people.STREETS)}
    identifiers |= {city.lower() for city, _, _ in people.CITIES}
    assert not clinical.vocabulary() & identifiers


def test_pubmed_abstracts_are_not_near_duplicates(tmp_path):
    """20 abstracts on 12 topics: several share a topic, and must still read as different papers."""
    literature.write(tmp_path, [], SEED)
    root = ET.parse(tmp_path / "incoming" / "pubmed" / "pubmed26n0001.xml").getroot()
    abstracts = [" ".join(t.text for t in a.iter("AbstractText")) for a in root.iter("PubmedArticle")]
    abstracts = [a for a in abstracts if a]
    assert len(abstracts) >= 15
    assert max(_shared(a, b) for a, b in itertools.combinations(abstracts, 2)) < MAX_SHARED


def test_no_surrogate_can_be_a_name_of_the_sample():
    """The deid stage reads the sample's names from its own data file, not from the generator: it must keep up."""
    reserved = {line.lower() for line in RESERVED_NAMES_FILE.read_text(encoding="utf-8").split()[1:]}
    missing = {n for n in (*people.FIRST_NAMES, *people.LAST_NAMES) if n.lower() not in reserved}
    assert not missing, f"add to {RESERVED_NAMES_FILE.name}: {sorted(missing)}"
