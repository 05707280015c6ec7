"""Deduplication at three levels, each a step that drops documents with a traceable reason.

* ``ExactDedup``: sha256 of the normalized text (text_norm.exact_key), across all sources and earlier runs.
* ``NearDedup``: MinHash LSH (datasketch) over word 5-gram shingles, numbers masked; a candidate from the LSH
  index counts only when its estimated Jaccard similarity reaches the threshold.
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
from datasketch import MinHash, MinHashLSH

from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.dedup_index import PublishedEntry, PublishedIndex
from pipelines.quality.steps import Doc, Ledger, Step
from pipelines.quality.text_norm import exact_key, ngrams, words

OrderKey = Callable[[Doc], tuple]
# Band weights (false positive, false negative) for the LSH parameters.  Every candidate is verified with the
# signatures' Jaccard estimate, so a false positive costs one comparison while a false negative loses a
# duplicate: datasketch's default (0.5, 0.5) at threshold 0.8 finds a pair of true similarity 0.8 only 40% of
# the time, these weights 95%.
LSH_WEIGHTS = (0.05, 0.95)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_LATEST = datetime.max.replace(tzinfo=UTC)


def shingles(text: str, size: int) -> set[bytes]:
    return {s.encode() for s in ngrams(words(text, mask_numbers=True), size)}


def minhash_signatures(texts: Iterable[str], config: DedupConfig) -> list[MinHash]:
    """One MinHash per text, built in bulk (shared permutations, one vectorized update per document)."""
    return MinHash.bulk(
        (shingles(t, config.shingle_words) for t in texts),
        num_perm=config.num_perm,
        seed=config.seed,
        hashfunc=xxhash.xxh32_intdigest,
    )


def from_hashvalues(values: np.ndarray, config: DedupConfig) -> MinHash:
    return MinHash(seed=config.seed, hashvalues=values, scheme="affine32", hashfunc=xxhash.xxh32_intdigest)


def _clusters(kept_twin_of: dict[str, str]) -> dict[str, int]:
    sizes = Counter(kept_twin_of.values())
    return {str(size): n for size, n in sorted(Counter(count + 1 for count in sizes.values()).items())}


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

    def __init__(self, config: DedupConfig, previous: PublishedIndex, order: OrderKey) -> None:
        self.config = config
        self.previous = previous
        self.order = order
        self.signatures: dict[str, MinHash] = {}
        self.twin_of: dict[str, str] = {}

    def run(self, docs: list[Doc], ledger: Ledger) -> list[Doc]:
        lsh = MinHashLSH(threshold=self.config.near_threshold, num_perm=self.config.num_perm, weights=LSH_WEIGHTS)
        rank: dict[str, tuple] = {}
        for entry in self.previous.entries:
            signature = from_hashvalues(entry.minhash, self.config)
            rank[entry.doc_id] = (0, entry.doc_id)
            self.signatures[entry.doc_id] = signature
            lsh.insert(entry.doc_id, signature)
        ordered = sorted(docs, key=self.order)
        for doc, signature in zip(ordered, minhash_signatures((d["text"] for d in ordered), self.config), strict=True):
            doc_id = doc["doc_id"]
            self.signatures[doc_id] = signature
            similar = [
                c for c in lsh.query(signature) if signature.jaccard(self.signatures[c]) >= self.config.near_threshold
            ]
            if similar:
                twin = min(similar, key=rank.__getitem__)
                self.twin_of[doc_id] = twin
                estimate = signature.jaccard(self.signatures[twin])
                ledger.drop(doc, self.name, "near_duplicate", f"kept twin {twin} (estimated jaccard {estimate:.2f})")
            else:
                rank[doc_id] = (1, *self.order(doc))
                lsh.insert(doc_id, signature)
        return [d for d in docs if d["doc_id"] not in self.twin_of]

    def summary(self) -> dict[str, Any]:
        return {
            "dropped": len(self.twin_of),
            "clusters": _clusters(self.twin_of),
            "threshold": self.config.near_threshold,
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
        )
        for d in docs
    ]
