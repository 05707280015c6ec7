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
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup_index import PublishedEntry, PublishedIndex
from pipelines.quality.dedup_store import DocRegister, RaggedFile, Rank, RowFile, SequenceCache, Twins
from pipelines.quality.lsh_buckets import BandedBuckets, band_groups
from pipelines.quality.steps import Doc, Ledger, TwoPassStep, drop_decided
from pipelines.quality.text_norm import exact_key, mask_numbers, words
from pipelines.quality.word_similarity import (
    BUCKETS,
    COUNT_DTYPE,
    InOrder,
    WordSequence,
    lengths_fit,
    may_reach,
    word_counts,
)

OrderKey = Callable[[Doc], Rank]
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
# Words of the sequences (with their cached bounds) near dedup keeps while it walks, most recently used first.
# The candidates that reach verification are mostly the first documents of busy LSH buckets, read again and
# again; the bag is a sort, so recomputing it per comparison made the walk at 100,000 documents several times
# slower.  12 bytes a word (hash and bag), ~100 MB whatever the corpus.  The walk over the 100,000 bench documents
# read 237k sequences with 2.5M words cached (13k sequences), 62k with 8M: 43.5 -> 35.7 CPU-s.
SEQUENCE_CACHE_WORDS = 8_000_000
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


def scheme_values(values: np.ndarray) -> np.ndarray:
    """Stored hash values (uint64 in the index) in the dtype of datasketch's default "affine32" scheme, as a new
    document's signature has them: the LSH's band keys are the values' bytes.  A value that does not fit 32 bits
    was not made by that scheme, so it is refused as datasketch refuses it, not truncated into a false match."""
    if values.size and int(values.max()) > np.iinfo(np.uint32).max:
        raise ValueError("dedup index: MinHash values out of range for the affine32 scheme")
    return values.astype(np.uint32)


def exact_fingerprints(docs: list[Doc]) -> list[str]:
    """What exact dedup records of each document: its exact key."""
    return [exact_key(d["text"]) for d in docs]


@dataclass(frozen=True)
class NearFingerprints:
    """What near dedup records of a batch: each document's word hashes and MinHash signature (one row each)."""

    word_ids: list[np.ndarray]
    signatures: np.ndarray


def near_fingerprints(docs: list[Doc], config: DedupConfig) -> NearFingerprints:
    tokens = [words(doc["text"]) for doc in docs]
    masked = minhash_signatures((WordSequence.of(mask_numbers(t)) for t in tokens), config)
    signatures = np.array([m.hashvalues for m in masked], np.uint32).reshape(-1, config.num_perm)
    return NearFingerprints([WordSequence.of(t).ids for t in tokens], signatures)


@dataclass(frozen=True)
class NoteParagraphs:
    """What copy-forward dedup records of a note in its scope: patient, time, and each paragraph's exact key
    (None for a paragraph too short to count as copied)."""

    patient: str
    when: datetime
    doc_id: str
    keys: list[str | None]


def copy_forward_fingerprints(docs: list[Doc], config: DedupConfig) -> list[NoteParagraphs]:
    minimum = config.copy_forward_min_paragraph_chars
    return [
        NoteParagraphs(
            patient=doc["patient_pseudonym"],
            when=(doc.get("metadata") or {}).get("event_time") or _LATEST,
            doc_id=doc["doc_id"],
            keys=[exact_key(p) if len(p.strip()) >= minimum else None for p in _PARAGRAPH_BREAK.split(doc["text"])],
        )
        for doc in docs
        if doc["doc_type"] in config.copy_forward_doc_types and doc.get("patient_pseudonym")
    ]


def _earlier_run(doc_id: str) -> Rank:
    """The rank of a document an earlier run published: before every source of this run, then by doc_id."""
    return -1, doc_id


