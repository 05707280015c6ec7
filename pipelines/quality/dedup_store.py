"""Where the dedup steps keep what they observe, so the driver's memory does not grow with the corpus.

Each observed document gets a dense index (0, 1, 2, ... in observation order).  Its doc_id and source position
are kept in compact Arrow / numpy arrays (tens of bytes per document), and they give the dedup order with one
vectorized sort.  Its per-document payloads (exact-text digest, word hashes, MinHash values, band keys) go to
append-only files in a scratch directory and are read back with explicit reads (``os.pread`` into a fresh
buffer): pages of a memory map that a walk touches would count in the process's resident memory, plain reads
do not.
"""

from __future__ import annotations

import os
from array import array
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.quality.id_lookup import IdLookup
from pipelines.quality.word_similarity import WordSequence

# What the dedup order of a document is made of: its source's position in the spec, then its doc_id.
Rank = tuple[int, str]


class DocRegister:
    """The doc_ids and source positions of observed documents, by dense index."""

    def __init__(self) -> None:
        self._ids: list[pa.Array] = [pa.array([], pa.string())]
        self._sources = array("i")
        self._lookup: IdLookup | None = None

    def __len__(self) -> int:
        return len(self._sources)

    def add(self, ranks: list[Rank]) -> np.ndarray:
        """Register documents by rank; returns their dense indexes."""
        first = len(self)
        self._ids.append(pa.array([doc_id for _, doc_id in ranks], pa.string()))
        self._sources.extend(source for source, _ in ranks)
        if len(self._ids) > 64:
            self._ids = [pa.concat_arrays(self._ids)]
        return np.arange(first, len(self), dtype=np.int64)

    def record(self, ranks: list[Rank], known: int) -> None:
        """Register documents observed by one of the steps that share this register (exact and near dedup
        observe the same documents in the same order), where ``known`` is how many that step registered before:
        the first step to record a batch adds it, the others find it there.  One register instead of one per step
        halves the doc_ids (~44 bytes a document) and id lookups (16) the driver holds."""
        if len(self) == known:
            self.add(ranks)
        elif len(self) < known + len(ranks):
            raise ValueError("steps that share a register must observe the same documents in the same order")

    def ids(self) -> pa.Array:
        if len(self._ids) > 1:  # concatenating even one array copies it: near dedup asks once per twin found
            self._ids = [pa.concat_arrays(self._ids)]
        return self._ids[0]

    def doc_id(self, index: int) -> str:
        return self.ids()[index].as_py()

    def indexes_of(self, doc_ids: list[str]) -> np.ndarray:
        """Dense indexes of ``doc_ids`` (each must have been registered)."""
        if self._lookup is None or len(self._lookup) != len(self):
            self._lookup = IdLookup(self.ids())
        found = self._lookup.positions(doc_ids)
        if (found < 0).any():
            raise KeyError(f"{int((found < 0).sum())} doc_ids were never observed")
        return found

    def in_rank_order(self, skip: pa.Array) -> np.ndarray:
        """Dense indexes of the registered documents not in ``skip``, in dedup order: source position, then
        doc_id (Arrow compares UTF-8 bytes, which orders as Python compares the strings)."""
        ids = self.ids()
        table = pa.table({"source": pa.array(self._sources, pa.int32()), "doc_id": ids})
        order = pc.sort_indices(table, sort_keys=[("source", "ascending"), ("doc_id", "ascending")])
        order = order.to_numpy(zero_copy_only=False).astype(np.int64)
        if not len(skip):
            return order
        skipped = pc.is_in(ids, value_set=skip).to_numpy(zero_copy_only=False)
        return order[~skipped[order]]


class RowFile:
    """Fixed-width rows (``width`` values of ``dtype``), appended, read back by dense index."""

    def __init__(self, path: Path, dtype: type[np.generic], width: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dtype = np.dtype(dtype)
        self.width = width
        self.rows = 0
        path.write_bytes(b"")

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype).reshape(-1, self.width)
        with self.path.open("ab") as out:
            out.write(rows.tobytes())
        self.rows += len(rows)

    def read_all(self) -> np.ndarray:
        return np.fromfile(self.path, dtype=self.dtype).reshape(-1, self.width)

    def read(self, indexes: np.ndarray) -> np.ndarray:
        """The rows of ``indexes``, in that order."""
        size = self.dtype.itemsize * self.width
        out = np.empty((len(indexes), self.width), self.dtype)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for row, index in enumerate(indexes.tolist()):
                out[row] = np.frombuffer(os.pread(fd, size, index * size), self.dtype)
        finally:
            os.close(fd)
        return out


