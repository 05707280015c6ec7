"""MinHash LSH banding with capped buckets, laid out for near dedup's one walk in dedup order.

As datasketch's ``MinHashLSH`` (same bands and rows for the same threshold and weights), two documents are
candidates when all the rows of one band of their MinHash values are equal.  A bucket (one band's values)
holds at most ``cap`` documents: the first ``cap`` inserted, and the insertion order is the dedup order, so
which documents hold a full bucket, and therefore every decision, is the same on every run of the same corpus.

Nothing is looked up by hash during the walk.  Before it, each band's keys are grouped once (``np.unique``):
a bucket only one document hashes to can never propose a pair, so only buckets of two or more documents get a
dense id.  Each band's column of bucket ids (one per walk position, -1 for none) goes to a file, and the walk
reads the columns back ``chunk`` positions at a time, so what it holds per document does not grow with the
corpus: on the generated corpus a document shares ~60 of its 64 bands' buckets, which as one in-memory layout
(the CSR arrays this replaced) was 250 MB at a million documents and three times that while it was built.  A
bucket's members live in a slot of ``min(cap, size)`` entries of one flat array.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

BUCKET_ID = np.int32
# Walk positions whose bucket ids are read at once: 16 MB for 64 bands.
CHUNK_POSITIONS = 65_536


class BandedBuckets:
    """Capped LSH buckets over documents at walk positions 0..count-1 (dedup order).

    ``band_groups`` gives, per band, an integer per walk position that is equal for two positions exactly when
    their band keys are equal (``band_groups`` below).  The bands' bucket ids go to files in ``directory`` (a
    temporary one when not given).
    """

    def __init__(
        self,
        band_groups: Iterable[np.ndarray],
        count: int,
        cap: int,
        directory: Path | None = None,
        chunk: int = CHUNK_POSITIONS,
    ) -> None:
        if cap < 2:
            raise ValueError(f"an LSH bucket must hold at least 2 documents, not {cap}")
        self.cap = cap
        self.count = count
        self.chunk = chunk
        self.full_buckets_hit = 0
        self.shared_memberships = 0  # (document, band) pairs in a bucket of two or more documents
        self._scratch = TemporaryDirectory(prefix="lsh-buckets-") if directory is None else None
        directory = Path(self._scratch.name) if self._scratch else directory
        directory.mkdir(parents=True, exist_ok=True)
        self._columns: list[Path] = []
        sizes = []
        buckets = 0
        for band, groups in enumerate(band_groups):
            run_sizes = np.bincount(groups)
            shared = run_sizes >= 2
            ids = np.where(shared, np.cumsum(shared) - 1 + buckets, -1).astype(BUCKET_ID)
            column = directory / f"lsh-band-{band:03d}.i32"
            ids[groups].tofile(column)
            self._columns.append(column)
            sizes.append(run_sizes[shared])
            self.shared_memberships += int(sizes[-1].sum())
            buckets += len(sizes[-1])
        slots = np.minimum(np.concatenate(sizes), cap) if sizes else np.zeros(0, np.int64)
        offset = np.int32 if slots.sum() < 2**31 else np.int64
        self._start = np.concatenate([[0], np.cumsum(slots)[:-1]]).astype(offset)
        self._members = np.empty(int(slots.sum()), np.int32)
        self._fill = np.zeros(buckets, np.min_scalar_type(cap))
        self._block = np.zeros((0, len(self._columns)), BUCKET_ID)
        self._first = 0

    def _of(self, position: int) -> np.ndarray:
        """The buckets of ``position`` that it shares with another document, in band order."""
        if not self._first <= position < self._first + len(self._block):
            self._first = position - position % self.chunk
            rows = min(self.count, self._first + self.chunk) - self._first
            size = np.dtype(BUCKET_ID).itemsize
            columns = [np.fromfile(c, BUCKET_ID, count=rows, offset=self._first * size) for c in self._columns]
            self._block = np.stack(columns, axis=1) if columns else np.zeros((rows, 0), BUCKET_ID)
        row = self._block[position - self._first]
        return row[row >= 0]

    def query(self, position: int) -> np.ndarray:
        """Walk positions of the documents inserted so far in the buckets of ``position``, sorted, unique."""
        buckets = self._of(position)
        fill = self._fill[buckets].astype(np.int64)
        buckets, fill = buckets[fill > 0], fill[fill > 0]
        if not len(buckets):
            return np.zeros(0, np.int32)
        ends = np.cumsum(fill)
        slots = np.repeat(self._start[buckets] - (ends - fill), fill) + np.arange(ends[-1])
        return _sorted_unique(self._members[slots])

    def insert(self, position: int) -> None:
        buckets = self._of(position)
        fill = self._fill[buckets]
        room = fill < self.cap
        self.full_buckets_hit += int((~room).sum())
        buckets = buckets[room]
        self._members[self._start[buckets] + fill[room]] = position
        self._fill[buckets] += 1


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` for the few hundred positions of one query: numpy 2's hash-based unique costs several times
    a sort on arrays this small, and a query runs once per document of the walk."""
    ordered = np.sort(values)
    first = np.empty(len(ordered), bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    return ordered[first]


def band_groups(blocks: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """Per band's block (a row of the band's MinHash values per walk position), an integer per row that is
    equal for two rows exactly when their values are.  A row of 8 bytes (two 32-bit rows, the default bands)
    is grouped as one 64-bit number, several times faster than ``np.unique`` over rows."""
    for block in blocks:
        block = np.ascontiguousarray(block)
        if block.ndim == 2 and block.shape[1] * block.itemsize == 8:
            yield np.unique(block.view(np.uint64).reshape(-1), return_inverse=True)[1]
        else:
            yield np.unique(block, axis=0, return_inverse=True)[1].reshape(-1)