class ExactDedup(TwoPassStep):
    """Keeps, of each set of documents with one exact key, the first in dedup order.  Observing registers each
    document's rank and appends its key's 32 bytes to a file; deciding reads the keys back in dedup order and
    finds each key's first document with one stable ``np.unique``."""

    name = "exact_dedup"

    def __init__(
        self,
        previous: PublishedIndex,
        order: OrderKey,
        directory: Path | None = None,
        register: DocRegister | None = None,
    ) -> None:
        super().__init__()
        self.previous = previous
        self.order = order
        self._scratch = TemporaryDirectory(prefix="exact-dedup-", dir=directory)
        self.register = DocRegister() if register is None else register  # shared with near dedup in curate
        self.recorded = 0
        self.digests = RowFile(Path(self._scratch.name) / "sha256.u8", np.uint8, 32)
        self.twins = Twins(self.register, "kept twin {twin}")

    def observe(self, docs: list[Doc]) -> None:
        self.record([self.order(d) for d in docs], exact_fingerprints(docs))

    def record(self, ranks: list[Rank], keys: list[str]) -> None:
        """Register documents in observation order (their fingerprints may come from a Ray worker)."""
        self.register.record(ranks, self.recorded)
        self.recorded += len(ranks)
        self.digests.append(np.frombuffer(b"".join(bytes.fromhex(k) for k in keys), np.uint8))

    def _decide(self, skip: pa.Array) -> None:
        observed = self.recorded
        for earlier in self.previous.slices():
            self.record([_earlier_run(d) for d in earlier.doc_ids], earlier.exact_keys)
        walk = self.register.in_rank_order(skip)
        if not len(walk):
            return
        _, first, inverse = np.unique(self.digests.read_all()[walk], axis=0, return_index=True, return_inverse=True)
        twins = first[inverse.reshape(-1)]
        dropped = np.flatnonzero((twins != np.arange(len(walk))) & (walk < observed))
        self.twins.extend(walk[dropped], walk[twins[dropped]])

    def key_of(self, doc_ids: list[str]) -> list[str]:
        """The exact keys of observed documents, as the published index stores them."""
        return [row.tobytes().hex() for row in self.digests.read(self.register.indexes_of(doc_ids))]

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        return drop_decided(docs, ledger, self.name, "exact_duplicate", self.twins.details)

    def summary(self) -> dict[str, Any]:
        return {"dropped": len(self.twins), "clusters": self.twins.clusters()}


