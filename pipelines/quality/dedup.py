"""Deduplication at three levels, each a step that drops documents with a traceable reason.

* ``ExactDedup``: sha256 of the normalized text (text_norm.exact_key), across all sources and earlier runs.
* ``NearDedup``: two documents are near-duplicates when at least ``near_threshold`` of their words are shared
  in order (word_similarity.py: longest common subsequence of the words over the longer document's word
  count).  Comparing every pair is quadratic, so MinHash LSH (datasketch) over word 5-gram shingles, numbers
  masked, proposes the candidate pairs, banded to find pairs whose shingle sets are far less similar than
  their words (each changed word breaks up to 5 shingles), and each candidate is verified on its words.  Its
  buckets hold at most ``BUCKET_CAP`` documents each, so boilerplate shared by a fixed share of the corpus gives
  each document a bounded number of candidates instead of a share of all others (quadratic in the corpus).
* ``CopyForwardDedup``: within one patient's notes, in time order, a paragraph already written in an earlier
  note is removed from the later one; the later note is dropped only when too little new text remains.

The kept document is chosen deterministically: a document published by an earlier run first, then spec source
order, then the smallest doc_id.  Each dropped document's quarantine detail names its kept twin's doc_id, and
the summaries give cluster sizes (kept document + its duplicates) as {size: number of clusters}.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup_index import PublishedEntry, PublishedIndex
from pipelines.quality.steps import Doc, Ledger, Step
from pipelines.quality.text_norm import exact_key, mask_numbers, words
from pipelines.quality.word_similarity import WordSequence, shared_in_order

OrderKey = Callable[[Doc], tuple]
# Band weights (false positive, false negative) for the LSH parameters.  Every candidate is verified on its
# words, so a false positive costs one comparison (mostly a cheap bound) while a false negative loses a
# duplicate: at the default candidate threshold (0.196, 128 permutations) datasketch's default (0.5, 0.5)
# picks 29 bands of 2 rows, finding a pair of shingle Jaccard 0.2 69% of the time; these weights pick 64 bands
# of 2 rows: 93% (and > 99.99% at 0.42, 10% of words changed at random).  The price: 15% of pairs at 0.05.
LSH_WEIGHTS = (0.05, 0.95)
# Documents one LSH bucket (one band's hash values) holds; later documents hashing there are compared with these
# first ones but not added.  Two-row bands collide for any two documents sharing two minimum hashes, so a band of
# boilerplate (a template's headings, a generator's stock sentences) collects a fixed share of the corpus and,
# uncapped, proposes every pair of it: candidate pairs grow with N squared (issue 14: 459k at 2,000 generated
# documents, 11.3M at 10,000).  With the cap a document has at most bands * BUCKET_CAP candidates whatever N.
# A near-duplicate pair shares several bands (about 11 of 64 at 10% of words changed), and only kept documents
# are added, so a twin is lost only when every band it shares with the kept document is full of other documents.
BUCKET_CAP = 16
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LATEST = datetime.max.replace(tzinfo=UTC)


def word_sequence(text: str) -> WordSequence:
    """The words a candidate pair is verified on, numbers as written: lab panels or vitals of two patients in
    one layout differ in their values, and a different value is a different word."""
    return WordSequence.of(words(text))


def shingles(text: str, size: int) -> set[bytes]:
    return _shingles(WordSequence.of(mask_numbers(words(text))), size)


def _shingles(sequence: WordSequence, size: int) -> set[bytes]:
    """Runs of ``size`` word hashes as bytes; a document shorter than ``size`` words is one shingle."""
    if len(sequence) <= size:
        return {sequence.ids.tobytes()} if len(sequence) else set()
    return {window.tobytes() for window in np.lib.stride_tricks.sliding_window_view(sequence.ids, size)}


def candidate_threshold(config: DedupConfig) -> float:
    """The shingle Jaccard similarity down to which LSH proposes pairs for verification.

    Two documents sharing a share t of their words, the others scattered at random, keep about s = t**k of
    their k-word shingles, so their shingle sets' Jaccard is s / (2 - s): 0.20 for t = 0.8, k = 5 (and 0.42
    for 10% of the words changed).  Changes bunched into passages break fewer shingles, so this is about the
    lowest Jaccard of a pair at the threshold; only changes spaced every few words leave less (no shared
    shingle at all when every 5th word differs), which a shingle index cannot find.
    """
    kept = config.near_threshold**config.shingle_words
    return kept / (2 - kept)


def minhash_signatures(sequences: Iterable[WordSequence], config: DedupConfig) -> list[MinHash]:
    """One MinHash per document, built in bulk (shared permutations, one vectorized update per document)."""
    return MinHash.bulk(
        (_shingles(s, config.shingle_words) for s in sequences),
        num_perm=config.num_perm,
        seed=config.seed,
        hashfunc=xxhash.xxh32_intdigest,
    )


def from_hashvalues(values: np.ndarray, config: DedupConfig) -> MinHash:
    return MinHash(seed=config.seed, hashvalues=values, scheme="affine32", hashfunc=xxhash.xxh32_intdigest)


def _clusters(kept_twin_of: dict[str, str]) -> dict[str, int]:
    sizes = Counter(kept_twin_of.values())
    return {str(size): n for size, n in sorted(Counter(count + 1 for count in sizes.values()).items())}


class BandIndex:
    """MinHash LSH banding (as datasketch's ``MinHashLSH``, same bands and rows for the same threshold and
    weights) with buckets bounded to ``cap`` documents.

    datasketch cannot bound a bucket, and an unbounded bucket is what makes candidate pairs quadratic on
    templated text.  A bucket keeps the first ``cap`` documents inserted; the insertion order is the dedup order
    (earlier runs' documents, then spec source order and doc_id), so which documents hold a full bucket, and
    therefore every decision, is the same on every run of the same corpus.  Below the cap the candidates are
    exactly datasketch's.
    """

    def __init__(self, config: DedupConfig, cap: int = BUCKET_CAP) -> None:
        self.bands, self.rows = _optimal_param(candidate_threshold(config), config.num_perm, *LSH_WEIGHTS)
        self.cap = cap
        self.buckets: list[dict[bytes, list[str]]] = [{} for _ in range(self.bands)]
        self.full_buckets_hit = 0

    def _keys(self, signature: MinHash) -> list[bytes]:
        values = signature.hashvalues
        return [values[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(self.bands)]

    def query(self, signature: MinHash) -> set[str]:
        found: set[str] = set()
        for table, key in zip(self.buckets, self._keys(signature), strict=True):
            members = table.get(key)
            if members:
                found.update(members)
        return found

    def insert(self, doc_id: str, signature: MinHash) -> None:
        for table, key in zip(self.buckets, self._keys(signature), strict=True):
            members = table.setdefault(key, [])
            if len(members) < self.cap:
                members.append(doc_id)
            else:
                self.full_buckets_hit += 1


class ExactDedup(Step):
    name = "exact_dedup"

    def __init__(self, previous: PublishedIndex, order: OrderKey) -> None:
        self.previous = {e.exact_key: e.doc_id for e in sorted(previous.entries, key=lambda e: e.doc_id, reverse=True)}
        self.order = order
        self.keys: dict[str, str] = {}
        self.twin_of: dict[str, str] = {}

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        first: dict[str, str] = dict(self.previous)
        for doc in sorted(docs, key=self.order):
            key = self.keys[doc["doc_id"]] = exact_key(doc["text"])
            twin = first.setdefault(key, doc["doc_id"])
            if twin != doc["doc_id"]:
                self.twin_of[doc["doc_id"]] = twin
                ledger.drop(doc, self.name, "exact_duplicate", f"kept twin {twin}")
        return [d for d in docs if d["doc_id"] not in self.twin_of]

    def summary(self) -> dict[str, Any]:
        return {"dropped": len(self.twin_of), "clusters": _clusters(self.twin_of)}


class NearDedup(Step):
    name = "near_dedup"

    def __init__(
        self, config: DedupConfig, previous: PublishedIndex, order: OrderKey, bucket_cap: int = BUCKET_CAP
    ) -> None:
        self.config = config
        self.previous = previous
        self.order = order
        self.bucket_cap = bucket_cap
        self.full_bucket_inserts = 0
        self.signatures: dict[str, MinHash] = {}
        self.words: dict[str, WordSequence] = {}
        self.twin_of: dict[str, str] = {}
        self.candidates_checked = 0

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        threshold = self.config.near_threshold
        lsh = BandIndex(self.config, self.bucket_cap)
        rank: dict[str, tuple] = {}
        for entry in self.previous.entries:
            signature = from_hashvalues(entry.minhash, self.config)
            rank[entry.doc_id] = (0, entry.doc_id)
            self.signatures[entry.doc_id] = signature
            self.words[entry.doc_id] = WordSequence(entry.words)
            lsh.insert(entry.doc_id, signature)
        ordered = sorted(docs, key=self.order)
        sequences, masked = [], []
        for d in ordered:
            tokens = words(d["text"])
            sequences.append(WordSequence.of(tokens))
            masked.append(WordSequence.of(mask_numbers(tokens)))
        signatures = minhash_signatures(masked, self.config)
        for doc, sequence, signature in zip(ordered, sequences, signatures, strict=True):
            doc_id = doc["doc_id"]
            self.words[doc_id], self.signatures[doc_id] = sequence, signature
            candidates = sorted(lsh.query(signature))
            self.candidates_checked += len(candidates)
            shares = shared_in_order(sequence, [self.words[c] for c in candidates], threshold)
            shared = {c: s for c, s in zip(candidates, shares, strict=True) if s is not None}
            if shared:
                twin = min(shared, key=rank.__getitem__)
                self.twin_of[doc_id] = twin
                detail = f"kept twin {twin} ({shared[twin]:.2f} of words shared in order)"
                ledger.drop(doc, self.name, "near_duplicate", detail)
            else:
                rank[doc_id] = (1, *self.order(doc))
                lsh.insert(doc_id, signature)
        self.full_bucket_inserts += lsh.full_buckets_hit
        return [d for d in docs if d["doc_id"] not in self.twin_of]

    def summary(self) -> dict[str, Any]:
        return {
            "dropped": len(self.twin_of),
            "clusters": _clusters(self.twin_of),
            "threshold": self.config.near_threshold,
            "candidate_shingle_jaccard": round(candidate_threshold(self.config), 3),
            "candidate_pairs_checked": self.candidates_checked,
            "candidate_bucket_cap": self.bucket_cap,
            "candidate_bucket_full_inserts": self.full_bucket_inserts,
            "earlier_runs_compared": len(self.previous.entries),
            "earlier_runs_skipped_incompatible": self.previous.skipped,
        }


class CopyForwardDedup(Step):
    name = "copy_forward"

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.paragraphs_removed = 0
        self.trimmed = 0
        self.dropped = 0

    def _timeline(self, docs: list[Doc]) -> dict[str, list[Doc]]:
        notes: dict[str, list[Doc]] = defaultdict(list)
        for doc in docs:
            if doc["doc_type"] in self.config.copy_forward_doc_types and doc.get("patient_pseudonym"):
                notes[doc["patient_pseudonym"]].append(doc)
        for patient_notes in notes.values():
            patient_notes.sort(key=lambda d: ((d.get("metadata") or {}).get("event_time") or _LATEST, d["doc_id"]))
        return notes

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        dropped: set[str] = set()
        for patient_notes in self._timeline(docs).values():
            written: dict[str, str] = {}  # paragraph key -> doc_id of the note that first wrote it
            for doc in patient_notes:
                kept, copied_from = [], []
                for paragraph in _PARAGRAPH_BREAK.split(doc["text"]):
                    if len(paragraph.strip()) < self.config.copy_forward_min_paragraph_chars:
                        kept.append(paragraph)
                        continue
                    first = written.setdefault(exact_key(paragraph), doc["doc_id"])
                    if first == doc["doc_id"]:
                        kept.append(paragraph)
                    else:
                        copied_from.append(first)
                if not copied_from:
                    continue
                self.paragraphs_removed += len(copied_from)
                remaining = "\n\n".join(kept).strip()
                if len(remaining) < self.config.copy_forward_min_remaining_chars:
                    dropped.add(doc["doc_id"])
                    self.dropped += 1
                    twin = min(copied_from)
                    ledger.drop(
                        doc, self.name, "copy_forward", f"{len(copied_from)} paragraphs copied, e.g. from {twin}"
                    )
                else:
                    doc["text"] = remaining
                    self.trimmed += 1
                    ledger.modify(doc, self.name, "copied_paragraphs_removed")
        return [d for d in docs if d["doc_id"] not in dropped]

    def summary(self) -> dict[str, Any]:
        return {
            "paragraphs_removed": self.paragraphs_removed,
            "documents_trimmed": self.trimmed,
            "dropped": self.dropped,
        }


def published_entries(docs: list[Doc], exact: ExactDedup, near: NearDedup, run_id: str) -> list[PublishedEntry]:
    """Index rows for the documents this run publishes (their hashes as they entered deduplication)."""
    return [
        PublishedEntry(
            doc_id=d["doc_id"],
            source=d["source"],
            run_id=run_id,
            exact_key=exact.keys[d["doc_id"]],
            minhash=near.signatures[d["doc_id"]].hashvalues.astype(np.uint64),
            words=near.words[d["doc_id"]].ids,
        )
        for d in docs
    ]
