"""How near-duplicate deduplication measures "at least 80% of the words match": words shared in order.

The similarity of two documents is the length of the longest common subsequence (LCS) of their word
sequences, divided by the word count of the longer one: the share of the longer document's words that the
other has too, in the same order.  Words are those of ``text_norm.words`` (case-folded, punctuation dropped,
numbers as written), each kept as a 32-bit xxh32 hash, so a document's sequence is a compact array that the
cross-run index can store without the text.  Some reference points: 10% of the words replaced, wherever they
are, gives 0.90; 10% more words appended gives 0.91; the same words shuffled share little, because order
counts.

The exact LCS is O(n*m) in the worst case, so a comparison is cut short by two bounds before it is computed:
the length ratio (an LCS cannot exceed the shorter document) and the shared word multiset (an LCS cannot use a
word more often than both documents have it; bounded first by word counts per hash bucket, vectorized over
all candidates of a document, then counted exactly).  A pair passing both is a near-duplicate in all but
name, and its LCS is computed bit-parallel (Hyyrö's algorithm on Python integers: one pass over one document,
word-size chunks of the other), about 10 ms for two 5,000-word documents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import xxhash

WORD_HASH = "xxh32"
# Hash buckets of the word-count bound; its counts are uint8 (saturating at 255), so a document's are 256 bytes
# and near dedup keeps every document's in memory to screen LSH candidates without reading their words.  On the
# 10,000-document bench corpus (LSH pairs sampled) 64 buckets let 27,190 of 200,000 pairs through, 256 buckets
# 1,335, the exact word-multiset bound 317: the screen is what keeps verification from growing with the corpus.
BUCKETS = 256
COUNT_DTYPE = np.uint8
_SATURATED = np.iinfo(COUNT_DTYPE).max
# The narrowest integer that holds a sum of one document's bucket counts (uint16 for 256 buckets).
_COUNT_SUM = np.min_scalar_type(BUCKETS * int(_SATURATED))


@dataclass(frozen=True, eq=False)
class WordSequence:
    """A document's words as xxh32 hashes, in order."""

    ids: np.ndarray  # uint32

    @classmethod
    def of(cls, tokens: list[str]) -> WordSequence:
        return cls(
            np.fromiter((xxhash.xxh32_intdigest(t.encode()) for t in tokens), dtype=np.uint32, count=len(tokens))
        )

    def __len__(self) -> int:
        return len(self.ids)

    @cached_property
    def bag(self) -> np.ndarray:
        """The word multiset as distinct keys (hash << 32 | occurrence number), so set intersection counts
        each word as often as both documents have it."""
        ordered = np.sort(self.ids).astype(np.uint64)
        positions = np.arange(len(ordered))
        run_start = np.empty(len(ordered), bool)  # not np.r_, whose indexing machinery costs more than the sort
        run_start[:1] = True
        np.not_equal(ordered[1:], ordered[:-1], out=run_start[1:])
        occurrence = positions - np.maximum.accumulate(np.where(run_start, positions, 0))
        return (ordered << np.uint64(32)) | occurrence.astype(np.uint64)


def word_counts(ids: np.ndarray) -> np.ndarray:
    """Word counts by hash bucket (uint8, saturating at 255): the sum over buckets of the smaller count
    bounds the shared word multiset from above, in one vectorized step over many candidates."""
    return np.minimum(np.bincount(ids % BUCKETS, minlength=BUCKETS), _SATURATED).astype(COUNT_DTYPE)


def lengths_fit(length: int, lengths: np.ndarray, threshold: float) -> np.ndarray:
    """Per other document of ``lengths`` words, whether its share of words in order with a document of
    ``length`` words can reach ``threshold`` at all: an LCS cannot exceed the shorter document.  Cheaper than
    ``may_reach`` by the 256 counts a row, so the walk screens its candidates with this first."""
    lengths = np.asarray(lengths, dtype=np.int64)
    shorter = np.minimum(lengths, length)
    return (shorter > 0) & (shorter / np.maximum(np.maximum(lengths, length), 1) >= threshold)


