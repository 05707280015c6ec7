"""What earlier runs published, for deduplication across runs: ``governance/dedup/published.parquet``.

One row per published document: doc_id, source, run id, the exact-text hash, the MinHash signature and the
word hashes (word_similarity.py: one xxh32 per word, numbers masked, in order) that near-duplicate candidates
are verified on.  A later run loads it before deduplicating, so a document already published by an earlier
run is the kept twin and the new copy is dropped.  Rows whose doc_id is curated again in this run are left
out of the comparison (a re-run or a corrected record replaces its own earlier version instead of colliding
with it) and replaced when this run publishes.  The MinHash and word-hash parameters are stored in the file's
metadata: an index made with other parameters cannot be compared with this run's, so it is set aside
(``skipped`` says how many entries) and replaced by this run's.  Holds hashes and ids, never text; but a
dictionary turns the word hashes back into the curated (de-identified) words, so the file is as sensitive as
the curated zone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from itertools import chain, islice
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from medcurate.core.zones import write_parquet_groups
from pipelines.quality.curation_config import DedupConfig
from pipelines.quality.word_similarity import WORD_HASH

INDEX_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("exact_key", pa.string(), nullable=False),
        pa.field("minhash", pa.list_(pa.uint64()), nullable=False),
        pa.field("words", pa.list_(pa.uint32()), nullable=False),
    ]
)
PARAMS_KEY = b"medcurate.minhash"
# Index rows per write: bounds what saving holds at once.
WRITE_ROWS = 4096


def index_path(governance: Path) -> Path:
    return governance / "dedup" / "published.parquet"


def minhash_params(config: DedupConfig) -> dict[str, int | str]:
    return {
        "num_perm": config.num_perm,
        "seed": config.seed,
        "shingle_words": config.shingle_words,
        "word_hash": WORD_HASH,
    }


@dataclass(frozen=True)
class PublishedEntry:
    doc_id: str
    source: str
    run_id: str
    exact_key: str
    minhash: np.ndarray
    words: np.ndarray


@dataclass(frozen=True)
class PublishedSlice:
    """One row group's kept index rows, as the dedup steps record them."""

    doc_ids: list[str]
    exact_keys: list[str]
    minhashes: np.ndarray  # one row of ``num_perm`` stored (uint64) values per document
    words: list[np.ndarray]


@dataclass(frozen=True)
class PublishedIndex:
    """The earlier runs' entries this run compares with: the index file less ``exclude_doc_ids``.

    Never held whole: ``slices`` reads the file again, a row group at a time, for each dedup step and for
    saving.  At a kilobyte of word hashes per entry, a million earlier documents held as objects took 1.8 GB.
    """

    path: Path | None = None
    exclude_doc_ids: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    # Entries compared (kept after the exclusion).
    rows: int = 0
    # Entries of an index built with other MinHash parameters, set aside.
    skipped: int = 0

    @classmethod
    def load(cls, governance: Path, config: DedupConfig, exclude_doc_ids: pa.Array) -> PublishedIndex:
        """The index without ``exclude_doc_ids`` (the documents this run curates again: this run decides them)."""
        path = index_path(governance)
        if not path.exists():
            return cls()
        parquet = pq.ParquetFile(path)
        stored = json.loads((parquet.schema_arrow.metadata or {}).get(PARAMS_KEY, b"{}"))
        if stored != minhash_params(config):
            return cls(skipped=parquet.metadata.num_rows)
        index = cls(path, exclude_doc_ids)
        rows = sum(_count(kept) for _, _, kept in index._groups())
        return replace(index, rows=rows)

    def tables(self) -> Iterator[pa.Table]:
        """The kept rows as index tables, a row group (less the excluded) at a time."""
        for table in self._kept(INDEX_SCHEMA.names):
            yield table.cast(INDEX_SCHEMA)

    def slices(self) -> Iterator[PublishedSlice]:
        for table in self.tables():
            minhashes = pc.list_flatten(table["minhash"]).to_numpy(zero_copy_only=False)
            yield PublishedSlice(
                doc_ids=table["doc_id"].to_pylist(),
                exact_keys=table["exact_key"].to_pylist(),
                minhashes=minhashes.astype(np.uint64).reshape(table.num_rows, -1),
                words=_arrays(table["words"], np.uint32),
            )

    def _kept(self, columns: list[str]) -> Iterator[pa.Table]:
        """A row group at a time (``WRITE_ROWS`` rows as saved), its doc_ids read first: a group whose rows this
        run all curates again is never read further.  Reading every column 65,536 rows at a time with Arrow's
        read-ahead held ~750 MB over a 1M index whose rows were all excluded."""
        for parquet, group, kept in self._groups():
            if pc.any(kept).as_py():
                yield parquet.read_row_group(group, columns=columns).filter(kept)

    def _groups(self) -> Iterator[tuple[pq.ParquetFile, int, pa.ChunkedArray]]:
        """Each row group of the file with its rows' kept mask, from its doc_ids alone."""
        if self.path is None:
            return
        for parquet, group, excluded in _row_groups(self.path, self.exclude_doc_ids):
            yield parquet, group, pc.invert(excluded)


