"""Near-duplicate detection: documents/s and recall of curate's ``NearDedup`` vs datasketch used directly.

A generated corpus of distinct clinical-style documents (words, vitals and lab values) gets planted
near-duplicates: for each edit model, copies of some documents with 10% of their words changed.  Threshold 0.8
for both detectors, word 5-gram shingles with numbers masked:

* ``NearDedup`` (pipelines/quality/dedup.py): a near-duplicate shares at least 80% of its words in order
  (longest common subsequence over the longer document); bulk MinHash LSH banded for recall down to the
  shingle Jaccard of such pairs proposes candidates, each verified on its words;
* baseline, datasketch used directly: ``MinHash().update(shingle)`` per shingle (default SHA-1),
  ``MinHashLSH(threshold=0.8)`` with default weights, every query hit taken as a duplicate (so 0.8 is a
  shingle Jaccard there).

Recall is the share of planted copies flagged as a duplicate of their original.  ``indep. flagged`` counts
documents that are not planted copies but were flagged as a duplicate of another, ``<0.8 words`` those of
them sharing fewer than 80% of their words in order with the twin they were flagged for: the false positives
by the definition ``NearDedup`` uses.  ``words`` is the mean share of words the planted pairs have in common in
order (what ``NearDedup`` thresholds), ``true J`` the mean exact Jaccard of their shingle sets (what the
baseline thresholds): each changed word breaks up to 5 shingles, so scattered changes leave a pair far below
0.8 in shingle Jaccard while 90% of its words are shared.  The last row plants nothing: independent notes
written from one template (each template sentence rewritten with probability 0.4, so pairs share about half
their words and a good part of their shingles): a note flagged there rewrote so few template sentences that
it does share 80% of its words with another; the docs/s shows the cost of verifying the many candidate pairs
templated text makes.

    .venv/bin/python benchmarks/bench_dedup.py [--documents 2000] [--planted 200]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from datasketch import MinHash, MinHashLSH

from medcurate.core.context import StageReport
from medcurate.core.quarantine import QuarantineWriter
from medcurate.core.zones import Zones
from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup import NearDedup, shingles, word_sequence
from pipelines.quality.dedup_index import PublishedIndex
from pipelines.quality.steps import Ledger
from pipelines.quality.word_similarity import longest_common_subsequence

THRESHOLD = 0.8
SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "di", "fa", "go", "hu", "ji", "pe", "zo"]
CLINICAL = "patient pain stable plan continue dose daily review labs noted improved follow blood pressure".split()


def _vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    return sorted({"".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(size)})


def _document(rng: random.Random, vocabulary: list[str], words: int) -> list[str]:
    """Prose words with a measurement every few words (HR 96, K 3.4): clinical notes are full of values."""
    out = []
    while len(out) < words:
        out.extend(rng.choice(vocabulary if rng.random() < 0.7 else CLINICAL) for _ in range(rng.randint(3, 6)))
        out.append(str(rng.randint(1, 250)))
    return out[:words]


def _numbers_then_span(tokens: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    """Half the changes are new values (vitals, labs), half one reworded passage."""
    out, budget = list(tokens), len(tokens) // 10
    numbers = [i for i, t in enumerate(out) if t.isdigit()]
    for i in rng.sample(numbers, min(len(numbers), budget // 2)):
        out[i] = str(int(out[i]) + rng.randint(1, 20))
    span = budget - min(len(numbers), budget // 2)
    start = rng.randrange(0, len(out) - span)
    out[start : start + span] = [rng.choice(vocabulary) for _ in range(span)]
    return out


def _values(tokens: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    out = list(tokens)
    numbers = [i for i, t in enumerate(out) if t.isdigit()]
    for i in rng.sample(numbers, min(len(numbers), len(out) // 10)):
        out[i] = str(int(out[i]) + rng.randint(1, 20))
    return out


def _appended(tokens: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    return tokens + [rng.choice(vocabulary) for _ in range(len(tokens) // 10)]


def _contiguous(tokens: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    out, span = list(tokens), len(tokens) // 10
    start = rng.randrange(0, len(out) - span)
    out[start : start + span] = [rng.choice(vocabulary) for _ in range(span)]
    return out


def _scattered(tokens: list[str], rng: random.Random, vocabulary: list[str]) -> list[str]:
    out = list(tokens)
    for i in rng.sample(range(len(out)), len(out) // 10):
        out[i] = rng.choice(vocabulary)
    return out


EDIT_MODELS: dict[str, Callable[[list[str], random.Random, list[str]], list[str]] | None] = {
    "10% values changed": _values,
    "10% appended": _appended,
    "5% values + 5% one passage": _numbers_then_span,
    "10% in one passage": _contiguous,
    "10% scattered words": _scattered,
    "none: one template": None,
}


TEMPLATE_REWRITE = 0.4


def _templated(rng: random.Random, vocabulary: list[str], n: int, words: int) -> list[list[str]]:
    """Independent notes from one template of sentences; each note rewrites every sentence with probability
    TEMPLATE_REWRITE and has its own values."""
    template = [_document(rng, vocabulary, 12) for _ in range(words // 12)]
    notes = []
    for _ in range(n):
        note = []
        for sentence in template:
            source = _document(rng, vocabulary, 12) if rng.random() < TEMPLATE_REWRITE else sentence
            note.extend(str(rng.randint(1, 250)) if t.isdigit() else t for t in source)
        notes.append(note)
    return notes


def _corpus(n: int, planted: int, edit: Callable | None, seed: int, words: int) -> tuple[list[dict], dict[str, str]]:
    """``n`` distinct documents plus ``planted`` edited copies; no edit model: ``n`` notes from one template."""
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    if edit is None:
        bases = _templated(rng, vocabulary, n, words)
    else:
        bases = [_document(rng, vocabulary, words) for _ in range(n)]
    docs = [{"doc_id": f"a{i:06d}", "text": " ".join(t)} for i, t in enumerate(bases)]
    originals = {}
    for j, i in enumerate(rng.sample(range(n), planted) if edit else []):
        copy_id = f"b{j:06d}"
        docs.append({"doc_id": copy_id, "text": " ".join(edit(bases[i], rng, vocabulary))})
        originals[copy_id] = f"a{i:06d}"
    for d in docs:
        d.update(source="bench", source_kind="notes_csv", source_file="src-00000000000000aa", position="-")
    return docs, originals


def _ours(docs: list[dict], zones: Zones) -> dict[str, str]:
    ledger = Ledger(QuarantineWriter(zones, "bench", "bench"), StageReport(stage="bench", run_id="bench"))
    step = NearDedup(DedupConfig(near_threshold=THRESHOLD), PublishedIndex(), lambda d: (0, d["doc_id"]))
    step.run(docs, ledger)
    return step.twins.as_dict()


def _baseline(docs: list[dict], config: DedupConfig) -> dict[str, str]:
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=config.num_perm)
    flagged = {}
    for doc in sorted(docs, key=lambda d: d["doc_id"]):
        m = MinHash(num_perm=config.num_perm)
        for shingle in shingles(doc["text"], config.shingle_words):
            m.update(shingle)
        if hits := lsh.query(m):
            flagged[doc["doc_id"]] = min(hits)
        else:
            lsh.insert(doc["doc_id"], m)
    return flagged


def _pairs(docs: list[dict], originals: dict[str, str]) -> list[tuple[str, str]]:
    """The planted pairs' texts; with nothing planted, consecutive independent documents."""
    text = {d["doc_id"]: d["text"] for d in docs}
    if originals:
        return [(text[copy_id], text[original]) for copy_id, original in originals.items()]
    return [(docs[i]["text"], docs[i + 1]["text"]) for i in range(0, min(len(docs) - 1, 400), 2)]


