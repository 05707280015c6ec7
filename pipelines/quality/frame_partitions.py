"""A source's validation frame on disk, cut into partitions that Great Expectations validates one at a time.

GX's pandas engine validates a frame it holds whole, and keeps the last one it validated alive in its batch
cache.  A million-document source made that a ~90 MB frame (plus GX's working copies) held through the rest
of curate; ten million would hold ten times that.  So a stage writes its frame here a batch at a time, and GX
sees partitions of about ``ROWS_PER_PARTITION`` rows, whatever the corpus size.

Rows go to partition ``hash(doc_id) mod K``: every row of a doc_id lands in the same partition, so a check
keyed by doc_id (uniqueness, and the shard suite's per-document checks) judges a partition exactly as it would
judge the whole frame.  ``K`` follows from the number of rows the caller expects (read from Parquet metadata,
never from how the stage batched), and ``row`` is numbered over the whole source in reading order, so which
rows fail, and why, does not depend on batch size, worker count or partition count.

The frames hold ids and derived facts only (frames.py), never text; the files are owner-only and removed with
the directory by the stage.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from medcurate.core.zones import make_private_dir
from pipelines.quality.id_lookup import id_hashes

# Rows GX validates at once (a partition holds about as many: its rows are assigned by hash).  Small enough
# that a partition and GX's copies of it stay in tens of MB, and a 100,000-document source is one partition;
# large enough that GX's fixed cost per validation (~0.2 s) stays small beside the work (validate_shards at 1M
# documents: 13.6 s at 65,536 rows, 12.2 s at 131,072, the same peak).
ROWS_PER_PARTITION = 131_072


class FramePartitions:
    """Validation frames written batch by batch into ``directory``, read back one partition at a time."""

    def __init__(
        self,
        directory: Path,
        expected_rows: int,
        empty: pd.DataFrame,
        rows_per_partition: int | None = None,
        finish: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ):
        """``empty`` is the frame builder's output for no rows: it fixes the columns and their types.  ``finish``
        adds the columns that compare a row with the other rows of its doc_id, to each partition as it is read
        (every row of a doc_id is in that partition, in source order)."""
        self.directory = make_private_dir(directory)
        self._finish = finish or (lambda frame: frame)
        self.count = max(1, math.ceil(expected_rows / (rows_per_partition or ROWS_PER_PARTITION)))
        self.rows = 0
        self._empty = empty
        self._schema = _schema(empty)
        self._writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}

    def add(self, frame: pd.DataFrame) -> None:
        """Append a batch's frame: its ``row`` column is renumbered to the rows' positions in the source."""
        frame = frame.assign(row=np.arange(self.rows, self.rows + len(frame), dtype=np.int64))
        self.rows += len(frame)
        doc_ids = frame["doc_id"].tolist()
        hashes = id_hashes([d if isinstance(d, str) else None for d in doc_ids])
        # Null doc_ids all go to the first partition: a check grouping by doc_id sees them together, as it would
        # in the whole frame.
        partition = (hashes % np.uint64(self.count)).astype(np.int64)
        partition[hashes == 0] = 0
        for k in np.unique(partition).tolist():
            part = frame[partition == k]
            table = pa.Table.from_pandas(part, schema=self._schema, preserve_index=False)
            self._writer(k).write_table(table)

    def _path(self, k: int) -> Path:
        return self.directory / f"partition-{k:05d}.arrow"

    def _writer(self, k: int) -> pa.ipc.RecordBatchFileWriter:
        if k not in self._writers:
            self._writers[k] = pa.ipc.new_file(str(self._path(k)), self._schema)
        return self._writers[k]

    def frames(self) -> Iterator[pd.DataFrame]:
        """Each partition's frame in partition order (rows in source order within it); the empty frame once when
        no row was added, so every expectation still has a result."""
        for writer in self._writers.values():
            writer.close()
        written = sorted(self._writers)
        self._writers = {}
        if not written:
            yield self._finish(self._empty.copy())
        for k in written:
            with pa.OSFile(str(self._path(k))) as source:
                frame = pa.ipc.open_file(source).read_all().to_pandas()
            yield self._finish(frame.reset_index(drop=True))


def _schema(empty: pd.DataFrame) -> pa.Schema:
    """The Arrow schema of a frame, with an all-null object column (an identifier no row of a batch carries)
    typed as the string it holds elsewhere, so every batch writes the same schema."""
    schema = pa.Schema.from_pandas(empty, preserve_index=False)
    for i, field in enumerate(schema):
        if pa.types.is_null(field.type):
            schema = schema.set(i, pa.field(field.name, pa.string()))
    return schema