def _row_groups(
    path: Path, doc_ids: pa.Array, source: str | None = None
) -> Iterator[tuple[pq.ParquetFile, int, pa.ChunkedArray]]:
    """Each row group of the index at ``path`` with, per row, whether it is one of ``doc_ids`` or, given
    ``source``, that source's: read from those columns alone, a group at a time, so the index is never held."""
    parquet = pq.ParquetFile(path, pre_buffer=False)
    columns = ["doc_id"] if source is None else ["doc_id", "source"]
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=columns)
        found = pc.is_in(table["doc_id"], value_set=doc_ids)
        yield parquet, group, found if source is None else pc.or_(found, pc.equal(table["source"], source))


def save_index(
    governance: Path,
    config: DedupConfig,
    previous: PublishedIndex,
    published: Iterable[PublishedEntry],
) -> int:
    """Earlier entries (minus those replaced), then this run's published documents in the order given, in row
    groups of ``WRITE_ROWS`` so that a run's entries (a kilobyte each) are never all in memory and the groups do
    not shrink as runs replace earlier rows; returns the row count.  Written under a temporary name and renamed,
    as ``write_parquet`` does."""
    schema = INDEX_SCHEMA.with_metadata({PARAMS_KEY: json.dumps(minhash_params(config), sort_keys=True).encode()})
    entries = iter(published)
    new = (pa.Table.from_pylist([_row(e) for e in chunk], schema=schema) for chunk in _chunks(entries))
    earlier = (table.replace_schema_metadata(schema.metadata) for table in previous.tables())
    return _write(chain(earlier, new), schema, index_path(governance))


def _chunks(entries: Iterator[PublishedEntry]) -> Iterator[list[PublishedEntry]]:
    while chunk := list(islice(entries, WRITE_ROWS)):
        yield chunk


def _write(tables: Iterable[pa.Table], schema: pa.Schema, path: Path) -> int:
    """``tables`` as the index at ``path``, in row groups of ``WRITE_ROWS`` rows (the last one shorter) however
    they come; returns the row count."""
    rows = 0

    def regrouped() -> Iterator[pa.Table]:
        nonlocal rows
        pending: list[pa.Table] = []
        held = 0
        for table in tables:
            pending.append(table)
            held += table.num_rows
            while held >= WRITE_ROWS:
                whole = pa.concat_tables(pending)
                yield whole.slice(0, WRITE_ROWS)
                pending, held = [whole.slice(WRITE_ROWS)], held - WRITE_ROWS
                rows += WRITE_ROWS
        if held:
            yield pa.concat_tables(pending)
            rows += held

    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet_groups(regrouped(), schema, path)
    return rows


def _row(entry: PublishedEntry) -> dict[str, object]:
    return {
        "doc_id": entry.doc_id,
        "source": entry.source,
        "run_id": entry.run_id,
        "exact_key": entry.exact_key,
        "minhash": entry.minhash,
        "words": entry.words,
    }


def _arrays(column: pa.ChunkedArray, dtype: type[np.generic]) -> list[np.ndarray]:
    """A list column as one numpy array per row, sliced from the flat values (no Python int per value)."""
    array = column.combine_chunks()
    values = pc.list_flatten(array).to_numpy(zero_copy_only=False).astype(dtype)
    bounds = np.cumsum([0, *pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False)])
    return [values[start:end] for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def _count(mask: pa.ChunkedArray) -> int:
    return pc.sum(pc.cast(mask, pa.int64())).as_py() or 0


def drop_documents(governance: Path, doc_ids: set[str], source: str | None = None) -> int:
    """Remove the rows of ``doc_ids`` (and, given ``source``, all of that source's rows); returns how many left.

    Erasure calls this: an erased document must not survive as the kept twin of a later copy, and its word
    hashes would turn back into its de-identified words.  The parameters in the file's metadata are kept.  The
    index is rewritten a row group at a time, only when it holds one of them.
    """
    path = index_path(governance)
    if not path.exists():
        return 0
    groups = list(_row_groups(path, _id_array(doc_ids), source))  # a mask a row: one read of the id columns
    removed = sum(_count(erased) for _, _, erased in groups)
    if removed:
        kept = (parquet.read_row_group(group).filter(pc.invert(erased)) for parquet, group, erased in groups)
        _write(kept, groups[0][0].schema_arrow, path)
    return removed


def count_documents(governance: Path, doc_ids: set[str], source: str | None = None) -> int:
    """How many rows of ``doc_ids`` (or of ``source``) the index holds: what erasure verifies is zero."""
    path = index_path(governance)
    if not path.exists():
        return 0
    return sum(_count(found) for _, _, found in _row_groups(path, _id_array(doc_ids), source))


def _id_array(doc_ids: set[str]) -> pa.Array:
    return pa.array(sorted(doc_ids), pa.string())
