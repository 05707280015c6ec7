"""MinHash LSH banding with capped buckets, laid out for near dedup's one walk in dedup order.

As datasketch's ``MinHashLSH`` (same bands and rows for the same threshold and weights), two documents are
candidates when all the rows of one band of their MinHash values are equal.  A bucket (one band's values)
holds at most ``cap`` documents: the first ``cap`` inserted, and the insertion order is the dedup order, so
which documents hold a full bucket, and therefore every decision, is the same on every run of the same corpus.

Nothing is looked up by hash during the walk.  Before it, each band's keys are sorted once (``np.unique``):
a bucket only one document hashes to can never propose a pair, so only buckets of two or more documents get a
dense id, and each walk position lists its buckets' ids (a CSR layout: 4 bytes per document and band that
shares a bucket).  A bucket's members live in a slot of ``min(cap, size)`` entries of one flat array.  The
walk's state is then a few numpy arrays, instead of a dict entry per band and kept document (~6 KB a
document in the dict-based index this replaced).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class BandedBuckets:
    """Capped LSH buckets over documents at walk positions 0..count-1 (dedup order).

    ``band_groups`` gives, per band, an integer per walk position that is equal for two positions exactly when
    their band keys are equal (``np.unique(..., return_inverse=True)`` of the band's rows).
    """

    def __init__(self, band_groups: Iterable[np.ndarray], count: int, cap: int) -> None:
        if cap < 2:
            raise ValueError(f"an LSH bucket must hold at least 2 documents, not {cap}")
        self.cap = cap
        self.full_buckets_hit = 0
        members_by_band, buckets_by_band, sizes = [], [], []
        per_position = np.zeros(count, np.int64)
        buckets_so_far = 0
        for groups in band_groups:
            run_sizes = np.bincount(groups)
            shared = run_sizes >= 2
            dense = np.cumsum(shared) - 1 + buckets_so_far
            members = np.flatnonzero(shared[groups])
            members_by_band.append(members.astype(np.int32))
            buckets_by_band.append(dense[groups[members]].astype(np.int32))
            per_position[members] += 1
            sizes.append(run_sizes[shared])
            buckets_so_far += int(shared.sum())
        self._bounds = np.concatenate([[0], np.cumsum(per_position)]).astype(np.int64)
        # A counting sort into the CSR layout, band after band (so a position's buckets are in band order), each
        # band's lists freed once placed: at the peak 12 bytes a membership, not the 28 of concatenating the
        # bands and sorting them by position.
        self._buckets = np.empty(int(self._bounds[-1]), np.int32)
        cursor = self._bounds[:-1].copy()
        while members_by_band:
            members, buckets = members_by_band.pop(0), buckets_by_band.pop(0)
            self._buckets[cursor[members]] = buckets
            cursor[members] += 1
        slots = np.minimum(np.concatenate(sizes), cap) if sizes else np.zeros(0, np.int64)
        self._start = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(np.int64)
        self._members = np.empty(int(slots.sum()), np.int32)
        self._fill = np.zeros(buckets_so_far, np.min_scalar_type(cap))

    @property
    def shared_memberships(self) -> int:
        """(document, band) pairs in a bucket of two or more documents: what the layout costs, 4 bytes each."""
        return len(self._buckets)

    def _of(self, position: int) -> np.ndarray:
        return self._buckets[self._bounds[position] : self._bounds[position + 1]]

    def query(self, position: int) -> np.ndarray:
        """Walk positions of the documents inserted so far in the buckets of ``position``, sorted, unique."""
        buckets = self._of(position)
        fill = self._fill[buckets].astype(np.int64)
        buckets, fill = buckets[fill > 0], fill[fill > 0]
        if not len(buckets):
            return np.zeros(0, np.int32)
        ends = np.cumsum(fill)
        slots = np.repeat(self._start[buckets] - (ends - fill), fill) + np.arange(ends[-1])
        return np.unique(self._members[slots])

    def insert(self, position: int) -> None:
        buckets = self._of(position)
        fill = self._fill[buckets]
        room = fill < self.cap
        self.full_buckets_hit += int((~room).sum())
        buckets = buckets[room]
        self._members[self._start[buckets] + fill[room]] = position
        self._fill[buckets] += 1


def band_groups(blocks: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """Per band's block (a row of the band's MinHash values per walk position), an integer per row that is
    equal for two rows exactly when their values are."""
    for block in blocks:
        yield np.unique(block, axis=0, return_inverse=True)[1].reshape(-1)
