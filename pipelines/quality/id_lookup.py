"""Where each of many small batches of doc_ids sits in one large, fixed Arrow array of doc_ids.

Curate asks this once per batch in its later passes (is this document's raw parent there? was it dropped as a
duplicate? which dense index does it have?), against arrays of up to the whole run.  ``pc.index_in`` rebuilds
its hash table of the whole value set on every call: 176 ms for 900,000 ids, which over the ~500 batches of a
million-document run is a pass of its own that grows with N squared.  A Python dict or set answers in
microseconds but holds ~100 bytes an id.  This keeps 16 bytes an id (the ids' 64-bit hashes, sorted, and
where each came from) and checks every hit against the id itself, so a hash collision can never be a match.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# Ids hashed at a time while building: what the build holds as Python strings.
_HASH_CHUNK = 65_536


def id_hashes(doc_ids: list[str | None]) -> np.ndarray:
    """64-bit hashes (a null id hashes to 0, and matches nothing but a null)."""
    return np.fromiter(
        (0 if d is None else xxhash.xxh3_64_intdigest(d.encode()) for d in doc_ids), np.uint64, count=len(doc_ids)
    )


class IdLookup:
    """Positions of doc_ids in ``ids`` (an Arrow string array; its first position when an id repeats)."""

    def __init__(self, ids: pa.Array) -> None:
        self.ids = ids
        hashes = np.concatenate(
            [np.zeros(0, np.uint64)]
            + [id_hashes(ids.slice(i, _HASH_CHUNK).to_pylist()) for i in range(0, len(ids), _HASH_CHUNK)]
        )
        self._order = np.argsort(hashes, kind="stable")
        self._sorted = hashes[self._order]

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, doc_ids: list[str | None]) -> np.ndarray:
        """Per doc_id, its position in ``ids``, or -1 when it is not there.

        A hash hit is checked against the id itself, all hits at once; only a hit whose id differs (two ids with
        one hash, or a hash shared with a repeated id) walks the run of equal hashes."""
        found = np.full(len(doc_ids), -1, np.int64)
        if not len(self):
            return found
        wanted = id_hashes(doc_ids)
        first = np.searchsorted(self._sorted, wanted)
        hit = np.flatnonzero(self._sorted[np.minimum(first, len(self) - 1)] == wanted)
        if not len(hit):
            return found
        candidates = self._order[first[hit]]
        same = pc.equal(self.ids.take(pa.array(candidates)), pa.array([doc_ids[i] for i in hit.tolist()], pa.string()))
        same = pc.fill_null(same, False).to_numpy(zero_copy_only=False)
        found[hit[same]] = candidates[same]
        for i in hit[~same].tolist():  # rare: the first id with this hash is another one
            at = int(first[i]) + 1
            while at < len(self) and self._sorted[at] == wanted[i]:
                if self.ids[int(self._order[at])].as_py() == doc_ids[i]:
                    found[i] = self._order[at]
                    break
                at += 1
        return found

    def contains(self, doc_ids: list[str | None]) -> np.ndarray:
        return self.positions(doc_ids) >= 0