class RaggedFile:
    """Variable-length rows of ``dtype`` values, appended, read back by dense index; only the row offsets
    (8 bytes a row) stay in memory."""

    def __init__(self, path: Path, dtype: type[np.generic]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.dtype = np.dtype(dtype)
        self.offsets = array("q", [0])
        path.write_bytes(b"")
        self._fd: int | None = None

    def append(self, rows: list[np.ndarray]) -> None:
        with self.path.open("ab") as out:
            for row in rows:
                out.write(np.ascontiguousarray(row, dtype=self.dtype).tobytes())
                self.offsets.append(self.offsets[-1] + len(row))

    def lengths(self) -> np.ndarray:
        return np.diff(np.frombuffer(self.offsets, dtype=np.int64))

    def read(self, index: int) -> np.ndarray:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        start, end = self.offsets[index], self.offsets[index + 1]
        size = self.dtype.itemsize
        return np.frombuffer(os.pread(self._fd, (end - start) * size, start * size), self.dtype)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


class SequenceCache:
    """The word sequences (``WordSequence``, with the bounds they cache) of the documents read last, up to
    ``words`` words in all, least recently used out first.  Bounded by words, not entries: a corpus of long notes
    must not hold more memory than one of short abstracts."""

    def __init__(self, read: Callable[[int], WordSequence], words: int) -> None:
        self.read = read
        self.budget = words
        self.held = 0
        self.misses = 0
        self._entries: OrderedDict[int, WordSequence] = OrderedDict()

    def __call__(self, index: int) -> WordSequence:
        sequence = self._entries.get(index)
        if sequence is not None:
            self._entries.move_to_end(index)
            return sequence
        self.misses += 1
        sequence = self._entries[index] = self.read(index)
        self.held += len(sequence)
        while self.held > self.budget and len(self._entries) > 1:
            self.held -= len(self._entries.popitem(last=False)[1])
        return sequence

    def clear(self) -> None:
        self._entries.clear()
        self.held = 0


class Twins:
    """The documents one dedup level dropped and the kept twin of each, by dense index of a ``DocRegister``.

    16 bytes a dropped document (24 with a share of words), where dicts of doc_id strings and detail sentences
    took ~400: a million-document run of templated text drops a third of it.  The doc_ids are looked up only to
    apply the decisions, a batch at a time against one Arrow array of the dropped documents' ids.
    """

    def __init__(self, register: DocRegister, detail: str) -> None:
        self.register = register
        self.detail = detail  # a format string over ``twin`` (its doc_id) and ``share``
        self._dropped = array("q")
        self._twins = array("q")
        self._shares = array("d")
        self._ids: pa.Array | None = None
        self._lookup: IdLookup | None = None

    def __len__(self) -> int:
        return len(self._dropped)

    def add(self, dropped: int, twin: int, share: float = float("nan")) -> None:
        self._dropped.append(dropped)
        self._twins.append(twin)
        self._shares.append(share)
        self._ids = self._lookup = None

    def extend(self, dropped: np.ndarray, twins: np.ndarray) -> None:
        self._dropped.extend(dropped.tolist())
        self._twins.extend(twins.tolist())
        self._shares.extend([float("nan")] * len(dropped))
        self._ids = self._lookup = None

    def doc_ids(self) -> pa.Array:
        """The dropped documents' doc_ids, in the order they were dropped."""
        if self._ids is None:
            self._ids = self.register.ids().take(np.frombuffer(self._dropped, np.int64))
        return self._ids

    def details(self, doc_ids: list[str]) -> list[str | None]:
        """Per doc_id, the quarantine detail naming its kept twin, or None when it was not dropped."""
        if self._lookup is None:
            self._lookup = IdLookup(self.doc_ids())
        return [
            None if at < 0 else self.detail.format(twin=self.register.doc_id(self._twins[at]), share=self._shares[at])
            for at in self._lookup.positions(doc_ids).tolist()
        ]

    def as_dict(self) -> dict[str, str]:
        """Dropped doc_id -> kept twin's doc_id, for inspection (tests, benchmarks): the whole run in a dict."""
        ids = self.register.ids()
        return {ids[d].as_py(): ids[t].as_py() for d, t in zip(self._dropped, self._twins, strict=True)}

    def clusters(self) -> dict[str, int]:
        """Cluster sizes (a kept document and its dropped twins) as {size: number of clusters}."""
        _, per_twin = np.unique(np.frombuffer(self._twins, np.int64), return_counts=True)
        sizes, clusters = np.unique(per_twin + 1, return_counts=True)
        return {str(size): int(n) for size, n in zip(sizes.tolist(), clusters.tolist(), strict=True)}