def _true_jaccard(pairs: list[tuple[str, str]], size: int) -> float:
    values = []
    for x, y in pairs:
        a, b = shingles(x, size), shingles(y, size)
        values.append(len(a & b) / len(a | b))
    return sum(values) / len(values)


def _share(x: str, y: str) -> float:
    a, b = word_sequence(x).ids.tolist(), word_sequence(y).ids.tolist()
    return longest_common_subsequence(a, b) / max(len(a), len(b))


def _words_shared(pairs: list[tuple[str, str]]) -> float:
    return sum(_share(x, y) for x, y in pairs) / len(pairs)


def _false_positives(docs: list[dict], originals: dict[str, str], twin_of: dict[str, str]) -> tuple[int, int]:
    """Independent documents flagged, and those of them sharing less than THRESHOLD of words with their twin."""
    text = {d["doc_id"]: d["text"] for d in docs}
    flagged = [doc_id for doc_id in twin_of if doc_id not in originals]
    return len(flagged), sum(_share(text[d], text[twin_of[d]]) < THRESHOLD for d in flagged)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--words", type=int, default=300)
    args = parser.parse_args()
    config = DedupConfig(near_threshold=THRESHOLD)
    header = (
        f"{'edit model':<27} {'words':>5} {'true J':>6} | {'detector':<21} {'docs/s':>6} {'recall':>6} "
        f"{'indep. flagged':>14} {'<0.8 words':>10}"
    )
    print(f"{args.documents} documents of {args.words} words + {args.planted} planted near-duplicates per edit model")
    print(f"threshold {THRESHOLD}, word {config.shingle_words}-gram shingles, {config.num_perm} permutations\n")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        zones = Zones(Path(tmp)).ensure()
        for seed, (name, edit) in enumerate(EDIT_MODELS.items()):
            docs, originals = _corpus(args.documents, args.planted, edit, seed, args.words)
            pairs = _pairs(docs, originals)
            shared, true_j = _words_shared(pairs), _true_jaccard(pairs, config.shingle_words)
            for label, detect in (
                ("NearDedup (medcurate)", lambda d: _ours(d, zones)),
                ("datasketch direct", lambda d: _baseline(d, config)),
            ):
                started = time.perf_counter()
                twin_of = detect([dict(d) for d in docs])
                rate = len(docs) / (time.perf_counter() - started)
                caught = sum(twin_of.get(copy_id) == original for copy_id, original in originals.items())
                recall = f"{caught / len(originals):.3f}" if originals else "-"
                flagged, below = _false_positives(docs, originals, twin_of)
                print(
                    f"{name:<27} {shared:>5.2f} {true_j:>6.2f} | {label:<21} {rate:>6.0f} {recall:>6} "
                    f"{flagged:>14d} {below:>10d}"
                )


if __name__ == "__main__":
    main()