class NearDedup(TwoPassStep):
    """Observing appends each document's word hashes, MinHash values, band keys (what the cross-run index stores,
    never the text) and word counts by hash bucket (256 bytes) to files; deciding reads the counts back as one
    array, the in-memory screen, and walks the documents in dedup order through the capped LSH buckets
    (lsh_buckets.py)."""

    name = "near_dedup"

    def __init__(
        self,
        config: DedupConfig,
        previous: PublishedIndex,
        order: OrderKey,
        bucket_cap: int = BUCKET_CAP,
        directory: Path | None = None,
        register: DocRegister | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.previous = previous
        self.order = order
        self.bucket_cap = bucket_cap
        self.bands, self.rows = _optimal_param(candidate_threshold(config), config.num_perm, *LSH_WEIGHTS)
        self._scratch = TemporaryDirectory(prefix="near-dedup-", dir=directory)
        root = Path(self._scratch.name)
        self.register = DocRegister() if register is None else register  # shared with exact dedup in curate
        self.recorded = 0
        self.words = RaggedFile(root / "words.u32", np.uint32)
        self.signatures = RowFile(root / "minhash.u32", np.uint32, config.num_perm)
        self.band_keys = [RowFile(root / f"band-{b:03d}.u32", np.uint32, self.rows) for b in range(self.bands)]
        self.counts = RowFile(root / "counts.u8", COUNT_DTYPE, BUCKETS)
        self.sequence = SequenceCache(self._read_sequence, SEQUENCE_CACHE_WORDS)
        self.twins = Twins(self.register, "kept twin {twin} ({share:.2f} of words shared in order)")
        self.full_bucket_inserts = 0
        self.shared_bucket_memberships = 0
        self.candidates_proposed = 0
        self.candidates_checked = 0

    def observe(self, docs: list[Doc]) -> None:
        self.record([self.order(d) for d in docs], near_fingerprints(docs, self.config))

    def record(self, ranks: list[Rank], fingerprints: NearFingerprints) -> None:
        """Register documents in observation order (their fingerprints may come from a Ray worker)."""
        word_ids, signatures = fingerprints.word_ids, fingerprints.signatures
        self.register.record(ranks, self.recorded)
        self.recorded += len(ranks)
        self.words.append(word_ids)
        self.signatures.append(signatures)
        for band, keys in enumerate(self.band_keys):
            keys.append(signatures[:, band * self.rows : (band + 1) * self.rows])
        self.counts.append(np.array([word_counts(ids) for ids in word_ids], COUNT_DTYPE).reshape(-1, BUCKETS))

    def _decide(self, skip: pa.Array) -> None:
        observed = self.recorded
        for earlier in self.previous.slices():
            fingerprints = NearFingerprints(earlier.words, scheme_values(earlier.minhashes))
            self.record([_earlier_run(d) for d in earlier.doc_ids], fingerprints)
        walk = self.register.in_rank_order(skip)
        groups = band_groups(keys.read_all()[walk] for keys in self.band_keys)
        lsh = BandedBuckets(groups, len(walk), self.bucket_cap, Path(self._scratch.name) / "lsh")
        self.shared_bucket_memberships = lsh.shared_memberships
        counts = self.counts.read_all()  # one array: concatenating batches held them twice at the peak
        lengths = self.words.lengths()
        for position, index in enumerate(walk.tolist()):
            if index >= observed or not self._has_twin(position, index, walk, lsh, counts, lengths):
                lsh.insert(position)
        self.full_bucket_inserts += lsh.full_buckets_hit
        self.sequence.clear()

    def _read_sequence(self, index: int) -> WordSequence:
        return WordSequence(self.words.read(index))

    def _has_twin(
        self, position: int, index: int, walk: np.ndarray, lsh: BandedBuckets, counts: np.ndarray, lengths: np.ndarray
    ) -> bool:
        """Verify the document at ``position`` against the plausible ones of its LSH candidates (earlier walk
        positions, so earlier in dedup order); record its kept twin, the earliest that shares enough words.
        Candidates come sorted by walk position, so they are verified in that order and the first that shares
        enough is the twin: the later ones need not be read."""
        candidates = lsh.query(position)
        self.candidates_proposed += len(candidates)
        threshold = self.config.near_threshold
        others = walk[candidates]
        fit = lengths_fit(lengths[index], lengths[others], threshold)  # before gathering 256 counts a candidate
        candidates, others = candidates[fit], others[fit]
        plausible = may_reach(lengths[index], counts[index], lengths[others], counts[others], threshold)
        if not plausible.any():
            return False
        matcher = InOrder(self._read_sequence(index))  # read once as a query: kept out of the cache of candidates
        for twin_position, other in zip(candidates[plausible].tolist(), others[plausible].tolist(), strict=True):
            self.candidates_checked += 1
            share = matcher.share(self.sequence(other), threshold)
            if share is not None:
                self.twins.add(index, int(walk[twin_position]), share)
                return True
        return False

    def published(self, doc_ids: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
        """The MinHash values (as the index stores them) and word hashes of observed documents."""
        indexes = self.register.indexes_of(doc_ids)
        return self.signatures.read(indexes).astype(np.uint64), [self.words.read(i) for i in indexes.tolist()]

    def apply(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        return drop_decided(docs, ledger, self.name, "near_duplicate", self.twins.details)

    def summary(self) -> dict[str, Any]:
        return {
            "dropped": len(self.twins),
            "clusters": self.twins.clusters(),
            "threshold": self.config.near_threshold,
            "candidate_shingle_jaccard": round(candidate_threshold(self.config), 3),
            "candidate_pairs_proposed": self.candidates_proposed,
            "candidate_pairs_checked": self.candidates_checked,
            "candidate_bucket_cap": self.bucket_cap,
            "candidate_bucket_full_inserts": self.full_bucket_inserts,
            "shared_bucket_memberships": self.shared_bucket_memberships,
            "earlier_runs_compared": self.previous.rows,
            "earlier_runs_skipped_incompatible": self.previous.skipped,
        }


class CopyForwardDedup(TwoPassStep):
    """Observing keeps, per in-scope note, its patient, time and the exact key of each long paragraph; deciding
    walks each patient's notes in time order and records which paragraphs were written before; applying
    removes them from the text."""

    name = "copy_forward"

    def __init__(self, config: DedupConfig) -> None:
        super().__init__()
        self.config = config
        self.notes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)  # patient -> (time, doc_id)
        self.paragraph_keys: dict[str, list[str | None]] = {}
        self.copied: dict[str, list[tuple[int, str]]] = {}  # doc_id -> (paragraph index, doc_id that wrote it)
        self.paragraphs_removed = 0
        self.trimmed = 0
        self.dropped = 0

    def observe(self, docs: list[Doc]) -> None:
        self.record(copy_forward_fingerprints(docs, self.config))

    def record(self, notes: list[NoteParagraphs]) -> None:
        """Register notes in observation order (their fingerprints may come from a Ray worker)."""
        for note in notes:
            self.notes[note.patient].append((note.when, note.doc_id))
            self.paragraph_keys[note.doc_id] = note.keys

    def _decide(self, skip: pa.Array) -> None:
        mine = pa.array(list(self.paragraph_keys), pa.string())
        skipped = set(mine.filter(pc.is_in(mine, value_set=skip)).to_pylist())  # only this step's notes
        for patient_notes in self.notes.values():
            written: dict[str, str] = {}  # paragraph key -> doc_id of the note that first wrote it
            for _, doc_id in sorted(n for n in patient_notes if n[1] not in skipped):
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
    doc_ids = [d["doc_id"] for d in docs]
    minhashes, word_ids = near.published(doc_ids)
    return [
        PublishedEntry(doc_id=d["doc_id"], source=d["source"], run_id=run_id, exact_key=k, minhash=m, words=w)
        for d, k, m, w in zip(docs, exact.key_of(doc_ids), minhashes, word_ids, strict=True)
    ]
