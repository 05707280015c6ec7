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
from collections.abc import Callable, Iterable, Set
from datetime import UTC, datetime
from typing import Any

import numpy as np
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup_index import PublishedEntry, PublishedIndex
from pipelines.quality.steps import Doc, Ledger, TwoPassStep, drop_decided
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


def scheme_values(values: np.ndarray, config: DedupConfig) -> np.ndarray:
    """Stored hash values (uint64 in the index) in the scheme's dtype, as a new document's signature has them:
    the LSH's band keys are the values' bytes."""
    return MinHash(seed=config.seed, hashvalues=values, scheme="affine32", hashfunc=xxhash.xxh32_intdigest).hashvalues


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
        if cap < 2:
            raise ValueError(f"an LSH bucket must hold at least 2 documents, not {cap}")
        self.bands, self.rows = _optimal_param(candidate_threshold(config), config.num_perm, *LSH_WEIGHTS)
        self.cap = cap
        # A bucket of one document holds its doc_id, not a list: most buckets are, and a list costs ~90 bytes
        # more, 64 times per kept document.
        self.buckets: list[dict[bytes, str | list[str]]] = [{} for _ in range(self.bands)]
        self.full_buckets_hit = 0

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        """One key per band: the bytes of the band's rows of the MinHash hash values."""
        return [signature[b * self.rows : (b + 1) * self.rows].tobytes() for b in range(self.bands)]

    def query(self, signature: np.ndarray) -> set[str]:
        found: set[str] = set()
        for table, key in zip(self.buckets, self._keys(signature), strict=True):
            members = table.get(key)
            if isinstance(members, str):
                found.add(members)
            elif members:
                found.update(members)
        return found

    def insert(self, doc_id: str, signature: np.ndarray) -> None:
        for table, key in zip(self.buckets, self._keys(signature), strict=True):
            members = table.get(key)
            if members is None:
                table[key] = doc_id
            elif isinstance(members, str):
                table[key] = [members, doc_id]
            elif len(members) < self.cap:
                members.append(doc_id)
            else:
                self.full_buckets_hit += 1


class ExactDedup(TwoPassStep):
    """Keeps, of each set of documents with one exact key, the first in dedup order; observing keeps only each
    document's key (a sha256) and order key."""

    name = "exact_dedup"

    def __init__(self, previous: PublishedIndex, order: OrderKey) -> None:
        self.previous = {e.exact_key: e.doc_id for e in sorted(previous.entries, key=lambda e: e.doc_id, reverse=True)}
        self.order = order
        self.keys: dict[str, str] = {}
        self.ranks: dict[str, tuple] = {}
        self.twin_of: dict[str, str] = {}

    def observe(self, docs: list[Doc]) -> None:
        for doc in docs:
            self.keys[doc["doc_id"]] = exact_key(doc["text"])
            self.ranks[doc["doc_id"]] = self.order(doc)

    def _decide(self, skip: Set[str]) -> None:
        first: dict[str, str] = dict(self.previous)
        for doc_id in sorted(self.ranks.keys() - skip, key=self.ranks.__getitem__):
            twin = first.setdefault(self.keys[doc_id], doc_id)
            if twin != doc_id:
                self.twin_of[doc_id] = twin
        self.ranks.clear()

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        return drop_decided(docs, ledger, self.name, "exact_duplicate", self._detail)

    def _detail(self, doc_id: str) -> str | None:
        twin = self.twin_of.get(doc_id)
        return None if twin is None else f"kept twin {twin}"

    def summary(self) -> dict[str, Any]:
        return {"dropped": len(self.twin_of), "clusters": _clusters(self.twin_of)}


