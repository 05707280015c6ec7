"""Near-duplicate detection: documents/s and recall of curate's ``NearDedup`` vs datasketch used directly.

A generated corpus of distinct clinical-style documents (words, vitals and lab values) gets planted
near-duplicates: for each edit model, copies of some documents with 10% of their words changed.  Both
detectors see the same word-5-gram shingles (numbers masked) and threshold 0.8:

* ``NearDedup`` (pipelines/quality/dedup.py): bulk MinHash with xxh32, LSH banding weighted for recall,
  candidates verified with the signatures' Jaccard estimate;
* baseline, datasketch used directly: ``MinHash().update(shingle)`` per shingle (default SHA-1),
  ``MinHashLSH(threshold=0.8)`` with default weights, every query hit taken as a duplicate.

Recall is the share of planted copies flagged as a duplicate of their original; false positives are distinct
documents flagged.  ``true J`` is the mean exact Jaccard similarity of the planted pairs' shingle sets: an
edit model whose true similarity is below the threshold cannot be caught at that threshold by any detector.

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

from medcurate.context import StageReport
from medcurate.quarantine import QuarantineWriter
from medcurate.zones import Zones
from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup import NearDedup, shingles
from pipelines.quality.dedup_index import PublishedIndex
from pipelines.quality.steps import Ledger

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


EDIT_MODELS: dict[str, Callable[[list[str], random.Random, list[str]], list[str]]] = {
    "10% values changed": _values,
    "10% appended": _appended,
    "5% values + 5% one passage": _numbers_then_span,
    "10% in one passage": _contiguous,
    "10% scattered words": _scattered,
}


def _corpus(n: int, planted: int, edit: Callable, seed: int, words: int) -> tuple[list[dict], dict[str, str]]:
    rng = random.Random(seed)
    vocabulary = _vocabulary(rng)
    bases = [_document(rng, vocabulary, words) for _ in range(n)]
    docs = [{"doc_id": f"a{i:06d}", "text": " ".join(t)} for i, t in enumerate(bases)]
    originals = {}
    for j, i in enumerate(rng.sample(range(n), planted)):
        copy_id = f"b{j:06d}"
        docs.append({"doc_id": copy_id, "text": " ".join(edit(bases[i], rng, vocabulary))})
        originals[copy_id] = f"a{i:06d}"
    for d in docs:
        d.update(source="bench", source_kind="notes_csv", source_uri="file:///bench", position="-")
    return docs, originals


def _ours(docs: list[dict], zones: Zones) -> set[str]:
    ledger = Ledger(QuarantineWriter(zones, "bench", "bench"), StageReport(stage="bench", run_id="bench"))
    step = NearDedup(DedupConfig(near_threshold=THRESHOLD), PublishedIndex(()), lambda d: (d["doc_id"],))
    step.run(docs, ledger)
    return set(step.twin_of)


def _baseline(docs: list[dict], config: DedupConfig) -> set[str]:
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=config.num_perm)
    flagged = set()
    for doc in sorted(docs, key=lambda d: d["doc_id"]):
        m = MinHash(num_perm=config.num_perm)
        for shingle in shingles(doc["text"], config.shingle_words):
            m.update(shingle)
        if lsh.query(m):
            flagged.add(doc["doc_id"])
        else:
            lsh.insert(doc["doc_id"], m)
    return flagged


def _true_jaccard(docs: list[dict], originals: dict[str, str], size: int) -> float:
    text = {d["doc_id"]: d["text"] for d in docs}
    values = []
    for copy_id, original in originals.items():
        a, b = shingles(text[copy_id], size), shingles(text[original], size)
        values.append(len(a & b) / len(a | b))
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--planted", type=int, default=200)
    parser.add_argument("--words", type=int, default=300)
    args = parser.parse_args()
    config = DedupConfig(near_threshold=THRESHOLD)
    header = f"{'edit model':<28} {'true J':>6} | {'detector':<22} {'docs/s':>8} {'recall':>7} {'false pos':>9}"
    print(f"{args.documents} documents of {args.words} words + {args.planted} planted near-duplicates per edit model")
    print(f"threshold {THRESHOLD}, word {config.shingle_words}-gram shingles, {config.num_perm} permutations\n")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        zones = Zones(Path(tmp)).ensure()
        for seed, (name, edit) in enumerate(EDIT_MODELS.items()):
            docs, originals = _corpus(args.documents, args.planted, edit, seed, args.words)
            true_j = _true_jaccard(docs, originals, config.shingle_words)
            for label, detect in (
                ("NearDedup (medcurate)", lambda d: _ours(d, zones)),
                ("datasketch direct", lambda d: _baseline(d, config)),
            ):
                started = time.perf_counter()
                flagged = detect([dict(d) for d in docs])
                rate = len(docs) / (time.perf_counter() - started)
                recall = len(flagged & set(originals)) / len(originals)
                false_pos = len(flagged - set(originals))
                print(f"{name:<28} {true_j:>6.2f} | {label:<22} {rate:>8.0f} {recall:>7.3f} {false_pos:>9d}")


if __name__ == "__main__":
    main()