def may_reach(length: int, counts: np.ndarray, lengths: np.ndarray, others: np.ndarray, threshold: float) -> np.ndarray:
    """Per other document (``lengths``, ``others``: one row of ``word_counts`` each), whether its share of
    words in order with a document of ``length`` words and ``counts`` can reach ``threshold``: the length
    ratio (an LCS cannot exceed the shorter document), then the word-count bound.  A bucket saturated in both
    documents bounds nothing, so it counts as the shorter length.

    This runs on every LSH candidate of every document (up to ``bands * BUCKET_CAP`` each), so the sum stays in
    the narrowest integer that holds it (16 bits) and the saturated buckets are corrected only when the document has
    one: widening every count to 64 bits made it the walk's largest cost at a million documents."""
    lengths = np.asarray(lengths, dtype=np.int64)
    longer = np.maximum(lengths, length)
    shorter = np.minimum(lengths, length)
    possible = lengths_fit(length, lengths, threshold)
    common = np.minimum(others, counts).sum(axis=1, dtype=_COUNT_SUM).astype(np.int64)
    saturated = np.flatnonzero(counts == _SATURATED)
    if len(saturated):
        both_saturated = others[:, saturated] == _SATURATED
        common += (both_saturated * (shorter[:, None] - int(_SATURATED))).sum(axis=1)
    return possible & (common / np.maximum(longer, 1) >= threshold)


# Words of ``b`` between two checks of whether the LCS can still reach what is needed.
_LCS_CHECK_EVERY = 64


def longest_common_subsequence(a: list[int], b: list[int], need: int = 0) -> int:
    """Length of the LCS of ``a`` and ``b`` (Hyyrö 2004, bit-parallel): ``v`` holds one bit per position of
    ``a``; each element of ``b`` updates all of them at once with integer arithmetic.

    With ``need``, it stops as soon as the LCS cannot reach it (what is matched so far plus every word of ``b``
    left that ``a`` has too is below ``need``) and returns that bound instead, which is below ``need``: most
    verified pairs of templated text share too few words, and this tells so part-way through."""
    return _lcs(_bit_masks(a), len(a), b, need)


def _bit_masks(a: list[int]) -> dict[int, int]:
    """Per word of ``a``, the bits of its positions: what the bit-parallel LCS matches the other side against."""
    masks: dict[int, int] = {}
    for i, word in enumerate(a):
        masks[word] = masks.get(word, 0) | (1 << i)
    return masks


def _lcs(masks: dict[int, int], length: int, b: list[int], need: int) -> int:
    # A word of ``b`` that ``a`` lacks leaves ``v`` as it is (its mask is 0), so only the others are stepped
    # through; they are also all that can still add to the LCS, which tightens the bound.
    present = [mask for mask in map(masks.get, b) if mask]
    all_ones = (1 << length) - 1
    v = all_ones
    for start in range(0, len(present), _LCS_CHECK_EVERY):
        for mask in present[start : start + _LCS_CHECK_EVERY]:
            u = v & mask
            v = (v + u) | (v - u)
        reachable = length - (v & all_ones).bit_count() + max(len(present) - start - _LCS_CHECK_EVERY, 0)
        if reachable < need:
            return reachable
    return length - (v & all_ones).bit_count()


class InOrder:
    """One document ready to be compared with many others: its word masks for the LCS are built once, not once
    per pair (as long as the LCS itself on short documents)."""

    def __init__(self, query: WordSequence) -> None:
        self.query = query

    @cached_property
    def masks(self) -> dict[int, int]:
        """Built at the first pair that passes the exact bag bound: most documents never get that far."""
        return _bit_masks(self.query.ids.tolist())

    def share(self, other: WordSequence, threshold: float) -> float | None:
        """The share of the longer document's words matched in order, when at least ``threshold``; None below.
        For a pair that ``may_reach`` let through: the exact word-multiset bound first, then the LCS."""
        longer = max(len(self.query), len(other))
        if not len(self.query) or not len(other):
            return None
        if len(np.intersect1d(self.query.bag, other.bag, assume_unique=True)) < threshold * longer:
            return None
        need = math.ceil(threshold * longer - 1e-9)
        share = _lcs(self.masks, len(self.query), other.ids.tolist(), need) / longer
        return share if share >= threshold else None