class NearDedup(TwoPassStep):
    """Observing keeps each document's word hashes and MinHash hash values (what the cross-run index stores),
    never its text; deciding walks the documents in dedup order through the capped LSH."""

    name = "near_dedup"

    def __init__(
        self, config: DedupConfig, previous: PublishedIndex, order: OrderKey, bucket_cap: int = BUCKET_CAP
    ) -> None:
        self.config = config
        self.previous = previous
        self.order = order
        self.bucket_cap = bucket_cap
        self.full_bucket_inserts = 0
        self.signatures: dict[str, np.ndarray] = {}
        self.words: dict[str, WordSequence] = {}
        self.ranks: dict[str, tuple] = {}
        self.twin_of: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.candidates_checked = 0

    def observe(self, docs: list[Doc]) -> None:
        masked = []
        for doc in docs:
            tokens = words(doc["text"])
            self.words[doc["doc_id"]] = WordSequence.of(tokens)
            self.ranks[doc["doc_id"]] = self.order(doc)
            masked.append(WordSequence.of(mask_numbers(tokens)))
        for doc, signature in zip(docs, minhash_signatures(masked, self.config), strict=True):
            self.signatures[doc["doc_id"]] = signature.hashvalues

    def _decide(self, skip: Set[str]) -> None:
        threshold = self.config.near_threshold
        lsh = BandIndex(self.config, self.bucket_cap)
        rank: dict[str, tuple] = {}
        for entry in self.previous.entries:
            rank[entry.doc_id] = (0, entry.doc_id)
            self.signatures[entry.doc_id] = signature = scheme_values(entry.minhash, self.config)
            self.words[entry.doc_id] = WordSequence(entry.words)
            lsh.insert(entry.doc_id, signature)
        for doc_id in sorted(self.ranks.keys() - skip, key=self.ranks.__getitem__):
            signature = self.signatures[doc_id]
            candidates = sorted(lsh.query(signature))
            self.candidates_checked += len(candidates)
            shares = shared_in_order(self.words[doc_id], [self.words[c] for c in candidates], threshold)
            shared = {c: s for c, s in zip(candidates, shares, strict=True) if s is not None}
            if shared:
                twin = min(shared, key=rank.__getitem__)
                self.twin_of[doc_id] = twin
                self.details[doc_id] = f"kept twin {twin} ({shared[twin]:.2f} of words shared in order)"
            else:
                rank[doc_id] = (1, *self.ranks[doc_id])
                lsh.insert(doc_id, signature)
        self.full_bucket_inserts += lsh.full_buckets_hit
        self.ranks.clear()
        # Only this run's kept documents can be published, so only their words and signatures are still needed.
        kept = [doc_id for doc_id, (run, *_) in rank.items() if run == 1]
        self.words = {doc_id: self.words[doc_id] for doc_id in kept}
        self.signatures = {doc_id: self.signatures[doc_id] for doc_id in kept}
        for sequence in self.words.values():
            sequence.forget_bounds()

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        return drop_decided(docs, ledger, self.name, "near_duplicate", self.details.get)

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


class CopyForwardDedup(TwoPassStep):
    """Observing keeps, per in-scope note, its patient, time and the exact key of each long paragraph; deciding
    walks each patient's notes in time order and records which paragraphs were written before; applying
    removes them from the text."""

    name = "copy_forward"

    def __init__(self, config: DedupConfig) -> None:
        self.config = config
        self.notes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)  # patient -> (time, doc_id)
        self.paragraph_keys: dict[str, list[str | None]] = {}
        self.copied: dict[str, list[tuple[int, str]]] = {}  # doc_id -> (paragraph index, doc_id that wrote it)
        self.paragraphs_removed = 0
        self.trimmed = 0
        self.dropped = 0

    def observe(self, docs: list[Doc]) -> None:
        minimum = self.config.copy_forward_min_paragraph_chars
        for doc in docs:
            if doc["doc_type"] in self.config.copy_forward_doc_types and doc.get("patient_pseudonym"):
                when = (doc.get("metadata") or {}).get("event_time") or _LATEST
                self.notes[doc["patient_pseudonym"]].append((when, doc["doc_id"]))
                self.paragraph_keys[doc["doc_id"]] = [
                    exact_key(p) if len(p.strip()) >= minimum else None for p in _PARAGRAPH_BREAK.split(doc["text"])
                ]

    def _decide(self, skip: Set[str]) -> None:
        for patient_notes in self.notes.values():
            written: dict[str, str] = {}  # paragraph key -> doc_id of the note that first wrote it
            for _, doc_id in sorted(n for n in patient_notes if n[1] not in skip):
                for index, key in enumerate(self.paragraph_keys[doc_id]):
                    if key is not None and (first := written.setdefault(key, doc_id)) != doc_id:
                        self.copied.setdefault(doc_id, []).append((index, first))
        self.notes.clear()
        self.paragraph_keys.clear()

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        kept_docs = []
        for doc in docs:
            copied = self.copied.get(doc["doc_id"])
            if not copied:
                kept_docs.append(doc)
                continue
            removed = {index for index, _ in copied}
            paragraphs = _PARAGRAPH_BREAK.split(doc["text"])
            remaining = "\n\n".join(p for i, p in enumerate(paragraphs) if i not in removed).strip()
            self.paragraphs_removed += len(copied)
            if len(remaining) < self.config.copy_forward_min_remaining_chars:
                self.dropped += 1
                twin = min(first for _, first in copied)
                ledger.drop(doc, self.name, "copy_forward", f"{len(copied)} paragraphs copied, e.g. from {twin}")
            else:
                doc["text"] = remaining
                self.trimmed += 1
                ledger.modify(doc, self.name, "copied_paragraphs_removed")
                kept_docs.append(doc)
        return kept_docs

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
            minhash=near.signatures[d["doc_id"]].astype(np.uint64),
            words=near.words[d["doc_id"]].ids,
        )
        for d in docs
    ]
